"""The flow model on real exports, and the errors it gives for broken ones."""

from __future__ import annotations

import json

import pytest

from stepflow_dagster.flow import FlowError, analyze, load_flow, parse_flow
from tests.conftest import ALL_SHARED, shared_flow


def test_every_shared_flow_parses() -> None:
    assert len(ALL_SHARED) >= 13
    for name in ALL_SHARED:
        flow = load_flow(shared_flow(name))
        assert flow.nodes and all(n.type != "noteNode" for n in flow.nodes.values())
        for edge in flow.edges:
            assert edge.source in flow.nodes and edge.target in flow.nodes


def test_openrag_ingestion_flow_model() -> None:
    flow = load_flow(shared_flow("openrag__ingestion_flow.json"))
    assert flow.name == "OpenSearch Ingestion Flow"
    assert flow.langflow_version == "1.6.3.dev1"
    assert len(flow.nodes) == 13  # 14 nodes less one note
    assert len(flow.edges) == 12
    # One source feeds one field each; four Secret Inputs feed four fields of the same target.
    form = [e for e in flow.edges if e.target == "AdvancedDynamicFormBuilder-81Exw"]
    assert sorted(e.target_field for e in form) == [
        "dynamic_connector_type",
        "dynamic_owner",
        "dynamic_owner_email",
        "dynamic_owner_name",
    ]
    code = flow.nodes["SplitText-QIKhg"].code
    assert code and "class SplitTextComponent" in code


def _doc(nodes: list[dict], edges: list[dict], name: str = "t") -> dict:
    return {"name": name, "data": {"nodes": nodes, "edges": edges}}


def _node(
    node_id: str, ctype: str = "X", fields: dict | None = None, outputs: tuple[str, ...] = ("out",)
) -> dict:
    template = {"code": {"value": ["class X:", "    pass"]}}
    template.update({f: {"type": "str", "value": "", **spec} for f, spec in (fields or {}).items()})
    return {
        "id": node_id,
        "type": "genericNode",
        "data": {
            "id": node_id,
            "type": ctype,
            "node": {
                "display_name": ctype,
                "template": template,
                "outputs": [{"name": o, "types": ["Message"]} for o in outputs],
            },
        },
    }


def _edge(src: str, out: str, tgt: str, field: str, *, encoded_only: bool = False) -> dict:
    sh = {"dataType": "X", "id": src, "name": out, "output_types": ["Message"]}
    th = {"fieldName": field, "id": tgt, "inputTypes": ["Message"], "type": "str"}
    edge = {
        "source": src,
        "target": tgt,
        "sourceHandle": json.dumps(sh).replace('"', "œ"),
        "targetHandle": json.dumps(th).replace('"', "œ"),
    }
    if not encoded_only:
        edge["data"] = {"sourceHandle": sh, "targetHandle": th}
    return edge


def test_code_as_list_of_lines_and_encoded_handles() -> None:
    flow = parse_flow(
        _doc(
            [_node("A-1"), _node("B-1", fields={"x": {}, "y": {}})],
            [_edge("A-1", "out", "B-1", "x", encoded_only=True), _edge("A-1", "out", "B-1", "y")],
        )
    )
    assert flow.nodes["A-1"].code == "class X:\n    pass"
    assert [(e.source, e.target_field) for e in flow.edges] == [("A-1", "x"), ("A-1", "y")]


def test_several_sources_feed_a_list_field() -> None:
    nodes = [_node("A-1"), _node("A-2"), _node("B-1", fields={"items": {"list": True}})]
    flow = parse_flow(_doc(nodes, [_edge("A-1", "out", "B-1", "items"), _edge("A-2", "out", "B-1", "items")]))
    assert [e.source for e in flow.incoming("B-1")] == ["A-1", "A-2"]


def test_group_nodes_are_flattened() -> None:
    inner = _doc([_node("In-1"), _node("In-2", fields={"x": {}})], [_edge("In-1", "out", "In-2", "x")])
    group = {
        "id": "Group-1",
        "type": "genericNode",
        "data": {
            "id": "Group-1",
            "type": "GroupNode",
            "node": {
                "display_name": "Group",
                "flow": inner,
                "template": {"x_In-1": {"type": "str", "proxy": {"id": "In-1", "field": "x"}}},
                "outputs": [{"name": "out", "types": ["Message"], "proxy": {"id": "In-2", "name": "out"}}],
            },
        },
    }
    inner["data"]["nodes"][0] = _node("In-1", fields={"x": {}})
    doc = _doc(
        [_node("A-1"), group, _node("C-1", fields={"y": {}})],
        [_edge("A-1", "out", "Group-1", "x_In-1"), _edge("Group-1", "out", "C-1", "y")],
    )
    flow = parse_flow(doc)
    assert list(flow.nodes) == ["A-1", "In-1", "In-2", "C-1"]
    assert {(e.source, e.target, e.target_field) for e in flow.edges} == {
        ("In-1", "In-2", "x"),
        ("A-1", "In-1", "x"),
        ("In-2", "C-1", "y"),
    }


BROKEN: dict[str, tuple[object, str, str | None, str | None]] = {
    # case: (document or raw text, message fragment, node, field)
    "no_data": ({"name": "t"}, "missing key 'data'", None, "data"),
    "no_nodes": ({"name": "t", "data": {"edges": []}}, "missing key 'nodes'", None, "nodes"),
    "empty": (_doc([], []), "no components", None, None),
    "only_notes": (_doc([{"id": "n1", "type": "noteNode", "data": {}}], []), "no components", None, None),
    "node_without_type": (
        _doc([{"id": "A-1", "type": "genericNode", "data": {"node": {"template": {}}}}], []),
        "missing key 'type'",
        "A-1",
        "type",
    ),
    "node_without_template": (
        _doc([{"id": "A-1", "type": "genericNode", "data": {"type": "X", "node": {}}}], []),
        "missing key 'template'",
        "A-1",
        "template",
    ),
    "duplicate_ids": (_doc([_node("A-1"), _node("A-1")], []), "duplicate node id", "A-1", None),
    "edge_to_missing_node": (
        _doc([_node("A-1")], [_edge("A-1", "out", "Ghost-1", "x")]),
        "does not exist",
        "Ghost-1",
        None,
    ),
    "edge_from_missing_output": (
        _doc([_node("A-1"), _node("B-1", fields={"x": {}})], [_edge("A-1", "nope", "B-1", "x")]),
        "output the node does not have",
        "A-1",
        "nope",
    ),
    "edge_to_missing_field": (
        _doc([_node("A-1"), _node("B-1")], [_edge("A-1", "out", "B-1", "missing_field")]),
        "field the node does not have",
        "B-1",
        "missing_field",
    ),
    "cycle": (
        _doc(
            [_node("A-1", fields={"x": {}}), _node("B-1", fields={"x": {}})],
            [_edge("A-1", "out", "B-1", "x"), _edge("B-1", "out", "A-1", "x")],
        ),
        "cycle that is not a Loop",
        "A-1",
        None,
    ),
    "two_sources_single_field": (
        _doc(
            [_node("A-1"), _node("A-2"), _node("B-1", fields={"x": {}})],
            [_edge("A-1", "out", "B-1", "x"), _edge("A-2", "out", "B-1", "x")],
        ),
        "several edges feed a single-value field",
        "B-1",
        "x",
    ),
    "bad_json": ('{"name": "t", "data": {', "not valid JSON", None, None),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_flows_name_flow_node_and_field(case: str, tmp_path) -> None:
    doc, fragment, node, field = BROKEN[case]
    path = tmp_path / f"{case}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(FlowError) as info:
        load_flow(path)
    err = info.value
    assert fragment in str(err)
    assert err.flow in {"t", f"{case}.json"} and f"flow {err.flow!r}" in str(err)
    assert err.node == node and err.field == field
    if node:
        assert repr(node) in str(err)
    if field:
        assert repr(field) in str(err)


def test_loop_feedback_is_not_a_cycle_and_is_analyzed() -> None:
    flow = load_flow(shared_flow("langflow_starter_1.13__Research_Translation_Loop.json"))
    analysis = analyze(flow)
    assert [(loop.node, set(loop.body)) for loop in analysis.loops] == [
        ("LoopComponent-E7Ur0", {"ParserComponent-V2o48", "LanguageModelComponent-ps5yd"})
    ]
    assert [e.field for e in analysis.edges if e.loop_feedback] == ["item"]
    assert analysis.routers == []

"""Parse and validate a Langflow export into a `Flow`.

Edges are read from `edge.data` handles and, for exports that lack them, from the `œ`-encoded top-level
handle strings. Note nodes are skipped; group nodes are flattened into their inner nodes.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import FlowError
from .gcpause import gc_paused
from .model import Edge, Flow, Node, Output
from .versions import newest

NOTE_TYPES = {"noteNode"}


def load_flow(path: str | Path) -> Flow:
    """Read a flow file; the flow is named by its own `name`, else by the file's stem."""
    path = Path(path)
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(label, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlowError(label, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    return parse_flow(doc, default_name=path.stem, source=str(path))


@gc_paused
def parse_flow(doc: Any, *, default_name: str = "flow", source: str = "") -> Flow:
    if not isinstance(doc, dict):
        raise FlowError(default_name, "the document is not a JSON object")
    name: str = doc["name"] if isinstance(doc.get("name"), str) and doc["name"] else default_name
    data = doc.get("data")
    if not isinstance(data, dict):
        raise FlowError(
            name, "missing key 'data' (a Langflow export holds its graph under 'data')", field="data"
        )
    raw_nodes, raw_edges = _flatten(name, data)
    nodes: dict[str, Node] = {}
    for raw in raw_nodes:
        node = _parse_node(name, raw)
        if node is None:
            continue
        if node.id in nodes:
            raise FlowError(name, "duplicate node id", node=node.id)
        nodes[node.id] = node
    if not nodes:
        raise FlowError(name, "the flow has no components (only notes, or nothing)")
    # dict.fromkeys: an edge drawn twice (same ends, same handles) is one edge.
    edges = tuple(dict.fromkeys(_parse_edge(name, raw, i, nodes) for i, raw in enumerate(raw_edges)))
    flow = Flow(
        name=name,
        nodes=nodes,
        edges=edges,
        langflow_version=doc.get("last_tested_version") or _node_version(nodes),
        description=doc.get("description") or "",
        source=source,
    )
    _check_single_sources(flow)
    topological_order(flow)  # raises on a cycle that is not a loop's feedback
    return flow


def _node_version(nodes: Mapping[str, Node]) -> str | None:
    """The newest Langflow version a node was saved with, compared as versions ("1.10" > "1.9")."""
    versions = dict.fromkeys(n.data["node"].get("lf_version") for n in nodes.values())
    return newest(v for v in versions if isinstance(v, str) and v)


def _require(flow: str, obj: Any, key: str, *, node: str | None = None, what: str = "") -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise FlowError(flow, f"missing key {key!r}{what}", node=node, field=key)
    return obj[key]


def _flatten(flow: str, data: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes and edges with group nodes replaced by their inner flow, recursively.

    A group node proxies its template fields and outputs to inner nodes (`proxy: {id, field|name}`):
    edges that touch the group are re-pointed at the inner node they proxy to.
    """
    nodes = _require(flow, data, "nodes", what=" in 'data'")
    edges = _require(flow, data, "edges", what=" in 'data'")
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise FlowError(flow, "'data.nodes' and 'data.edges' must be lists", field="data")
    out_nodes: list[dict[str, Any]] = []
    out_edges: list[dict[str, Any]] = list(edges)
    for raw in nodes:
        inner = raw.get("data", {}).get("node", {}).get("flow") if isinstance(raw, dict) else None
        if not isinstance(inner, dict):
            out_nodes.append(raw)
            continue
        group_id = raw.get("id")
        inner_nodes, inner_edges = _flatten(flow, _require(flow, inner, "data", node=group_id))
        out_nodes.extend(inner_nodes)
        out_edges.extend(inner_edges)
        node = raw["data"]["node"]
        field_proxy = {
            k: v["proxy"] for k, v in node.get("template", {}).items() if isinstance(v, dict) and "proxy" in v
        }
        output_proxy = {
            o["name"]: o["proxy"] for o in node.get("outputs", []) if isinstance(o, dict) and "proxy" in o
        }
        out_edges = [_repoint(flow, e, group_id, field_proxy, output_proxy) for e in out_edges]
    return out_nodes, out_edges


def _repoint(
    flow: str, edge: dict[str, Any], group_id: str, fields: Mapping[str, Any], outputs: Mapping[str, Any]
) -> dict[str, Any]:
    if edge.get("source") != group_id and edge.get("target") != group_id:
        return edge
    source, target = _handles(flow, edge, 0)
    edge = {"source": edge.get("source"), "target": edge.get("target")}
    if edge["source"] == group_id:
        proxy = outputs.get(str(source.get("name")))
        if not proxy:
            raise FlowError(
                flow, "edge from a group output that proxies nothing", node=group_id, field=source.get("name")
            )
        source = {**source, "id": proxy["id"], "name": proxy["name"]}
        edge["source"] = proxy["id"]
    if edge["target"] == group_id:
        proxy = fields.get(str(target.get("fieldName")))
        if not proxy:
            raise FlowError(
                flow,
                "edge to a group field that proxies nothing",
                node=group_id,
                field=target.get("fieldName"),
            )
        target = {**target, "id": proxy["id"], "fieldName": proxy["field"]}
        edge["target"] = proxy["id"]
    edge["data"] = {"sourceHandle": source, "targetHandle": target}
    return edge


def _parse_node(flow: str, raw: Any) -> Node | None:
    if not isinstance(raw, dict):
        raise FlowError(flow, "a node is not a JSON object", field="data.nodes")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise FlowError(flow, "a node has no 'id'", field="id")
    if raw.get("type") in NOTE_TYPES:
        return None
    data = _require(flow, raw, "data", node=node_id)
    ctype = _require(flow, data, "type", node=node_id, what=" (the component type)")
    spec = _require(flow, data, "node", node=node_id)
    template = _require(flow, spec, "template", node=node_id)
    if not isinstance(template, dict):
        raise FlowError(flow, "'template' is not an object", node=node_id, field="template")
    outputs = []
    for out in spec.get("outputs") or []:
        out_name = _require(flow, out, "name", node=node_id, what=" in an output")
        outputs.append(
            Output(
                name=out_name,
                method=out.get("method"),
                types=tuple(out.get("types") or ()),
                allows_loop=bool(out.get("allows_loop")),
            )
        )
    return Node(
        id=node_id,
        type=str(ctype),
        display_name=str(spec.get("display_name") or ctype),
        outputs=tuple(outputs),
        data=data,
    )


def _decode_handle(flow: str, edge_id: str, text: Any, key: str) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        raise FlowError(flow, f"edge {edge_id!r} has no {key}", field=key)
    try:
        handle = json.loads(text.replace("œ", '"'))
    except json.JSONDecodeError as exc:
        raise FlowError(flow, f"edge {edge_id!r} has an unreadable {key}: {exc.msg}", field=key) from exc
    if not isinstance(handle, dict):
        raise FlowError(flow, f"edge {edge_id!r} has an unreadable {key}", field=key)
    return handle


def _handles(flow: str, raw: dict[str, Any], index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    edge_id = str(raw.get("id") or f"#{index}")
    data: dict[str, Any] = raw["data"] if isinstance(raw.get("data"), dict) else {}
    source = data.get("sourceHandle") or raw.get("sourceHandle")
    target = data.get("targetHandle") or raw.get("targetHandle")
    return (
        _decode_handle(flow, edge_id, source, "sourceHandle"),
        _decode_handle(flow, edge_id, target, "targetHandle"),
    )


def _parse_edge(flow: str, raw: Any, index: int, nodes: Mapping[str, Node]) -> Edge:
    if not isinstance(raw, dict):
        raise FlowError(flow, f"edge #{index} is not a JSON object", field="data.edges")
    source_handle, target_handle = _handles(flow, raw, index)
    source_id = str(raw.get("source") or source_handle.get("id"))
    target_id = str(raw.get("target") or target_handle.get("id"))
    for end, node_id in (("source", source_id), ("target", target_id)):
        if node_id not in nodes:
            raise FlowError(flow, f"edge #{index} has a {end} node that does not exist", node=node_id)
    source, target = nodes[source_id], nodes[target_id]
    output_name = str(source_handle.get("name"))
    if source.output(output_name) is None:
        raise FlowError(
            flow, f"edge #{index} reads an output the node does not have", node=source.id, field=output_name
        )
    if "fieldName" in target_handle:
        field = target_handle["fieldName"]
        if target.field_spec(field) is None:
            raise FlowError(
                flow, f"edge #{index} feeds a field the node does not have", node=target.id, field=field
            )
        feedback = False
    else:  # a loop's feedback edge names the loop's output that takes the item back
        field = str(target_handle.get("name"))
        out = target.output(field)
        if out is None or not out.allows_loop:
            raise FlowError(
                flow, f"edge #{index} feeds neither a field nor a loop output", node=target.id, field=field
            )
        feedback = True
    output = source.output(output_name)
    assert output is not None
    return Edge(
        source=source.id,
        source_output=output_name,
        output_types=tuple(source_handle.get("output_types") or output.types),
        target=target.id,
        target_field=field,
        input_types=tuple(target_handle.get("inputTypes") or target_handle.get("output_types") or ()),
        loop_feedback=feedback,
        source_handle=source_handle,
        target_handle=target_handle,
    )


def _check_single_sources(flow: Flow) -> None:
    seen: dict[tuple[str, str], str] = {}
    for edge in flow.edges:
        if edge.loop_feedback:
            continue
        key = (edge.target, edge.target_field)
        if key in seen and not flow.nodes[edge.target].is_list_field(edge.target_field):
            raise FlowError(
                flow.name,
                f"several edges feed a single-value field (from {seen[key]!r} and {edge.source!r})",
                node=edge.target,
                field=edge.target_field,
            )
        seen[key] = edge.source


def topological_order(flow: Flow) -> list[str]:
    """Node ids in run order (file order among equals); loop feedback edges do not count."""
    indegree = {node_id: 0 for node_id in flow.nodes}
    children: dict[str, list[str]] = {node_id: [] for node_id in flow.nodes}
    for edge in flow.edges:
        if edge.loop_feedback:
            continue
        indegree[edge.target] += 1
        children[edge.source].append(edge.target)
    position = {node_id: i for i, node_id in enumerate(flow.nodes)}
    ready = [(position[n], n) for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node_id = heapq.heappop(ready)
        order.append(node_id)
        for child in children[node_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, (position[child], child))
    if len(order) != len(flow.nodes):
        done = set(order)
        stuck = next(n for n in flow.nodes if n not in done)
        raise FlowError(
            flow.name, "the flow has a cycle that is not a Loop component's feedback edge", node=stuck
        )
    return order

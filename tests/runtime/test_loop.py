"""A Loop and its body run as one in-process sub-graph (tests/fixtures/runtime/loop_flow.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepflow_dagster.runtime import ComponentCall, run_component, run_subgraph
from tests.runtime.conftest import FIXTURES, hop

pytestmark = pytest.mark.slow


def _flow() -> dict:
    return json.loads((FIXTURES / "loop_flow.json").read_text())["data"]


def test_loop_over_dataframe_rows() -> None:
    from lfx.schema.dataframe import DataFrame

    flow = _flow()
    nodes = {n["id"]: n["data"] for n in flow["nodes"]}
    loop_id = next(i for i, d in nodes.items() if d["type"] == "LoopComponent")
    chat_id = next(i for i, d in nodes.items() if d["type"] == "ChatOutput")
    body = {i: d for i, d in nodes.items() if i != chat_id}
    rows = hop(DataFrame([{"title": "alpha"}, {"title": "beta"}, {"title": "gamma"}]))

    out = run_subgraph(body, flow["edges"], {loop_id: {"data": rows}}, {loop_id: ["done"]}, flow_name="loop")
    done = hop(out[loop_id]["done"])
    assert [str(t) for t in done["text"]] == ["ALPHA!", "BETA!", "GAMMA!"]

    # downstream of the loop, a plain op again
    chat = run_component(ComponentCall(chat_id, nodes[chat_id], {"input_value": done}, ["message"]))
    assert "ALPHA!" in chat["message"].text and "GAMMA!" in chat["message"].text


def test_loop_body_error_names_the_loop(tmp_path: Path) -> None:
    from lfx.schema.dataframe import DataFrame

    from stepflow_dagster.runtime import ComponentError

    flow = _flow()
    nodes = {n["id"]: n["data"] for n in flow["nodes"]}
    loop_id = next(i for i, d in nodes.items() if d["type"] == "LoopComponent")
    shout = next(d for d in nodes.values() if d["type"] == "Shout")
    code = shout["node"]["template"]["code"]
    code["value"] = code["value"].replace(
        'return Message(text=str(self.input_value).upper() + "!")', 'raise ValueError("body broke")'
    )
    body = {i: d for i, d in nodes.items() if d["type"] != "ChatOutput"}
    with pytest.raises(ComponentError, match="body broke") as info:
        run_subgraph(
            body, flow["edges"], {loop_id: {"data": DataFrame([{"title": "x"}])}}, {loop_id: ["done"]}
        )
    assert info.value.node_id == loop_id

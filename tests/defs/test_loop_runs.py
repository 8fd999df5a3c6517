"""Loops run through the Dagster job: the loop step's sub-graph is built from the plan's inner edges.

The runtime tests (tests/runtime/test_loop.py) hand lfx the export's raw edges; these go through
plan -> op -> `_raw_edge`, which is where a rebuilt handle with the wrong types used to fail with
"Edge between ... and Loop has invalid handles".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from stepflow_dagster.defs.ops import _raw_edge
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import dump_plan, load_plan, plan_flow
from tests.conftest import ROOT, shared_flow
from tests.defs.test_runs import execute, output_text

LOOP_FIXTURE = ROOT / "tests" / "fixtures" / "runtime" / "loop_flow.json"
RESEARCH_LOOP = "langflow_starter_1.13__Research_Translation_Loop.json"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as inst:
        yield inst


def _export_edges(flow: Path) -> dict[tuple[str, str], dict]:
    edges = json.loads(flow.read_text())["data"]["edges"]
    return {(e["source"], e["target"]): e["data"] for e in edges}


@pytest.mark.parametrize("flow", [LOOP_FIXTURE, shared_flow(RESEARCH_LOOP)], ids=["fixture", "research"])
def test_inner_edges_are_the_exports_handles_after_a_yaml_round_trip(flow: Path) -> None:
    plan = load_plan(dump_plan(plan_flow(load_flow(flow))))
    loop = next(s for s in plan.steps if s.is_loop)
    exported = _export_edges(flow)
    assert len(loop.inner_edges) == 3
    for edge in loop.inner_edges:
        rebuilt = _raw_edge(loop, edge)
        assert rebuilt["data"] == exported[(edge.source, edge.target)]


def _fed_loop_fixture(tmp_path: Path) -> Path:
    """The loop fixture with a Rows node feeding the Loop's `data` (a handle: tweaks cannot set it)."""
    from tests.runtime.conftest import fixture_node

    doc = json.loads(LOOP_FIXTURE.read_text())
    loop = next(n for n in doc["data"]["nodes"] if n["data"]["type"] == "LoopComponent")
    rows = fixture_node("rows.py", "Rows")
    rows["id"] = "Rows-feed1"
    doc["data"]["nodes"].insert(0, {"id": rows["id"], "type": "genericNode", "data": rows})
    source = {"dataType": "Rows", "id": rows["id"], "name": "table", "output_types": ["DataFrame"]}
    target = {
        "fieldName": "data",
        "id": loop["id"],
        "inputTypes": ["DataFrame", "Table", "Data", "Message"],
        "type": "other",
    }
    edge = {
        "source": rows["id"],
        "target": loop["id"],
        "data": {"sourceHandle": source, "targetHandle": target},
    }
    doc["data"]["edges"].append(edge)
    path = tmp_path / "loop_fed.json"
    path.write_text(json.dumps(doc))
    path.with_suffix(".yaml").write_text("run: {trust: {all: true}}\n")  # Rows and Shout: custom code
    return path


@pytest.mark.slow
def test_loop_fixture_runs_through_dagster(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    flow = _fed_loop_fixture(tmp_path)
    config = {"tweaks": {"Rows-feed1": {"titles": "alpha, beta, gamma"}}}
    result = execute(flow, instance, tmp_path / "io", config)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    end = plan_flow(load_flow(flow)).outputs[0]
    text = output_text(instance, tmp_path / "io", result.run_id, end.step, end.field)
    # Chat Output shows the done table as Markdown: one row per item, in order, each through the body.
    rows = [line.strip("| ") for line in text.splitlines() if line.strip()]
    assert rows[-3:] == ["ALPHA!", "BETA!", "GAMMA!"]


ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">{}</feed>"""
ENTRY = """<entry><id>http://arxiv.org/abs/{n}</id><title>{title}</title><summary>{summary}</summary>
<published>2026-01-0{n}T00:00:00Z</published><author><name>A. Author</name></author></entry>"""
PAPERS = [("Loops in graphs", "We study loops."), ("Dagster ops", "Ops run in processes.")]


@pytest.fixture
def arxiv_offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """export.arxiv.org answered in this process (no network here): the ArXiv component's own HTTP
    handler gets a canned Atom feed. Works with the in-process executor only."""
    import io
    import urllib.request
    from email.message import Message as Headers

    asked: list[str] = []

    def http_open(self: urllib.request.HTTPHandler, req: urllib.request.Request) -> object:
        assert req.host == "export.arxiv.org", req.full_url
        asked.append(req.full_url)
        entries = "".join(ENTRY.format(n=i + 1, title=t, summary=s) for i, (t, s) in enumerate(PAPERS))
        body = io.BytesIO(ATOM.format(entries).encode())
        response = urllib.response.addinfourl(body, Headers(), req.full_url, 200)
        response.msg = "OK"  # read by the opener's error processor, as on an http.client response
        return response

    monkeypatch.setattr(urllib.request.HTTPHandler, "http_open", http_open)
    return asked


@pytest.mark.slow
def test_research_translation_loop_runs_through_dagster(
    stand_in_llm: str, arxiv_offline: list[str], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    flow = shared_flow(RESEARCH_LOOP)
    # The export has no model selected (the UI would pick one): choose OpenAI's, served by the stand-in.
    model = [{"name": "gpt-4o-mini", "provider": "OpenAI"}]
    config = {"input_value": "loops", "tweaks": {"LanguageModelComponent-ps5yd": {"model": model}}}
    result = execute(flow, instance, tmp_path / "io", config)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert len(arxiv_offline) == 1 and "loops" in arxiv_offline[0]
    end = plan_flow(load_flow(flow)).outputs[0]
    text = output_text(instance, tmp_path / "io", result.run_id, end.step, end.field)
    # Each paper went through the loop body: Parser -> Language Model (the stand-in echoes its prompt).
    replies = [line for line in text.splitlines() if "[stand-in LLM]" in line]
    assert len(replies) == len(PAPERS)
    for (title, _), reply in zip(PAPERS, replies, strict=True):
        assert title in reply

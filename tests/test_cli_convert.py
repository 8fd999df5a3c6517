"""`stepflow-dagster analyze` and `convert` as a user runs them: real processes, exit codes, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stepflow_dagster.plan import load_plan
from tests.conftest import ALL_SHARED, shared_flow
from tests.flow.test_parse import BROKEN


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepflow_dagster.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", ALL_SHARED)
def test_every_shared_flow_analyzes_and_converts(name: str, tmp_path: Path) -> None:
    path = shared_flow(name)
    res = cli("analyze", str(path), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["node_count"] >= 2 and doc["edges"]
    out = tmp_path / "plan.yaml"
    res = cli("convert", str(path), str(out))
    assert res.returncode == 0, res.stderr
    plan = load_plan(out)
    assert len(plan.steps) >= 2
    assert {c.node_id for s in plan.steps for c in s.components} == {n for n in _node_ids(path)}


def _node_ids(path: Path) -> set[str]:
    nodes = json.loads(path.read_text())["data"]["nodes"]
    return {n["id"] for n in nodes if n.get("type") != "noteNode"}


def test_analyze_text_names_variables_live_edges_and_warnings() -> None:
    res = cli("analyze", str(shared_flow("openrag__ingestion_flow.json")))
    assert res.returncode == 0
    assert "* EmbeddingModel-eZ6bT.embeddings -> OpenSearchHybrid-Ve6bS.embedding: Embeddings" in res.stdout
    assert "OWNER_EMAIL" in res.stdout and "exported with Langflow: 1.6.3.dev1" in res.stdout
    assert "warning: node 'OpenSearchHybrid-Ve6bS' field 'jwt_token' holds a literal credential" in res.stdout


def test_convert_to_stdout_carries_code_but_no_secret() -> None:
    res = cli("convert", str(shared_flow("openrag__openrag_nudges.json")))
    assert res.returncode == 0
    assert "class " in res.stdout and "o8h@xwLus123o" not in res.stdout
    assert "replaced by variable OPENSEARCH_IYFJF_PASSWORD" in res.stderr


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_flow_exits_non_zero_and_writes_nothing(case: str, tmp_path: Path) -> None:
    doc = BROKEN[case][0]
    path = tmp_path / f"{case}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    out = tmp_path / "out" / "plan.yaml"
    res = cli("convert", str(path), str(out))
    assert res.returncode == 2
    assert res.stderr.startswith("error: flow ") and BROKEN[case][1] in res.stderr
    assert not out.exists() and not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    res = cli("analyze", str(path))
    assert res.returncode == 2 and "error: flow" in res.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    res = cli("analyze", str(tmp_path / "nope.json"))
    assert res.returncode == 2 and "cannot read file" in res.stderr


def test_analyze_lists_credentials_the_export_leaves_empty() -> None:
    path = str(shared_flow("langflow_starter_1.13__Basic_Prompting.json"))
    res = cli("analyze", path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    at = lines.index("variables (resolved at run time from run config, then the environment):")
    assert lines[at + 1] == "  (none)"
    assert lines[at + 2].startswith("credentials empty in the export (needed at run time")
    assert lines[at + 3] == "  LanguageModelComponent-FLeYF.api_key (API Key)"
    doc = json.loads(cli("analyze", path, "--json").stdout)
    assert doc["empty_credentials"] == [
        {
            "node": "LanguageModelComponent-FLeYF",
            "field": "api_key",
            "display_name": "API Key",
            "hidden": False,
        }
    ]


def test_empty_credentials_hidden_by_an_unselected_option_are_marked() -> None:
    doc = json.loads(cli("analyze", str(shared_flow("openrag__ingestion_flow.json")), "--json").stdout)
    # the OpenSearch password of basic auth, while the export selects JWT (whose token is a literal)
    assert doc["empty_credentials"] == [
        {
            "node": "OpenSearchHybrid-Ve6bS",
            "field": "password",
            "display_name": "OpenSearch Password",
            "hidden": True,
        }
    ]
    # a field that names a variable is a variable, not an empty credential
    doc = json.loads(
        cli("analyze", str(shared_flow("langflow_starter__Basic_Prompting.json")), "--json").stdout
    )
    assert doc["empty_credentials"] == [] and [v["variable"] for v in doc["variables"]] == ["OPENAI_API_KEY"]

"""The default code policy on a Langflow 1.5 export, through Dagster: its Language Model keeps its own code
(1.13's reads `provider`/`model_name` differently and fails) and answers through the stand-in LLM."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow
from tests.conftest import shared_flow
from tests.defs.test_runs import execute, output_text
from tests.test_cli_convert import cli

pytestmark = pytest.mark.slow


def test_basic_prompting_1_5_runs_under_the_default_policy(stand_in_llm: str, tmp_path: Path) -> None:
    flow = shared_flow("langflow_starter__Basic_Prompting.json")
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        result = execute(flow, instance, tmp_path / "io", {"input_value": "What is a vector store?"})
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        end = plan_flow(load_flow(flow)).outputs[0]
        text = output_text(instance, tmp_path / "io", result.run_id, end.step, end.field)
    assert text == "[stand-in LLM] What is a vector store?"


def test_analyze_says_what_runs_and_warns_where_the_exports_code_is_kept() -> None:
    res = cli("analyze", str(shared_flow("langflow_starter__Basic_Prompting.json")), "--code-policy")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert (
        "  ChatOutput-8ZWWB: upgraded to installed code (lfx core index): not edited, outputs kept, "
        "inputs read alike" in lines
    )
    assert (
        "warning: node 'LanguageModelComponent-kBOja' runs the export's own code: installed code reads "
        "fields differently (model_name: DropdownInput -> StrInput; provider: DropdownInput -> StrInput)"
    ) in lines


def test_analyze_json_carries_code_warnings() -> None:
    import json

    res = cli("analyze", str(shared_flow("openrag__ingestion_flow.json")), "--code-policy", "--json")
    doc = json.loads(res.stdout)
    assert doc["code_policy"]["ExportDoclingDocument-zZdRg"].startswith("upgraded to installed code")
    assert set(doc["code_warnings"]) == {
        "EmbeddingModel-eZ6bT",
        "DoclingRemote-Dp3PX",
        "DataFrameOperations-1BWXB",
        "DataFrameOperations-N80fC",
        "DataFrameOperations-9vMrp",
    }

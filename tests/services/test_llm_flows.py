"""Flows that need a hosted LLM, run against a STAND-IN: the local server's /v1/chat/completions speaks
OpenAI's chat protocol with deterministic replies (no hosted LLM is reachable offline). The flows are the
unmodified starter exports; the endpoint is chosen by configuration (OPENAI_BASE_URL), as a deployment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from stepflow_dagster.defs.single import reconstructable_job
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow
from tests.conftest import ROOT, shared_flow

pytestmark = pytest.mark.slow


@pytest.fixture
def stand_in_llm(embeddings_base_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_BASE_URL", embeddings_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in-llm-key-not-checked")
    return embeddings_base_url


def dagster_output(flow: Path, config: dict, tmp_path: Path) -> str:
    from stepflow_dagster.defs.ops import preview
    from stepflow_dagster.runtime import decode

    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        result = dg.execute_job(
            reconstructable_job(str(flow), "in_process", str(tmp_path / "io")),
            instance=instance,
            run_config={"resources": {"langflow": {"config": config}}},
        )
        assert result.success
        end = plan_flow(load_flow(flow)).outputs[0]
        stored = json.loads((tmp_path / "io" / result.run_id / end.step / f"{end.field}.json").read_text())
        return preview(decode(stored), limit=10**6)


def lfx_output(flow: Path, input_value: str, tweaks: dict) -> str:
    from lfx.processing.process import process_tweaks

    doc = json.loads(flow.read_text())
    process_tweaks(doc["data"], tweaks)
    args = [sys.executable, "-m", "lfx", "run", "--flow-json", json.dumps(doc), "--format", "text"]
    env = {**os.environ, "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false"}
    res = subprocess.run(
        [*args, "--input-value", input_value], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert res.returncode == 0 and '"success": false' not in res.stdout, res.stdout + res.stderr
    return res.stdout.strip()


def test_basic_prompting_equals_lfx_run_against_the_stand_in(stand_in_llm: str, tmp_path: Path) -> None:
    flow = shared_flow("langflow_starter__Basic_Prompting.json")
    question = "What is a vector store?"
    # The 1.13 Language Model reads the 1.5 export's model fields differently: run the export's own code,
    # as `lfx run` does (upgrade-stock keeps it too now; tests/defs/test_code_policy_runs.py runs it so).
    policy = {"code_policy": {"LanguageModelComponent-kBOja": "frozen"}}
    ours = dagster_output(flow, {"input_value": question, **policy}, tmp_path)
    assert ours == f"[stand-in LLM] {question}"
    assert ours == lfx_output(flow, question, {})


def test_document_qa_reads_the_file_and_asks_the_stand_in(stand_in_llm: str, tmp_path: Path) -> None:
    flow = shared_flow("langflow_starter__Document_Q_A.json")
    doc = tmp_path / "note.txt"
    doc.write_text("The lighthouse keeper lit the lamp at dusk every day for forty years.")
    policy = {"code_policy": {"LanguageModelComponent-htMuI": "frozen"}}
    ours = dagster_output(flow, {"input_value": "Who lit the lamp?", "files": [str(doc)], **policy}, tmp_path)
    assert ours.startswith("[stand-in LLM]")
    assert ours == lfx_output(flow, "Who lit the lamp?", {"File-b2gOG": {"path": [str(doc)]}})

"""`stepflow-dagster parity` as a person runs it, on offline shared exports (no services): exit 0 on
parity, 1 on a difference, with the table; and how lfx run's output is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stepflow_dagster.flow import load_flow
from stepflow_dagster.parity import (
    FAILED,
    NOT_RUN,
    RAN,
    Failure,
    SideResult,
    compare,
    parse_lfx_output,
    render,
)
from stepflow_dagster.plan import plan_flow
from tests.conftest import ROOT, shared_flow


@pytest.mark.slow
def test_parity_command_exit_codes_and_table(stand_in_chat: str) -> None:
    """Two commands side by side (each runs lfx and a Dagster job with the default executor)."""
    hello = shared_flow("lfx_template__hello-world.json")
    prompting = shared_flow("langflow_starter__Basic_Prompting.json")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env |= {"OPENAI_BASE_URL": stand_in_chat, "OPENAI_API_KEY": "sk-stand-in-not-checked"}
    commands = {
        "same": ["parity", str(hello), "--input", "Parity, please"],
        # The installed Language Model code, which reads the 1.5 export's `provider`/`model_name` as
        # overrides and fails before calling the model; lfx runs the export's code and gets an answer.
        "different": [
            "parity",
            str(prompting),
            "--input",
            "What is a vector store?",
            "--code-policy",
            "LanguageModelComponent-kBOja=upgrade",
        ],
    }
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-m", "stepflow_dagster.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for key, args in commands.items()
    }
    out = {key: (p.communicate(timeout=900), p.returncode) for key, p in procs.items()}
    (stdout, stderr), code = out["same"]
    assert code == 0, stdout + stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("parity: hello-world (lfx run ")
    result = ["result", "(ChatOutput-boh63)", "Parity,", "please", "Parity,", "please", "same"]
    assert any(line.split() == result for line in lines)
    assert any(line.split() == ["TextInput-J1CQK", "ran", "ran", "same"] for line in lines)
    assert lines[-1] == "parity: same"

    (stdout, stderr), code = out["different"]
    assert code == 1, stdout + stderr
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:] if line.startswith("  ")}
    assert rows["LanguageModelComponent-kBOja"] == ["ran", "failed", "DIFFERENT"]
    assert rows["ChatOutput-8ZWWB"] == ["ran", "not", "run", "DIFFERENT"]
    assert "lfx run: [stand-in LLM] What is a vector store?" in stdout
    assert "Model name/provider overrides require" in stdout
    assert stdout.splitlines()[-1] == "parity: 4 row(s) differ"  # result, failure, the two nodes


def test_lfx_output_is_read_per_component_and_failures_by_display_name() -> None:
    plan = plan_flow(load_flow(shared_flow("langflow_factory__others__dataframe_image.json")))
    ok = {
        "result": "done",
        "component_id": "ChatOutput-Ec39z",
        "success": True,
        "timing": {
            "component_timings": [{"component_id": "File-g3C6N"}, {"component_id": "ChatOutput-Ec39z"}]
        },
    }
    side = parse_lfx_output(plan, "some log line\n" + json.dumps(ok), "", 1.0)
    assert (side.result, side.result_node, side.failure) == ("done", "ChatOutput-Ec39z", None)
    assert side.status["File-g3C6N"] == RAN and side.status["ParserComponent-2baU8"] == NOT_RUN
    error = {
        "success": False,
        "type": "error",
        "exception_message": "Error building Component DataFrame Operations: \n\nname 'pd' is not defined",
    }
    side = parse_lfx_output(plan, json.dumps(error), "", 1.0)
    assert side.failure is not None
    assert (side.failure.node, side.failure.cause) == (
        "DataFrameOperationsComponent-wfbGg",
        "name 'pd' is not defined",
    )
    assert side.status["DataFrameOperationsComponent-wfbGg"] == FAILED
    # Ours failed at the same node with the same cause (its text carries the exception type): parity.
    ours = SideResult("dagster", {n: NOT_RUN for n in side.status}, failure=None)
    ours.status.update({"File-g3C6N": RAN, "DataFrameOperationsComponent-wfbGg": FAILED})
    ours.failure = Failure("DataFrameOperationsComponent-wfbGg", "NameError: name 'pd' is not defined")
    report = compare(plan.flow, plan, side, ours)
    assert report.same, render(report)
    ours.failure = Failure("DataFrameOperationsComponent-wfbGg", "KeyError: 'x'")
    assert not compare(plan.flow, plan, side, ours).same
    assert parse_lfx_output(plan, "", "Traceback ...", 1.0).failure is not None  # no JSON: a failure

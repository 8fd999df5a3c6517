"""`stepflow-dagster submit`: runs launched by GraphQL on a real webserver, queued, launched by the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from stepflow_dagster.defs.ops import preview
from stepflow_dagster.runtime import decode
from tests.conftest import ROOT
from tests.frontends.conftest import Stack

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "stepflow-dagster")


def submit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "submit", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_submit_a_flow_file_with_input_and_tags_and_wait(dagster_stack: Stack) -> None:
    res = submit(
        "flows/hello_world.json",
        "--url",
        dagster_stack.url,
        "--input",
        "Hello over GraphQL",
        "--tag",
        "team=qa",
        "--wait",
        "--timeout",
        "300",
        "--json",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["job"] == "hello_world" and out["status"] == "SUCCESS"
    run_id = out["run_id"]
    stored = json.loads(dagster_stack.storage(run_id, "ChatOutput_boh63", "message").read_text())
    assert preview(decode(stored)) == "Hello over GraphQL"
    with dg.DagsterInstance.from_config(str(dagster_stack.home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags["team"] == "qa"
        assert run.run_config["resources"]["langflow"]["config"]["input_value"] == "Hello over GraphQL"  # type: ignore[index]
        # It went through the queue: the daemon's coordinator launched it.
        events = {r.dagster_event.event_type_value for r in instance.all_logs(run_id) if r.dagster_event}
        assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= events


def test_submit_by_job_name_without_waiting_prints_the_run_id(dagster_stack: Stack) -> None:
    res = submit(
        "hello_world", "--url", dagster_stack.url, "--tweaks", '{"TextInput-J1CQK": {"input_value": "tw"}}'
    )
    assert res.returncode == 0, res.stderr
    run_id, status = res.stdout.split()
    assert status == "QUEUED" and len(run_id) == 36


def test_submit_an_unknown_job_fails_with_the_reason(dagster_stack: Stack) -> None:
    res = submit("no_such_job", "--url", dagster_stack.url)
    assert res.returncode == 2
    assert "no_such_job" in res.stderr and "JobNotFoundError" in res.stderr

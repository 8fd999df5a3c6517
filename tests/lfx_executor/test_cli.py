"""`lfx run` and `lfx serve` as a person runs them, with `LANGFLOW_EXECUTOR_KIND=dagster`: the same
result as lfx's in-process executor, and the run (one op per component) in the Dagster instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow
from tests.conftest import shared_flow
from tests.frontends.conftest import free_port

pytestmark = pytest.mark.slow
LFX = str(Path(sys.executable).parent / "lfx")
HELLO = "lfx_template__hello-world.json"


def lfx_env(home: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "LANGFLOW_EXECUTOR_KIND")}
    if home is not None:
        env["DAGSTER_HOME"] = str(home)
    return env | extra


def step_successes(home: Path) -> tuple[list[dg.DagsterRun], dict[str, int]]:
    """The instance's runs, and per op (step key) how many STEP_SUCCESS events they recorded."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = list(instance.get_runs())
        counts: dict[str, int] = {}
        for run in runs:
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
                key = str(record.step_key)
                counts[key] = counts.get(key, 0) + 1
        return runs, counts


def test_lfx_run_prints_the_in_process_result_and_records_one_dagster_run(tmp_path: Path) -> None:
    flow = shared_flow(HELLO)
    home = tmp_path / "home"
    home.mkdir()
    args = [LFX, "run", "--format", "json", "--no-check-dependencies", "--input-value", "Hi", str(flow)]
    procs = {
        "in-process": subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lfx_env(None), cwd=tmp_path
        ),
        "dagster": subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=lfx_env(home, LANGFLOW_EXECUTOR_KIND="dagster"),
            cwd=tmp_path,
        ),
    }
    out = {kind: p.communicate(timeout=600) for kind, p in procs.items()}
    for kind, p in procs.items():
        assert p.returncode == 0, f"{kind}: {out[kind]}"
    results = {kind: json.loads(stdout.strip().splitlines()[-1]) for kind, (stdout, _) in out.items()}
    for result in results.values():
        result.pop("logs")
    assert results["dagster"] == results["in-process"]
    assert results["dagster"]["result"] == "Hello, World!" and results["dagster"]["success"] is True

    plan = plan_flow(load_flow(flow))
    runs, successes = step_successes(home)
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert runs[0].tags["stepflow/lfx_executor"] == "dagster"
    assert successes == {step.name: 1 for step in plan.steps}  # one op per component, each ran once


def test_lfx_serve_answers_through_a_dagster_run(tmp_path: Path) -> None:
    flow = shared_flow(HELLO)
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = lfx_env(home, LANGFLOW_EXECUTOR_KIND="dagster", LANGFLOW_API_KEY="test-key")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [LFX, "serve", str(flow), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"x-api-key": "test-key", "Content-Type": "application/json"}
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(urllib.request.Request(f"{base}/flows", headers=headers)) as res:
                    flows = json.loads(res.read())
                    break
            except OSError:
                assert time.monotonic() < deadline, "lfx serve did not answer"
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{base}/flows/{flows[0]['id']}/run",
            data=json.dumps({"input_value": "Hi"}).encode(),
            headers=headers,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=600) as res:
            answer = json.loads(res.read())
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert answer["success"] is True and answer["result"] == "Hello, World!", answer
    assert answer["component"] == "Chat Output"
    runs, successes = step_successes(home)
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
    assert set(successes) == {step.name for step in plan_flow(load_flow(flow)).steps}

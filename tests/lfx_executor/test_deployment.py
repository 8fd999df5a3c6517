"""The `dagster` executor with `STEPFLOW_DAGSTER_URL`: a call goes to a real webserver (GraphQL), the
daemon launches the run from its queue, and the result streams back as with a local run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import dagster as dg
import pytest
from lfx.execution import RunComplete, StepResult, Unit

from stepflow_dagster.flow import load_flow
from stepflow_dagster.lfx_executor import DagsterExecutor
from stepflow_dagster.plan import plan_flow
from tests.conftest import ROOT
from tests.frontends.conftest import Stack

pytestmark = pytest.mark.slow


def test_a_call_runs_the_deployments_job_and_streams_its_result(
    dagster_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lfx.cli.script_loader import extract_structured_result
    from lfx.load import load_flow_from_json

    flow = ROOT / "flows/hello_world.json"
    monkeypatch.setenv("STEPFLOW_DAGSTER_URL", dagster_stack.url)
    # lfx's loader keeps no flow name: the job is found by its ops (the flow's steps), among the
    # deployment's jobs (hello_world, the OpenRAG ingestion's, its removal job)
    monkeypatch.delenv("STEPFLOW_DAGSTER_JOB", raising=False)

    async def drain() -> list[Any]:
        unit = Unit(graph=load_flow_from_json(str(flow)))
        return [item async for item in DagsterExecutor().execute(unit)]

    items = asyncio.run(drain())
    assert isinstance(items[-1], RunComplete)
    payloads = [i.payload for i in items if isinstance(i, StepResult)]
    assert extract_structured_result(payloads)["result"] == "Hello, World!"

    with dg.DagsterInstance.from_config(str(dagster_stack.home)) as instance:
        ours = [r for r in instance.get_runs() if r.tags.get("stepflow/lfx_executor") == "dagster"]
        (run,) = [r for r in ours if r.status != dg.DagsterRunStatus.CANCELED]
        assert run.job_name == "hello_world" and run.status == dg.DagsterRunStatus.SUCCESS
        events = [r.dagster_event for r in instance.all_logs(run.run_id) if r.dagster_event]
        assert "PIPELINE_ENQUEUED" in {e.event_type_value for e in events}  # the daemon launched it
        succeeded = sorted(str(e.step_key) for e in events if e.is_step_success)
    assert succeeded == sorted(step.name for step in plan_flow(load_flow(flow)).steps)


def test_a_cancelled_call_terminates_the_deployments_run(
    dagster_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lfx.load import load_flow_from_json

    monkeypatch.setenv("STEPFLOW_DAGSTER_URL", dagster_stack.url)
    monkeypatch.setenv("STEPFLOW_DAGSTER_JOB", "hello_world")
    graph = load_flow_from_json(str(ROOT / "flows/hello_world.json"))

    async def cancel_once_started(instance: dg.DagsterInstance) -> str:
        known = {r.run_id for r in instance.get_runs()}

        async def drain() -> list[Any]:
            return [item async for item in DagsterExecutor().execute(Unit(graph=graph))]

        task = asyncio.create_task(drain())
        deadline = time.monotonic() + 180
        while True:
            new = [r for r in instance.get_runs() if r.run_id not in known]
            if new and new[0].status == dg.DagsterRunStatus.STARTED:
                break
            assert not task.done() and time.monotonic() < deadline, "the run did not start"
            await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
        return new[0].run_id

    with dg.DagsterInstance.from_config(str(dagster_stack.home)) as instance:
        run_id = asyncio.run(cancel_once_started(instance))
        deadline = time.monotonic() + 120  # the deployment's launcher terminates it
        while (run := instance.get_run_by_id(run_id)) is not None and not run.is_finished:
            assert time.monotonic() < deadline, run.status
            time.sleep(0.5)
        assert run is not None and run.status == dg.DagsterRunStatus.CANCELED

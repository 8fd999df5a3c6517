"""lfx's executor contract, met by the `dagster` kind.

Langflow's reusable suite (`ExecutorContract` in langflow-ai/langflow
src/lfx/tests/unit/execution/test_executor_contract.py) is not in the installed lfx wheel, so its checks
are restated here: kind, an async iterator per call, StepResults then exactly one RunComplete, reuse of
one instance, concurrent calls isolated, aclose mid-stream without hanging; and the entry point that
discovery goes through. Plus what a Dagster backend adds: a cancelled call ends its run CANCELED, and a
failed component raises lfx's error naming the node. Real runs on a temporary instance, no mocks.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from lfx.execution import RunComplete, StepResult, Unit

from stepflow_dagster.lfx_executor import DagsterExecutor

pytestmark = pytest.mark.slow
FIRST_ITEM_SECONDS = 120  # Langflow's suite gives 10 s; a Dagster run's first op takes longer here
CLOSE_SECONDS = 60


@pytest.fixture(scope="module")
def executor() -> DagsterExecutor:
    """One instance for the whole module, as the Coordinator shares one: reuse is checked throughout."""
    return DagsterExecutor()


@pytest.fixture(autouse=True)
def temporary_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("STEPFLOW_DAGSTER_URL", raising=False)


def chat_unit(text: str = "hi") -> Unit:
    """Chat Input -> Chat Output, built in Python (lfx keeps no export: the executor dumps the graph)."""
    from lfx.components.input_output import ChatInput, ChatOutput
    from lfx.graph import Graph
    from lfx.schema.schema import InputValueRequest

    chat_in = ChatInput(_id="chat_input")
    chat_in.set(should_store_message=False)
    chat_out = ChatOutput(_id="chat_output")
    chat_out.set(input_value=chat_in.message_response, should_store_message=False)
    return Unit(
        graph=Graph(chat_in, chat_out),
        inputs=[],
        runtime_options={"initial_inputs": InputValueRequest(input_value=text), "unknown_key": 1, "_x": 2},
    )


async def drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def final_text(items: list[Any]) -> str:
    """What `lfx run` prints (lfx.cli.script_loader.extract_structured_result) from the payloads."""
    from lfx.cli.script_loader import extract_structured_result

    return str(extract_structured_result([i.payload for i in items if isinstance(i, StepResult)])["result"])


def test_kind_signature_and_entry_point() -> None:
    from importlib.metadata import entry_points

    assert DagsterExecutor.kind == "dagster"
    params = [p for p in inspect.signature(DagsterExecutor().execute).parameters.values()]
    assert [p.name for p in params] == ["unit"]
    (ep,) = [ep for ep in entry_points(group="lfx.executors") if ep.name == "dagster"]
    assert ep.load() is DagsterExecutor
    from lfx.services.executor.service import ExecutorService
    from lfx.services.settings.service import SettingsService

    assert isinstance(ExecutorService(SettingsService.initialize()).get("dagster"), DagsterExecutor)


def test_each_call_returns_a_fresh_async_iterator(executor: DagsterExecutor) -> None:
    async def main() -> None:
        first, second = executor.execute(chat_unit()), executor.execute(chat_unit())
        assert isinstance(first, AsyncIterator) and first is not second
        await first.aclose()  # never started: nothing ran, nothing to clean up
        await second.aclose()

    asyncio.run(main())


def test_stream_is_step_results_then_exactly_one_run_complete(executor: DagsterExecutor) -> None:
    from lfx.events.event_manager import create_default_event_manager

    queue: asyncio.Queue[Any] = asyncio.Queue()
    unit = chat_unit("hello seam")
    unit.runtime_options["event_manager"] = create_default_event_manager(queue)
    items = asyncio.run(drain(executor.execute(unit)))
    assert isinstance(items[-1], RunComplete)
    assert all(isinstance(i, StepResult) for i in items[:-1])
    assert sum(isinstance(i, RunComplete) for i in items) == 1
    ran = [i.payload.vertex.id for i in items[:-1] if hasattr(i.payload, "vertex")]
    assert ran == ["chat_input", "chat_output"]  # each component as it finished, in run order
    assert final_text(items) == "hello seam"  # the Chat Input took the input, as in-process lfx does
    (outputs,) = items[-1].outputs  # Graph.arun's shape: one RunOutputs, the output vertices' results
    assert [r.component_id for r in outputs.outputs] == ["chat_output"]
    told = [queue.get_nowait() for _ in range(queue.qsize())]  # a UI hears of each vertex's end
    assert sum(b'"end_vertex"' in item[1] for item in told) == 2


def test_concurrent_calls_on_one_instance_are_isolated(executor: DagsterExecutor) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        return await asyncio.gather(
            drain(executor.execute(chat_unit("one"))), drain(executor.execute(chat_unit("two")))
        )

    one, two = asyncio.run(main())
    assert isinstance(one[-1], RunComplete) and isinstance(two[-1], RunComplete)
    assert (final_text(one), final_text(two)) == ("one", "two")


def test_aclose_mid_stream_finishes_promptly_and_ends_the_run(executor: DagsterExecutor) -> None:
    async def main() -> float:
        stream = executor.execute(chat_unit())
        first = await asyncio.wait_for(anext(stream), FIRST_ITEM_SECONDS)
        assert isinstance(first, StepResult)
        started = time.monotonic()
        await asyncio.wait_for(stream.aclose(), CLOSE_SECONDS)
        return time.monotonic() - started

    assert asyncio.run(main()) < CLOSE_SECONDS


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    yield home


def test_a_cancelled_call_ends_its_dagster_run_canceled(
    executor: DagsterExecutor, dagster_home: Path
) -> None:
    def started_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        return runs[0] if runs else None

    async def main() -> tuple[str, float]:
        task = asyncio.create_task(drain(executor.execute(chat_unit())))
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            deadline = time.monotonic() + FIRST_ITEM_SECONDS
            while (run := started_run(instance)) is None:
                assert not task.done(), task
                assert time.monotonic() < deadline, "the run did not start"
                await asyncio.sleep(0.1)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, CLOSE_SECONDS)
            final = instance.get_run_by_id(run.run_id)
            assert final is not None
            return final.status.value, time.monotonic() - started

    status, seconds = asyncio.run(main())
    assert status == "CANCELED" and seconds < CLOSE_SECONDS


def test_a_failed_component_raises_lfx_error_naming_the_node(
    executor: DagsterExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lfx.exceptions.component import ComponentBuildError
    from lfx.load import load_flow_from_json

    from tests.conftest import ROOT

    monkeypatch.setenv("STEPFLOW_TEST_MARKER", str(tmp_path / "marker"))  # Flaky fails until it exists
    monkeypatch.setenv("STEPFLOW_DEPLOYMENT", str(ROOT / "tests/flows/flaky.yaml"))  # trusts its code
    graph = load_flow_from_json(str(ROOT / "tests/flows/flaky.json"))
    with pytest.raises(
        ComponentBuildError,
        match=r"(?s)Error building Component Flaky: .*the service is down.*node Flaky-fl001",
    ):
        asyncio.run(drain(executor.execute(Unit(graph=graph))))


def test_graph_arun_returns_what_in_process_lfx_returns() -> None:
    """`Graph.arun` (the legacy shape, through `Coordinator.run_to_completion`) with the kind chosen."""
    from lfx.execution import (
        Coordinator,
        get_default_registry,
        reset_default_coordinator,
        set_default_coordinator,
    )

    async def arun(kind: str) -> Any:
        set_default_coordinator(Coordinator(registry=get_default_registry(), executor_kind=kind))
        try:
            return await chat_unit().graph.arun(inputs=[{"input_value": "via arun"}])
        finally:
            reset_default_coordinator()

    def texts(outputs: Any) -> list[tuple[str | None, str]]:
        return [(r.component_id, r.results["message"].text) for run in outputs for r in run.outputs]

    assert (
        texts(asyncio.run(arun("dagster")))
        == texts(asyncio.run(arun("in-process")))
        == [("chat_output", "via arun")]
    )


def test_the_steps_run_lfx_in_process_with_the_requests_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepflow_dagster.lfx_executor import worker_env

    monkeypatch.setenv("LANGFLOW_EXECUTOR_KIND", "dagster")
    env = worker_env({"OWNER": "alice"})
    assert env["LANGFLOW_EXECUTOR_KIND"] == "in-process" and env["OWNER"] == "alice"


def test_a_requests_global_variable_reaches_the_component_never_the_run_config(
    executor: DagsterExecutor, dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lfx serve's global vars (graph.context["request_variables"]) for a secret field: the component
    reads the value from its process's environment; the run's stored config and event log never hold it."""
    from lfx.cli.runtime_variables import apply_global_vars_to_graph
    from lfx.load import load_flow_from_json

    from tests.conftest import ROOT

    secret = "sk-request-var-0123456789abcdef"
    monkeypatch.delenv("STEPFLOW_TEST_SECRET", raising=False)
    monkeypatch.setenv("STEPFLOW_DEPLOYMENT", str(ROOT / "tests/flows/secret_probe.yaml"))  # trusts its code
    graph = load_flow_from_json(str(ROOT / "tests/flows/secret_probe.json"))
    apply_global_vars_to_graph(graph, {"STEPFLOW_TEST_SECRET": secret})
    items = asyncio.run(drain(executor.execute(Unit(graph=graph))))
    assert final_text(items).startswith(f"len={len(secret)} sha=")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs()
        stored = repr(run.run_config) + "".join(repr(r) for r in instance.all_logs(run.run_id))
    assert run.status == dg.DagsterRunStatus.SUCCESS and secret not in stored

"""Langflow's executor seam backed by Dagster: `LANGFLOW_EXECUTOR_KIND=dagster lfx run flow.json`.

lfx (`Graph.arun`, `lfx run`, `lfx serve`, Loop subgraphs) hands its `Coordinator` a Graph; this executor
plans the graph's current data (tweaks the caller applied are in it), runs it as our Dagster job (one op
per component) and streams each finished component back as lfx's own `VertexBuildResult`, so callers read
the same final output as from the in-process executor.

Where the run goes:
- `STEPFLOW_DAGSTER_URL` set: submitted to that webserver by GraphQL (a code location must hold the
  flow's job: the one whose ops are the flow's steps, or the one `STEPFLOW_DAGSTER_JOB` names); the
  values are read from the IO manager's files, which must then be readable here (a shared volume).
- otherwise: the `$DAGSTER_HOME` instance, else a temporary one (as `stepflow-dagster run`), in a run
  worker process of its own (`dagster api execute_run`, what Dagster's default run launcher starts), so
  concurrent calls share no step processes or environment, and a cancelled call is terminated as
  Dagster terminates a run (SIGINT: the executor stops its steps, the run ends CANCELED).

`unit.runtime_options` keys read: `initial_inputs` (an `InputValueRequest` or a dict with `input_value`),
`session_id`, `event_manager` (told each vertex's end), `dagster_url`, `dagster_job`, and `deployment` (a
deployment file for a local run, else `$STEPFLOW_DEPLOYMENT`: lfx hands over a graph, not the export's
path); the others are ignored.
Variables of the request (`graph.context["request_variables"]`, lfx serve's global vars) reach the step
processes through their environment, never run config (a deployment gets none: its processes have their
own environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfx.execution import Executor, RunComplete, StepResult, Unit

from .flow import parse_flow
from .plan import FlowPlan, Step, plan_flow

URL_ENV = "STEPFLOW_DAGSTER_URL"
JOB_ENV = "STEPFLOW_DAGSTER_JOB"
DEPLOYMENT_ENV = "STEPFLOW_DEPLOYMENT"  # a deployment file (flows/<name>.yaml) for a local run
POLL_SECONDS = 0.1
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
CANCEL_GRACE_SECONDS = 20.0  # a terminated run's steps stop at their next check; then they are killed


@dataclass(frozen=True)
class StepEvent:
    kind: str  # "output" (stored, at `path`), "success" or "failure" (with its `cause`)
    step: str
    output: str = ""
    path: str = ""
    cause: str = ""


@dataclass
class Call:
    """One `execute()`: what the run takes. Lives in the call, never on the shared executor."""

    plan: FlowPlan
    doc: dict[str, Any]
    input_value: str | None
    inputs: dict[str, Any]  # LangflowRun's config for the input: `input_value`, or tweaks of Chat Inputs
    session_id: str | None
    variables: dict[str, str]
    job: str | None = None
    deployment: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def run_config(self, *, quiet: bool) -> dict[str, Any]:
        config: dict[str, Any] = dict(self.inputs)
        if self.session_id:
            config["session_id"] = self.session_id
        run_config: dict[str, Any] = {"resources": {"langflow": {"config": config}}}
        if quiet:  # the caller's terminal is lfx's: Dagster's event log stays out of it
            run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
        return run_config


def flow_document(graph: Any) -> dict[str, Any]:
    """The graph's data as an export: lfx keeps the payload it was built from (`raw_graph_data`)."""
    data = graph.raw_graph_data
    if not data.get("nodes"):
        data = graph.dump()["data"]
    return {"name": graph.flow_name or "flow", "id": graph.flow_id, "data": data}


def _input_config(unit: Unit) -> tuple[str | None, dict[str, Any]]:
    """The input and where lfx puts it (as LangflowRun's config: `input_value`, or tweaks). The streaming
    path (`lfx run`, `lfx serve`: `initial_inputs`) sets Chat Inputs only (`Vertex.build`); `Graph.arun`
    (the seam's `inputs`, `[{"input_value": ...}]`) every input component (`_set_inputs`, no type)."""
    inputs = unit.runtime_options.get("initial_inputs")
    legacy = inputs is None and bool(unit.inputs)
    if legacy:
        inputs = unit.inputs[0]
    value = inputs.get("input_value") if isinstance(inputs, Mapping) else getattr(inputs, "input_value", None)
    if value is None:
        return None, {}
    if legacy:
        return str(value), {"input_value": str(value)}
    chat = [v.id for v in unit.graph.vertices if v.vertex_type == "ChatInput" and v.is_input]
    return str(value), {"tweaks": {node: {"input_value": str(value)} for node in chat}} if chat else {}


def _request_variables(graph: Any) -> dict[str, str]:
    from lfx.cli.runtime_variables import build_request_variables_from_global_vars

    raw = (getattr(graph, "context", None) or {}).get("request_variables")
    return {str(k): str(v) for k, v in (build_request_variables_from_global_vars(raw) or {}).items()}


def prepare(unit: Unit) -> Call:
    graph = unit.graph
    doc = flow_document(graph)
    plan = plan_flow(parse_flow(doc, default_name=doc["name"]))
    opts = unit.runtime_options
    value, inputs = _input_config(unit)
    return Call(
        plan=plan,
        doc=doc,
        input_value=value,
        inputs=inputs,
        session_id=opts.get("session_id") or getattr(graph, "session_id", None),
        variables=_request_variables(graph),
        job=opts.get("dagster_job") or os.environ.get(JOB_ENV),
        deployment=opts.get("deployment") or os.environ.get(DEPLOYMENT_ENV),
        tags={"stepflow/lfx_executor": "dagster"},
    )


def worker_env(variables: Mapping[str, str]) -> dict[str, str]:
    """The run worker's environment, which its step processes inherit: the request's variables, and lfx
    in-process there (a Loop's body or a sub-flow inside an op must not become a Dagster run of its own)."""
    return {**os.environ, **variables, "LANGFLOW_EXECUTOR_KIND": "in-process"}


class LocalRun:
    """A run on the local instance, in its own run worker process (and process group)."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.tmp = tempfile.mkdtemp(prefix="stepflow-lfx-")
        self.instance: Any = None
        self.run_id = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.cursor: str | None = None

    def start(self) -> str:
        from dagster._grpc.types import ExecuteRunArgs
        from dagster._serdes import serialize_value

        from .defs import StepflowSettings
        from .defs.single import reconstructable_job
        from .run_report import run_instance

        flow_path = Path(self.tmp) / "flow.json"
        flow_path.write_text(json.dumps(self.call.doc), encoding="utf-8")
        if self.call.deployment:  # its tweaks, variables, secrets and code trust, as beside an export
            shutil.copyfile(self.call.deployment, flow_path.with_suffix(".yaml"))
        self.instance, storage = run_instance(str(Path(self.tmp) / "instance"))
        executor = os.environ.get("STEPFLOW_EXECUTOR", StepflowSettings.executor)
        job = reconstructable_job(str(flow_path), executor, storage)
        origin = job.get_python_origin()
        run = self.instance.create_run_for_job(
            job_def=job.get_definition(),
            run_config=self.call.run_config(quiet=True),
            tags=self.call.tags,
            job_code_origin=origin,
        )
        self.run_id = run.run_id
        args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=self.instance.get_ref())
        with (Path(self.tmp) / "worker.log").open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603 (our interpreter, Dagster's run worker)
                [sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)],
                stdin=subprocess.DEVNULL,
                stdout=log,  # lfx run prints its result on stdout: the worker writes elsewhere
                stderr=subprocess.STDOUT,
                env=worker_env(self.call.variables),
                start_new_session=True,  # its step processes are killed with it if it must be
            )
        return self.run_id

    def poll(self) -> tuple[list[StepEvent], str | None]:
        from dagster import DagsterEventType

        from .run_report import event_failures

        # Whether the worker had exited, read before the run's status: a worker reports the end, then exits.
        exited = self.proc is not None and self.proc.poll() is not None
        run = self.instance.get_run_by_id(self.run_id)
        status = run.status.value if run is not None and run.status.value in TERMINAL else None
        if status is None and exited:
            status = "FAILURE"  # the worker died before it could say so: its events are all in
        kinds = {
            DagsterEventType.HANDLED_OUTPUT,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
        }
        events: list[StepEvent] = []
        while True:
            conn = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=kinds)
            self.cursor = conn.cursor
            for record in conn.records:
                event = record.event_log_entry.dagster_event
                step = str(event.step_key).rsplit(".", 1)[-1]
                if event.event_type == DagsterEventType.HANDLED_OUTPUT:
                    data = event.event_specific_data
                    path = data.metadata.get("path")
                    events.append(
                        StepEvent("output", step, data.output_name, str(getattr(path, "value", "")))
                    )
                elif event.event_type == DagsterEventType.STEP_SUCCESS:
                    events.append(StepEvent("success", step))
                else:
                    failed = event_failures([event], self.call.plan)
                    events.append(StepEvent("failure", step, cause=failed[0].cause if failed else ""))
            if not conn.has_more:
                return events, status

    def worker_log(self) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.tmp) / "worker.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        return ""

    def cancel(self) -> None:
        """Terminate as Dagster does: mark the run CANCELING, interrupt its worker (which stops its steps
        and reports CANCELED), and after a grace period kill the worker's process group."""
        if self.instance is None or not self.run_id:
            return
        run = self.instance.get_run_by_id(self.run_id)
        if run is not None and not run.is_finished:
            self.instance.report_run_canceling(run)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(CANCEL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        run = self.instance.get_run_by_id(self.run_id)
        if run is not None and not run.is_finished:
            self.instance.report_run_canceled(run)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:  # the run has ended: its worker is exiting
                self.proc.wait(CANCEL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.instance is not None:
            self.instance.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)


JOBS_QUERY = """
query StepflowLfxJobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name solids { name } } } }
    ... on PythonError { message }
  }
}
"""
LOGS_QUERY = """
query StepflowLfxLogs($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { stepKey }
        ... on HandledOutputEvent {
          outputName
          metadataEntries { label ... on TextMetadataEntry { text } ... on PathMetadataEntry { path } }
        }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""


class RemoteRun:
    """A run submitted to a Dagster webserver (GraphQL); its daemon launches it."""

    def __init__(self, url: str, call: Call) -> None:
        from .submit import client_for

        self.call = call
        self.client = client_for(url)
        # One GraphQL session at a time: a cancel comes from another thread while a poll may be under way,
        # and the client's transport refuses a second connection ("Transport is already connected").
        self.lock = threading.RLock()
        self.run_id = ""
        self.cursor: str | None = None

    def job(self) -> tuple[str, str | None, str | None]:
        """(job, location, repository): the one named, else the deployment's job whose ops are this flow's
        steps (lfx's loader keeps no flow name; an op is named by its node, in every deployment)."""
        if self.call.job:
            return self.call.job, None, None
        steps = {step.name for step in self.call.plan.steps}
        repos = self.client._execute(JOBS_QUERY)["repositoriesOrError"]  # noqa: SLF001
        if repos["__typename"] != "RepositoryConnection":
            raise RuntimeError(f"Dagster deployment: {repos.get('message', repos['__typename'])}")
        found = [
            (job["name"], repo["location"]["name"], repo["name"])
            for repo in repos["nodes"]
            for job in repo["jobs"]
            if {op["name"] for op in job["solids"]} == steps
        ]
        named = [f for f in found if f[0] == self.call.plan.name]
        if len(found) == 1 or len(named) == 1:
            return (named or found)[0]
        which = f"several ({', '.join(f[0] for f in found)})" if found else "none"
        raise RuntimeError(
            f"Dagster deployment: {which} of its jobs run the steps {sorted(steps)}; set {JOB_ENV} to the job"
        )

    def start(self) -> str:
        with self.lock:
            name, location, repository = self.job()
            self.run_id = str(
                self.client.submit_job_execution(
                    name,
                    repository_location_name=location,
                    repository_name=repository,
                    run_config=self.call.run_config(quiet=False),
                    tags=self.call.tags,
                )
            )
            return self.run_id

    def poll(self) -> tuple[list[StepEvent], str | None]:
        with self.lock:
            return self._poll()

    def _poll(self) -> tuple[list[StepEvent], str | None]:
        value = self.client.get_run_status(self.run_id).value
        status = value if value in TERMINAL else None
        events: list[StepEvent] = []
        while True:
            data = self.client._execute(LOGS_QUERY, {"runId": self.run_id, "cursor": self.cursor})  # noqa: SLF001
            logs = data["logsForRun"]
            if logs["__typename"] != "EventConnection":
                raise RuntimeError(f"Dagster run {self.run_id}: {logs.get('message', logs['__typename'])}")
            self.cursor = logs["cursor"]
            for event in logs["events"]:
                kind, step = event["__typename"], str(event.get("stepKey") or "").rsplit(".", 1)[-1]
                if kind == "HandledOutputEvent":
                    entry: dict[str, Any] = next(
                        (e for e in event["metadataEntries"] if e["label"] == "path"), {}
                    )
                    path = entry.get("text") or entry.get("path") or ""
                    events.append(StepEvent("output", step, event["outputName"], path))
                elif kind == "ExecutionStepSuccessEvent":
                    events.append(StepEvent("success", step))
                elif kind == "ExecutionStepFailureEvent":
                    events.append(
                        StepEvent("failure", step, cause=(event.get("error") or {}).get("message", ""))
                    )
            if not logs["hasMore"]:
                return events, status

    def worker_log(self) -> str:
        return ""

    def cancel(self) -> None:
        with self.lock:
            if self.run_id and self.client.get_run_status(self.run_id).value not in TERMINAL:
                self.client.terminate_run(self.run_id)

    def close(self) -> None:
        pass


def _value(path: str) -> Any:
    """An op's output as the IO manager stored it, decoded to lfx's objects (Message, Data, ...)."""
    from upath import UPath

    from .runtime import decode

    return decode(json.loads(UPath(path).read_text(encoding="utf-8")))


class _Ran:
    """What lfx's consumers read of a vertex's component after it ran (`extract_structured_result`:
    its display name). The component itself ran in a step process, not here."""

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name


def vertex_results(graph: Any, plan: FlowPlan, step: Step, paths: Mapping[str, str]) -> list[Any]:
    """lfx's `VertexBuildResult` for each component of a finished step, its outputs set on the vertex
    as a local build would set them (`vertex.result`, `vertex.built`)."""
    from lfx.graph.graph.schema import VertexBuildResult
    from lfx.graph.schema import ResultData

    values: dict[str, dict[str, Any]] = {}
    for out in step.outputs:
        if out.name in paths:
            values.setdefault(out.node, {})[out.output] = _value(paths[out.name])
    found = []
    for component in step.components:
        node = component.node_id
        if node != step.node_id and node not in values:
            continue
        try:
            vertex = graph.get_vertex(node)
        except ValueError:  # a node lfx folded away (a group's inner node)
            continue
        results = values.get(node, {})
        result = ResultData(
            results=results,
            outputs={
                name: {"message": value, "type": type(value).__name__} for name, value in results.items()
            },
            component_display_name=component.display_name,
            component_id=node,
        )
        vertex.result = result
        vertex.built = True
        if vertex.custom_component is None:
            vertex.custom_component = _Ran(component.display_name)
        found.append(
            VertexBuildResult(result_dict=result, params="", valid=True, artifacts={}, vertex=vertex)
        )
    return found


def _failure(plan: FlowPlan, run_id: str, failures: list[StepEvent], status: str, log: str) -> Exception:
    from lfx.exceptions.component import ComponentBuildError

    if not failures:
        detail = f"\n\n{log}" if log else ""
        return RuntimeError(f"Dagster run {run_id} of flow {plan.flow!r} ended {status}{detail}")
    failed = failures[0]
    step = plan.step(failed.step)
    # In-process lfx's words for a failed component (Vertex.build), with the node and the run.
    message = (
        f"Error building Component {step.display_name}: \n\n{failed.cause}\n\n"
        f"(node {step.node_id}, step {step.name} of Dagster run {run_id})"
    )
    return ComponentBuildError(message, "")


class DagsterExecutor(Executor):
    """The `dagster` kind. Stateless: everything a run needs lives in its `execute()` call."""

    kind = "dagster"

    async def execute(self, unit: Unit) -> AsyncIterator[StepResult | RunComplete]:
        from lfx.graph.graph.constants import Finish
        from lfx.graph.schema import RunOutputs

        call = await asyncio.to_thread(prepare, unit)
        url = unit.runtime_options.get("dagster_url") or os.environ.get(URL_ENV)
        run: LocalRun | RemoteRun = RemoteRun(url, call) if url else LocalRun(call)
        status: str | None = None
        paths: dict[str, dict[str, str]] = {}
        failures: list[StepEvent] = []
        outputs: list[Any] = []
        event_manager = unit.runtime_options.get("event_manager")
        # The start goes on in its thread if this task is cancelled meanwhile: the finally waits for it.
        started = asyncio.ensure_future(asyncio.to_thread(run.start))
        try:
            run_id = await asyncio.shield(started)
            while status is None:
                events, status = await asyncio.to_thread(run.poll)
                for event in events:
                    if event.kind == "output" and event.path:
                        paths.setdefault(event.step, {})[event.output] = event.path
                    elif event.kind == "failure":
                        failures.append(event)
                    elif event.kind == "success":
                        step = call.plan.step(event.step)
                        built = await asyncio.to_thread(
                            vertex_results, unit.graph, call.plan, step, paths.get(event.step, {})
                        )
                        for result in built:
                            if any(end.node == result.vertex.id for end in call.plan.outputs):
                                outputs.append(result.result_dict)
                            if event_manager is not None:  # what Graph.async_start tells a UI per vertex
                                data = {
                                    "id": result.vertex.id,
                                    "valid": True,
                                    "data": result.result_dict.model_dump(),
                                }
                                event_manager.on_end_vertex(data={"build_data": data})
                            yield StepResult(payload=result)
                if status is None:
                    await asyncio.sleep(POLL_SECONDS)
            if status != "SUCCESS":
                raise _failure(call.plan, run_id, failures, status, await asyncio.to_thread(run.worker_log))
        finally:
            # The consumer closed the stream or the task was cancelled: the run must not go on.
            if status is None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(started)
                await asyncio.shield(asyncio.to_thread(run.cancel))
            await asyncio.to_thread(run.close)
        yield StepResult(payload=Finish())
        inputs = {"input_value": call.input_value} if call.input_value is not None else {}
        yield RunComplete(outputs=[RunOutputs(inputs=inputs, outputs=outputs)])

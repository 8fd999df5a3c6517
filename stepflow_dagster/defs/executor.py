"""The default executor: a process per step, each forked from a server that has loaded and warmed
what the step needs (Dagster, this package, lfx, and the components of the run's own flow)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing.forkserver
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.code_pointer import FileCodePointer, ModuleCodePointer, PackageCodePointer
from dagster._core.definitions.dependency import NodeHandle

from ..runtime.warm import WARM_ENV

CODE_ENV = "STEPFLOW_WARM_CODE"  # the run's code pointer and job, for `defs.preload`

# Imported once by the forkserver, in this order; the runtime's module then warms the run's components.
PRELOAD = [
    "dagster",
    # What a step's process imports to open the instance (alembic, SQLAlchemy: a second or more).
    "dagster._core.storage.legacy_storage",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.event_log.sqlite",
    "dagster._core.storage.runs.sqlite",
    "dagster._core.storage.schedules.sqlite",
    "dagster._core.storage.local_compute_log_manager",
    "stepflow_dagster.defs.ops",
    "stepflow_dagster.defs.preload",  # lfx, the run's components and code location (see there)
]


class WarmForkserverExecutor(dg.Executor):
    """Dagster's multiprocess executor with the forkserver start method, naming the run's components to
    the forkserver (through its environment, read when it starts) so that it builds each once: a step's
    process then starts with its component's modules imported and its class compiled."""

    def __init__(self, inner: dg.Executor):
        self._inner = inner

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        # Read by the forkserver when it starts, at this run's first step (one forkserver per run worker).
        job = plan_context.job.get_definition()
        os.environ[WARM_ENV] = json.dumps(warm_set(job, execution_plan))
        pointer = plan_context.reconstructable_job.repository.pointer
        code = None
        if isinstance(pointer, FileCodePointer):  # definitions.py, `dagster job execute -f`
            code = ["file", pointer.python_file, pointer.working_directory, pointer.fn_name]
        elif isinstance(pointer, ModuleCodePointer | PackageCodePointer):  # a `dg` project, `-m`
            attribute = pointer.fn_name if isinstance(pointer, ModuleCodePointer) else pointer.attribute
            code = ["module", pointer.module, pointer.working_directory, attribute]
        if code:
            os.environ[CODE_ENV] = json.dumps([*code, job.name])
        _forkserver_for(dict(os.environ))
        yield from self._inner.execute(plan_context, execution_plan)


_forkserver_env: dict[str, str] | None = None


def _forkserver_for(env: dict[str, str]) -> None:
    """A forkserver keeps the environment and the preloads it started with, for the life of the process
    that started it. A run worker runs one run; a process that runs several (a notebook, tests, a CLI
    that changed a variable) stops the old server when the environment changed, so that every run's
    steps see that run's environment and fork from that run's warm-up."""
    global _forkserver_env
    if _forkserver_env is not None and _forkserver_env != env:
        multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]  # the next step starts one
    _forkserver_env = env


def warm_set(job: dg.JobDefinition, execution_plan: Any) -> list[dict[str, Any]]:
    """The flow files and node ids of the steps this run executes (read from the ops' tags), with what
    the flow's deployment file says of their code: its code policies and what it trusts."""
    from .deployment import deployment_for_source
    from .translator import TAG_PREFIX

    by_source: dict[str, list[str]] = {}
    for key in execution_plan.step_keys_to_execute:
        node = job.graph.get_node(NodeHandle.from_string(key))  # "graph.op" inside an asset
        tags = node.definition.tags
        source, node_id = tags.get(f"{TAG_PREFIX}/source"), tags.get(f"{TAG_PREFIX}/node_id")
        if source and node_id:
            by_source.setdefault(source, []).append(node_id)
    targets = []
    for source, nodes in by_source.items():
        run = deployment_for_source(source, tags_flow(job)).run
        trust = dataclasses.asdict(run.trust.policy())  # the whole policy the ops check, field by field
        targets.append(
            {
                "source": source,
                "nodes": nodes,
                "code_policy": run.code_policy,
                "trust": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in trust.items()},
            }
        )
    return targets


def tags_flow(job: dg.JobDefinition) -> str:
    from .translator import TAG_PREFIX

    return job.tags.get(f"{TAG_PREFIX}/flow", job.name)


@dg.executor(
    name="multiprocess",
    config_schema=dg.multiprocess_executor.config_schema.config_type,
    requirements=dg.multiprocess_executor.get_requirements,
)
def warm_forkserver_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's `multiprocess` executor (same name and run config), forking every step's process from
    a warm forkserver. Run config may still choose another start method."""
    config = dict(init_context.executor_config)
    start_method: dict[str, Any] = config.setdefault(  # type: ignore[assignment]
        "start_method", {"forkserver": {"preload_modules": PRELOAD}}
    )
    create = dg.multiprocess_executor.executor_creation_fn
    assert create is not None
    inner = create(init_context._replace(executor_config=config))
    return WarmForkserverExecutor(inner) if "forkserver" in start_method else inner

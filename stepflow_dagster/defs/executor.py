"""The default executor: a process per step, each forked from a server that has loaded and warmed
what the step needs (Dagster, this package, lfx, and the components of the run's own flow)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg
from dagster._core.code_pointer import FileCodePointer, ModuleCodePointer, PackageCodePointer
from dagster._core.definitions.dependency import NodeHandle

from .forkserver import PRELOAD, use_forkserver_for, warm_environment, warm_target


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
        # Read by the forkserver when it starts, at this run's first step (one forkserver per run worker),
        # unless the caller started it already for this run (`forkserver.start_warm_forkserver`).
        job = plan_context.job.get_definition()
        targets = warm_set(job, execution_plan.step_keys_to_execute)
        use_forkserver_for(warm_environment(targets, code_pointer(plan_context.reconstructable_job, job)))
        yield from self._inner.execute(plan_context, execution_plan)


def code_pointer(reconstructable: Any, job: dg.JobDefinition) -> list[Any] | None:
    """The run's code location as `defs.preload` loads it, for the pointers Dagster's loader reuses."""
    pointer = reconstructable.repository.pointer
    if isinstance(pointer, FileCodePointer):  # definitions.py, `dagster job execute -f`
        return ["file", pointer.python_file, pointer.working_directory, pointer.fn_name, job.name]
    if isinstance(pointer, ModuleCodePointer | PackageCodePointer):  # a `dg` project, `-m`
        attribute = pointer.fn_name if isinstance(pointer, ModuleCodePointer) else pointer.attribute
        return ["module", pointer.module, pointer.working_directory, attribute, job.name]
    return None


def warm_set(job: dg.JobDefinition, step_keys: Iterable[str]) -> list[dict[str, Any]]:
    """The flow files and node ids of the steps this run executes (read from the ops' tags), with what
    the flow's deployment file says of their code."""
    from .deployment import deployment_for_source
    from .translator import TAG_PREFIX

    by_source: dict[str, list[str]] = {}
    for key in step_keys:
        node = job.graph.get_node(NodeHandle.from_string(key))  # "graph.op" inside an asset
        tags = node.definition.tags
        source, node_id = tags.get(f"{TAG_PREFIX}/source"), tags.get(f"{TAG_PREFIX}/node_id")
        if source and node_id:
            by_source.setdefault(source, []).append(node_id)
    return [
        warm_target(source, nodes, deployment_for_source(source, tags_flow(job)).run)
        for source, nodes in sorted(by_source.items())
    ]


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

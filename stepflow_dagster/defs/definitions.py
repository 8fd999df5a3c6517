"""`Definitions` for every flow in a folder: cheap to load (no lfx), the same in every process."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from ..flow import FlowError, load_flow
from ..plan import FlowPlan, plan_flow
from ..plan.names import unique_names
from .assets import chunks_check, document_sensor, documents_partitions, removal_job, sink_asset
from .deployment import load_deployment, use_overrides
from .executor import warm_forkserver_executor
from .forkserver import DEFAULT_EXECUTOR
from .io_manager import JsonIOManager, default_storage
from .jobs import flow_graph, flow_job
from .resources import LangflowRun
from .telemetry_sensors import run_span_sensors
from .translator import LangflowTranslator

EXECUTORS = ("multiprocess", "forkserver", "in_process", "k8s")


@dataclass(frozen=True)
class StepflowSettings:
    """What a code location builds: the root definitions.py reads it from the environment, the
    `LangflowFlows` component (stepflow_dagster/component.py) from its defs.yaml."""

    flows_dir: Path | None = Path("flows")  # every *.json in it; None: `extra_flows` only
    # A process per step, forked from a server that has imported lfx once (bench/run_bench.py: about
    # half the wall time of plain multiprocess).
    executor: str = DEFAULT_EXECUTOR
    max_concurrent: int | None = None
    storage: str | None = (
        None  # folder or URL for op outputs; default $STEPFLOW_STORAGE or $DAGSTER_HOME/storage
    )
    keep_credentials: bool = False
    extra_flows: tuple[Path, ...] = field(default=())
    # The node pools (pools.yaml) for the k8s executor; None: $STEPFLOW_NODE_POOLS, else the shipped one.
    placement: Path | None = None
    # Per flow file stem: deployment settings merged over that flow's <stem>.yaml (defs/deployment.py).
    deployments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The run-span sensors (telemetry), which a code location must have once: two instances of the
    # component in one project give them from the first only.
    span_sensors: bool = True

    @classmethod
    def from_env(cls, root: Path) -> StepflowSettings:
        return cls(
            flows_dir=Path(os.environ.get("STEPFLOW_FLOWS_DIR", root / "flows")),
            executor=os.environ.get("STEPFLOW_EXECUTOR", cls.executor),
            max_concurrent=int(os.environ["STEPFLOW_MAX_CONCURRENT"])
            if "STEPFLOW_MAX_CONCURRENT" in os.environ
            else None,
            storage=os.environ.get("STEPFLOW_STORAGE"),
        )


def executor_for(settings: StepflowSettings) -> dg.ExecutorDefinition:
    """The local executors. `k8s` is the code location's to pass in (definitions.py gives
    stepflow_dagster.k8s's executor and translator): defs does not depend on the k8s package."""
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "k8s":
        raise ValueError(
            "STEPFLOW_EXECUTOR=k8s: pass the executor and translator of stepflow_dagster.k8s to "
            "build_definitions (the code location definitions.py does); here only "
            f"{', '.join(e for e in EXECUTORS if e != 'k8s')} run"
        )
    if settings.executor not in ("forkserver", "multiprocess"):
        raise ValueError(
            f"STEPFLOW_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {settings.executor!r}"
        )
    config: dict[str, object] = {}
    if settings.max_concurrent:
        config["max_concurrent"] = settings.max_concurrent
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor.configured(config) if config else dg.multiprocess_executor
    return warm_forkserver_executor.configured(config) if config else warm_forkserver_executor


def load_plans(paths: list[Path], *, keep_credentials: bool = False) -> list[FlowPlan]:
    """Plans for flow files in sorted order; job names made unique (a clash takes the file's stem)."""
    plans = [plan_flow(load_flow(p), keep_credentials=keep_credentials) for p in sorted(paths)]
    seen: dict[str, int] = {}
    for plan in plans:
        seen[plan.name] = seen.get(plan.name, 0) + 1
    labels = [p.name if seen[p.name] == 1 else f"{p.name}_{Path(p.source).stem}" for p in plans]
    return [_renamed(p, n) for p, n in zip(plans, unique_names(labels), strict=True)]


def _renamed(plan: FlowPlan, name: str) -> FlowPlan:
    from dataclasses import replace

    return plan if plan.name == name else replace(plan, name=name)


def flow_files(settings: StepflowSettings) -> list[Path]:
    found = sorted(settings.flows_dir.glob("*.json")) if settings.flows_dir else []
    return found + list(settings.extra_flows)


def _overrides_by_file(settings: StepflowSettings, files: list[Path]) -> dict[Path, Mapping[str, Any]]:
    """`settings.deployments` by flow file; a stem that names no flow file is a mistake, not a no-op."""
    by_stem = {p.stem: p for p in files}
    unknown = sorted(set(settings.deployments) - set(by_stem))
    if unknown:
        raise ValueError(
            f"deployments: no flow file for {', '.join(map(repr, unknown))} "
            f"(keys are flow file stems: {', '.join(sorted(by_stem)) or 'no flows found'})"
        )
    return {by_stem[stem]: overrides for stem, overrides in settings.deployments.items()}


@functools.cache
def _shared(storage: str) -> tuple[dict[str, Any], tuple[dg.SensorDefinition, ...]]:
    """The resources (per storage) and run-span sensors, one instance each per process: Dagster merges
    the definitions of two `LangflowFlows` instances (two defs.yaml) by the identity of their resources,
    so instances with the same storage share these objects instead of clashing."""
    return {"langflow": LangflowRun(), "io_manager": JsonIOManager(base_path=storage)}, tuple(
        run_span_sensors()
    )


def build_definitions(
    settings: StepflowSettings,
    translator: LangflowTranslator | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Jobs, assets, checks and sensors of every flow; `executor` (default: `settings.executor`'s)
    runs every job that runs components."""
    translator = translator or LangflowTranslator()
    files = flow_files(settings)
    overrides = _overrides_by_file(settings, files)
    plans = load_plans(files, keep_credentials=settings.keep_credentials)
    executor = executor or executor_for(settings)
    # The default storage is read from the environment now, as JsonIOManager() would.
    resources, span_sensors = _shared(settings.storage or default_storage())
    jobs: list[Any] = []
    assets: list[dg.AssetsDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    for plan in plans:
        source = Path(plan.source)
        given = next((o for p, o in overrides.items() if p.resolve() == source.resolve()), None)
        use_overrides(source, given)
        deployment = load_deployment(source, plan.flow, given)
        graph = flow_graph(plan, translator, deployment)
        jobs.append(flow_job(plan, translator, executor, graph=graph))
        docs = deployment.documents
        if docs is None:
            continue
        if not plan.outputs:
            raise FlowError(plan.flow, "a deployment with documents needs a flow output (the sink)")
        partitions = documents_partitions(plan, translator)
        asset = sink_asset(plan, graph, docs, partitions, translator)
        asset_job = dg.define_asset_job(
            translator.get_asset_job_name(plan),
            # The check runs per document (a partition); a batch run targets a range of them.
            selection=dg.AssetSelection.assets(asset.key).without_checks(),
            partitions_def=partitions,
            executor_def=executor,
            # The flow's job tags (with k8s: the pools it uses, which the run queue limits).
            tags=dict(translator.get_job_tags(plan)),
        )
        check = chunks_check(plan, deployment, partitions, translator)
        check_job = dg.define_asset_job(
            translator.get_check_job_name(plan),
            selection=dg.AssetSelection.checks(check),
            executor_def=dg.in_process_executor,
        )
        removal = removal_job(plan, deployment, partitions.name or "", executor, translator)
        assets.append(asset)
        checks.append(check)
        jobs.extend([asset_job, check_job, removal])
        sensors.append(document_sensor(plan, asset_job, removal, docs, partitions.name or "", translator))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=[*(span_sensors if settings.span_sensors else ()), *sensors],
        resources=dict(resources),
    )

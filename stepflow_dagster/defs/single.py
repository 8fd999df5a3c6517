"""A job for one flow file, reconstructable in every step process (for `stepflow-dagster run`)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ..flow import load_flow
from ..plan import plan_flow
from .definitions import StepflowSettings, executor_for
from .deployment import load_deployment
from .io_manager import JsonIOManager
from .jobs import flow_graph, flow_job
from .resources import LangflowRun
from .translator import LangflowTranslator


def job_for_flow(
    flow_path: str, executor: str = StepflowSettings.executor, storage: str | None = None
) -> dg.JobDefinition:
    plan = plan_flow(load_flow(Path(flow_path)))
    io_manager = JsonIOManager(base_path=storage) if storage else JsonIOManager()
    translator = LangflowTranslator()
    # The deployment file beside the export (its tweaks, variables, secrets, code trust) as in flows/.
    graph = flow_graph(plan, translator, load_deployment(Path(flow_path), plan.flow))
    return flow_job(
        plan,
        translator,
        executor_for(StepflowSettings(executor=executor)),
        resources={"langflow": LangflowRun(), "io_manager": io_manager},
        graph=graph,
    )


def reconstructable_job(flow_path: str, executor: str, storage: str | None) -> dg.ReconstructableJob:
    return dg.build_reconstructable_job(
        __name__,
        "job_for_flow",
        reconstructable_args=(str(Path(flow_path).resolve()), executor, storage),  # type: ignore[arg-type]
    )

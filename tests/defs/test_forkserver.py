"""The environment a forkserver starts with: `stepflow-dagster run` computes it from the flow file before
it imports Dagster, the run's executor from the job; when they differ, the early server is thrown away."""

from __future__ import annotations

import json

import pytest

from stepflow_dagster.defs.deployment import load_deployment
from stepflow_dagster.defs.executor import warm_set
from stepflow_dagster.defs.forkserver import warm_environment, warm_targets_for_flow
from stepflow_dagster.defs.single import job_for_flow
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow
from stepflow_dagster.runtime.warm import WARM_ENV
from tests.conftest import ALL_SHARED, PROJECT_FLOWS, shared_flow


@pytest.mark.parametrize("name", [*ALL_SHARED, "openrag_ingestion.json"])
def test_the_cli_and_the_executor_name_the_same_warm_up(name: str) -> None:
    path = PROJECT_FLOWS / name if name == "openrag_ingestion.json" else shared_flow(name)
    plan = plan_flow(load_flow(path))
    early = warm_environment(warm_targets_for_flow(path, plan, load_deployment(path, plan.flow)))
    job = job_for_flow(str(path.resolve()))
    keys = [node.name for node in job.nodes]
    assert early == warm_environment(warm_set(job, reversed(keys)))  # in any order of the steps
    (target,) = json.loads(early[WARM_ENV] or "[]")
    assert target["source"] == str(path.resolve()) and len(target["nodes"]) == len(plan.steps)

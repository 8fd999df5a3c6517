"""`dagster job execute -f definitions.py -j JOB -c RUN_CONFIG` for every job in flows/ (the README's way)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from stepflow_dagster.defs.ops import preview
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow
from stepflow_dagster.runtime import decode
from tests.conftest import ROOT
from tests.frontends.conftest import dagster_env, make_home

pytestmark = pytest.mark.slow
RUN_CONFIGS = Path(__file__).parent / "run_configs"
DAGSTER = str(Path(sys.executable).parent / "dagster")
# Jobs whose flows need the real services (OpenSearch, Docling Serve, embeddings): they run through Dagster
# in the tests that start those services.
SERVICE_BACKED = {"opensearch_ingestion_flow": "tests/services/test_ingestion.py"}
FLOWS = [
    p for p in sorted((ROOT / "flows").glob("*.json")) if plan_flow(load_flow(p)).name not in SERVICE_BACKED
]


def expected(job: str, text: str) -> None:
    if job == "hello_world":
        assert text == "Hello from a run config file"
    elif job == "document_chunks":
        for name in ("orchestration.md", "langflow.txt", "retrieval.html"):
            assert f"flows/samples/docs/{name}]" in text
    else:  # a new flow in flows/: it needs a run config here and an expectation
        raise AssertionError(f"no expectation for job {job}: add one, with {RUN_CONFIGS}/{job}.yaml")


def test_every_flow_has_a_run_config() -> None:
    jobs = {plan_flow(load_flow(p)).name for p in sorted((ROOT / "flows").glob("*.json"))}
    assert jobs - set(SERVICE_BACKED) == {p.stem for p in RUN_CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("flow", FLOWS, ids=[p.stem for p in FLOWS])
def test_dagster_job_execute_with_a_run_config_file(flow: Path, tmp_path: Path) -> None:
    plan = plan_flow(load_flow(flow))
    job = plan.name
    home = make_home(tmp_path / "home")
    res = subprocess.run(
        [
            DAGSTER,
            "job",
            "execute",
            "-f",
            "definitions.py",
            "-j",
            job,
            "-c",
            str(RUN_CONFIGS / f"{job}.yaml"),
        ],
        cwd=ROOT,
        env=dagster_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-5000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        run_id = runs[0].run_id
        starts = [
            r
            for r in instance.all_logs(run_id)
            if r.dagster_event and r.dagster_event.event_type_value == "STEP_START"
        ]
        assert len(starts) == len(plan.steps)  # every component ran as its own step
    end = plan.outputs[0]
    stored = json.loads((home / "storage" / run_id / end.step / f"{end.field}.json").read_text())
    expected(job, preview(decode(stored), limit=10**9))

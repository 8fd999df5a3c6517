"""A step as a Kubernetes pod vs the same step in-process.

Runs the 5-step test flow (tests/k8s/flows.py: cpu -> docling -> gpu -> cpu -> cpu) once on the real
control plane (services/kube; K8sRunLauncher + stepflow_k8s_executor, one Job per step) and once with
`execute_in_process`, and prints per-step times from the event logs as a Markdown table:

- pod: from STEP_WORKER_STARTING (the run worker creates the Job) to STEP_SUCCESS;
- in pod: STEP_START to STEP_SUCCESS inside the pod (the component's own work);
- in-process: STEP_START to STEP_SUCCESS of the same step in one process.

    uv run python bench/k8s_bench.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from services.kube.cluster import KubeCluster  # noqa: E402
from stepflow_dagster.defs.single import job_for_flow  # noqa: E402
from tests.k8s.flows import write_pools_flow  # noqa: E402
from tests.k8s.harness import Deployment  # noqa: E402


def step_times(events: list[dg.EventLogEntry]) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, float]] = {}
    for e in events:
        if e.dagster_event and e.step_key:
            kind = e.dagster_event.event_type_value
            times.setdefault(e.step_key, {}).setdefault(kind, e.timestamp)
    return times


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="k8s-bench-"))
    flow = write_pools_flow(work / "local")
    os.environ["LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS"] = "false"
    t0 = time.monotonic()
    with dg.instance_for_test() as instance:
        job = job_for_flow(str(flow), "in_process", str(work / "local-io"))
        result = job.execute_in_process(
            run_config={"resources": {"langflow": {"config": {"input_value": "bench"}}}}, instance=instance
        )
        assert result.success
        local = step_times(list(instance.all_logs(result.run_id)))
    local_wall = time.monotonic() - t0

    with KubeCluster() as kc:
        dep = Deployment(kc, work / "k8s").setup()
        t0 = time.monotonic()
        run_id = dep.launch("pools", "bench", tags={"stepflow/colocate": "node:required"})
        run = dep.wait(run_id, timeout=600)
        k8s_wall = time.monotonic() - t0
        assert run.status == dg.DagsterRunStatus.SUCCESS, dep.describe(run_id)
        pods = step_times(dep.events(run_id))

    print(
        f"cores: {os.cpu_count()}; run wall time: k8s {k8s_wall:.1f} s (launch to end), in-process {local_wall:.1f} s\n"
    )
    print("| step | pool | pod: Job created -> success (s) | in pod: start -> success (s) | in-process (s) |")
    print("|---|---|---|---|---|")
    pools = {"DoclingProbe_dcl01": "docling", "EmbeddingProbe_emb01": "gpu"}
    for step, t in pods.items():
        pod_total = t["STEP_SUCCESS"] - t["STEP_WORKER_STARTING"]
        in_pod = t["STEP_SUCCESS"] - t["STEP_START"]
        here = local[step]["STEP_SUCCESS"] - local[step]["STEP_START"]
        print(f"| {step} | {pools.get(step, 'cpu')} | {pod_total:.1f} | {in_pod:.2f} | {here:.2f} |")


if __name__ == "__main__":
    main()

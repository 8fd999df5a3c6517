"""A step as a Kubernetes pod vs the same step in-process.

Runs the 5-step test flow (tests/k8s/flows.py: cpu -> docling -> gpu -> cpu -> cpu) once on the real
control plane (services/kube; K8sRunLauncher + stepflow_k8s_executor, one Job per step) and once with
`execute_in_process`, and prints per-step times from the event logs as a Markdown table:

- pod: from STEP_WORKER_STARTING (the run worker creates the Job) to STEP_SUCCESS;
- in pod: STEP_START to STEP_SUCCESS inside the pod (the component's own work);
- in-process: STEP_START to STEP_SUCCESS of the same step in one process.

    uv run python bench/k8s_bench.py

With --openrag N: the OpenRAG ingestion of N small Markdown documents on the control plane, deployed as
the Helm values deploy it (tests/k8s/deploy.py: code server and daemon pods, PostgreSQL, K8sRunLauncher,
a pod per component per batch), from the drop to the last document in OpenSearch; documents per minute
and pods created, against the same N through `stepflow-dagster ingest` in one process. Starts the local
services itself (services/stack.py, free ports).

    uv run python bench/k8s_bench.py --openrag 50 [--batch 25]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from services.kube.cluster import KubeCluster, default_nodes  # noqa: E402
from stepflow_dagster.defs.single import job_for_flow  # noqa: E402
from tests.k8s.flows import write_pools_flow  # noqa: E402
from tests.k8s.harness import NAMESPACE, Deployment  # noqa: E402


def step_times(events: list[dg.EventLogEntry]) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, float]] = {}
    for e in events:
        if e.dagster_event and e.step_key:
            kind = e.dagster_event.event_type_value
            times.setdefault(e.step_key, {}).setdefault(kind, e.timestamp)
    return times


def baseline_pod(kc: KubeCluster, namespace: str, name: str, code: str, out: Path) -> float:
    """Seconds from creating a Job whose pod runs `python -c CODE` to that process writing its clock:
    what the same kubelet needs for a pod, without Dagster's step around it."""
    from kubernetes import client as k8s

    stamp = out / f"{name}.time"
    script = f"{code}\nimport time; open({str(stamp)!r}, 'w').write(repr(time.time()))"
    pod = k8s.V1PodSpec(
        restart_policy="Never",
        node_selector={"stepflow.io/pool": "cpu"},
        containers=[k8s.V1Container(name="main", image="python", command=["python", "-c", script])],
    )
    job = k8s.V1Job(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1JobSpec(backoff_limit=0, template=k8s.V1PodTemplateSpec(spec=pod)),
    )
    t0 = time.time()
    kc.batch_v1().create_namespaced_job(namespace, job)
    deadline = time.monotonic() + 300
    while not stamp.exists() or not stamp.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"baseline pod {name} did not run")
        time.sleep(0.05)
    return float(stamp.read_text()) - t0


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
        # The same kubelet, same node pool, no Dagster: best of 3 each.
        trivial = min(baseline_pod(kc, NAMESPACE, f"trivial-{i}", "pass", work) for i in range(3))
        imports = min(
            baseline_pod(kc, NAMESPACE, f"imports-{i}", "import dagster, lfx.graph.graph.base", work)
            for i in range(3)
        )

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
    print(
        f"\nbaseline pods (Job created -> process done, best of 3): trivial Python {trivial:.1f} s; "
        f"importing dagster and lfx's graph {imports:.1f} s"
    )


def openrag(n: int, batch: int) -> None:
    sys.path.insert(0, str(ROOT / "services"))
    import stack  # type: ignore[import-not-found]
    from opensearchpy import OpenSearch

    from bench.ingest_bench import make_docs
    from tests.k8s.deploy import (
        NAMESPACE,
        STAND_IN_SECRETS,
        ChartDeployment,
        Postgres,
        flows_copy,
        local_overrides,
    )

    work = Path(tempfile.mkdtemp(prefix="k8s-openrag-bench-"))
    os.environ["TIKTOKEN_CACHE_DIR"] = str(stack.tiktoken_cache_dir(work / "tiktoken"))
    services = stack.start_all(
        stack.NAMES,
        opensearch={"port": 0, "home": work / "opensearch", "log_path": work / "opensearch.log"},
        docling={"port": 0, "workdir": work / "docling", "log_path": work / "docling.log"},
        embeddings={"port": 0, "log_path": work / "embeddings.log"},
    )
    urls = (
        services["docling"].url,
        services["embeddings"].extra["base_url"],
        services["opensearch"].url,
    )
    client = OpenSearch(hosts=[urls[2]])
    key = dg.AssetKey(["opensearch", "documents"])
    rows = []
    try:
        pg = Postgres().start()
        try:
            # Two GPUs on the GPU node, as in the end-to-end test: two runs' embeddings pods at once.
            nodes = default_nodes()
            gpu = next(n for n in nodes if n.name == "gpu-b")
            gpu.capacity = {**gpu.capacity, "nvidia.com/gpu": "2"}
            with KubeCluster(nodes=nodes) as kc:
                flows = flows_copy(work / "flows", minimum_interval_seconds=2, max_documents_per_run=batch)
                env = local_overrides(flows, *urls, "bench_k8s")
                dep = ChartDeployment(kc, work / "k8s", pg, env, STAND_IN_SECRETS).setup()
                make_docs(dep.in_shared(dep.env()["STEPFLOW_DROP_DIR"]), n, "k8s")
                t0 = time.perf_counter()
                dep.start()
                with dg.DagsterInstance.from_config(str(dep.test_instance_home())) as instance:
                    while len(instance.get_materialized_partitions(key)) < n or not all(
                        r.is_finished for r in instance.get_runs()
                    ):
                        failed = [r for r in instance.get_runs() if r.status.value == "FAILURE"]
                        if failed:
                            logs = instance.all_logs(
                                failed[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE
                            )
                            errors = [f"{e.step_key}: {e.message}" for e in logs]
                            raise SystemExit(f"run {failed[0].run_id} failed: {errors}")
                        time.sleep(1)
                    seconds = time.perf_counter() - t0
                    runs = len(instance.get_runs())
                pods = kc.core_v1().list_namespaced_pod(NAMESPACE).items
                workers = [p for p in pods if "dagster/run-id" in (p.metadata.labels or {})]
                client.indices.refresh(index="bench_k8s")
                assert client.count(index="bench_k8s")["count"] == n
                rows.append(
                    ("Kubernetes: drop -> sensor (daemon pod) -> batch runs, a pod per step", seconds)
                )
                print(f"  k8s: {runs} runs, {len(workers)} run and step pods, {seconds:.0f} s", flush=True)
        finally:
            pg.stop()

        folder = work / "ingest"
        make_docs(folder, n, "ingest")
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        env |= {"DOCLING_URL": urls[0], "OPENAI_BASE_URL": urls[1], "OPENSEARCH_URL": urls[2]}
        env |= {"OPENSEARCH_INDEX": "bench_ingest", "OPENAI_API_KEY": STAND_IN_SECRETS["OPENAI_API_KEY"]}
        t0 = time.perf_counter()
        args = [sys.executable, "-m", "stepflow_dagster.cli", "ingest", str(folder), "--batch", str(batch)]
        res = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
        if res.returncode:
            raise SystemExit(f"ingest failed: {res.stdout[-1500:]}{res.stderr[-1500:]}")
        rows.append(
            (f"`stepflow-dagster ingest FOLDER` (one process, {batch} per run)", time.perf_counter() - t0)
        )
    finally:
        for svc in services.values():
            svc.stop()
    print(f"\ncores: {os.cpu_count()}, load average at the end: {os.getloadavg()[0]:.1f}\n")
    print("| way | documents | wall (s) | documents per minute | pods created |\n|---|---:|---:|---:|---:|")
    for i, (label, seconds) in enumerate(rows):
        pods_created = str(len(workers)) if i == 0 else "-"
        print(f"| {label} | {n} | {seconds:.0f} | {n / seconds * 60:.1f} | {pods_created} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--openrag", type=int, metavar="N", help="OpenRAG ingestion of N documents")
    parser.add_argument("--batch", type=int, default=25, help="documents per run (--openrag)")
    cli = parser.parse_args()
    if cli.openrag:
        openrag(cli.openrag, cli.batch)
    else:
        main()

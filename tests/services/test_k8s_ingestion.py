"""The flagship on Kubernetes, end to end, on the real control plane of services/kube: documents dropped
into the watched folder (on the shared volume) are picked up by the sensor of the code server pod,
evaluated by the daemon pod; the daemon's queue launches batch runs through the `K8sRunLauncher` (a
run-worker pod); our executor runs each component of the OpenRAG export in its own pod on its pool; the
instance is PostgreSQL. Everything as helm-values/dagster-values.yaml deploys it (tests/k8s/deploy.py
says what differs here and why). Then the GPU pool loses its node (cordoned): the next batch fails in
bounded time, naming the step, node id, pool and the scheduler's reason.

Here rather than in tests/k8s/ for the session's services (tests/services/conftest.py): one OpenSearch,
Docling Serve and embeddings server for the whole test session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from opensearchpy import OpenSearch

from services.kube.cluster import KubeCluster, binaries_missing, default_nodes
from tests.k8s.deploy import (
    NAMESPACE,
    STAND_IN_SECRETS,
    ChartDeployment,
    Postgres,
    flows_copy,
    local_overrides,
    postgres_missing,
)

from .test_sensor_daemon import chunks_by_document, run_documents, texts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(binaries_missing()), reason="kube binaries not built: run services/kube/build.sh"
    ),
    pytest.mark.skipif(bool(postgres_missing()), reason=str(postgres_missing())),
]

JOB = "opensearch_ingestion_flow_documents"
KEY = dg.AssetKey(["opensearch", "documents"])
PARTITIONS = "opensearch_ingestion_flow_documents"
POOL = "stepflow.io/pool"
STEPS = 13  # components of the OpenRAG export, one step (and pod) each
OFF_CPU = {"DoclingRemote_Dp3PX": "docling", "EmbeddingModel_eZ6bT": "gpu"}
GOOD = {
    "a/apples.md": "apples",
    "a/bananas.md": "bananas",
    "b/cherries.md": "cherries",
    "b/dates.md": "dates",
}
BAD = "b/broken.pdf"  # a PDF header, then nothing Docling can read
PER_RUN = 3  # documents per batch run: 5 documents -> 2 runs
UNSCHEDULABLE_TIMEOUT = 10
INDEX = "k8s_e2e"


def write(path: Path, data: bytes) -> None:
    """Written beside, then renamed: the sensor never lists half a document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.rename(path)


def wait_for(predicate: Any, timeout: float, what: str, describe: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{describe()}")


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, opensearch_url: str, docling_url: str, embeddings_base_url: str
) -> Iterator[ChartDeployment]:
    base = tmp_path_factory.mktemp("k8s-openrag")
    # Short ticks and small batches; one attempt per document (no retry runs to wait for).
    flows = flows_copy(
        base / "flows", minimum_interval_seconds=2, max_documents_per_run=PER_RUN, max_attempts=1
    )
    overrides = {
        **local_overrides(flows, docling_url, embeddings_base_url, opensearch_url, INDEX),
        # Run-scoped co-location required (the values prefer it); a short Unschedulable timeout (the
        # values give 600 s).
        "STEPFLOW_COLOCATE": "node:required",
        "STEPFLOW_UNSCHEDULABLE_TIMEOUT": str(UNSCHEDULABLE_TIMEOUT),
    }
    secrets = STAND_IN_SECRETS
    pg = Postgres().start()
    try:
        # The GPU node has two GPUs: the values let two runs that use the GPU pool run at once
        # (tagConcurrencyLimits), and each run's embeddings pod asks for one.
        nodes = default_nodes()
        gpu = next(n for n in nodes if n.name == "gpu-b")
        gpu.capacity = {**gpu.capacity, "nvidia.com/gpu": "2"}
        with KubeCluster(nodes=nodes) as kc:
            yield ChartDeployment(kc, base, pg, overrides, secrets).setup()
    finally:
        pg.stop()


def pods(dep: ChartDeployment, selector: str) -> list[Any]:
    return list(dep.kc.core_v1().list_namespaced_pod(NAMESPACE, label_selector=selector).items)


def describe(dep: ChartDeployment, instance: dg.DagsterInstance) -> str:
    lines = [
        f"run {r.run_id[:8]} {r.status.value} {r.tags.get('stepflow/documents')}" for r in instance.get_runs()
    ]
    for r in instance.get_runs():
        for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            lines.append(f"  {e.step_key}: {e.dagster_event.step_failure_data.error.message[:300]}")  # type: ignore[union-attr]
    for p in pods(dep, ""):
        lines.append(f"pod {p.metadata.name} {p.status.phase} on {p.spec.node_name}")
    lines.append("daemon: " + dep.logs("dagster-daemon", 30))
    lines.append("code server: " + dep.logs("stepflow-code-server", 30))
    return "\n".join(lines)


def test_dropped_documents_become_batch_runs_of_pods_on_their_pools(deployment: ChartDeployment) -> None:
    dep = deployment
    drop = dep.in_shared(dep.env()["STEPFLOW_DROP_DIR"])
    for rel, word in GOOD.items():
        write(drop / rel, f"# Notes\n\nThis note is about {word}. It has one short paragraph.\n".encode())
    write(drop / BAD, b"%PDF-1.7\n" + bytes(range(256)) * 8)
    t0 = time.monotonic()
    dep.start()
    client = OpenSearch(hosts=[dep.env()["OPENSEARCH_URL"]])
    nodes = {n.metadata.name: n.metadata.labels for n in dep.kc.core_v1().list_node().items}
    with dg.DagsterInstance.from_config(str(dep.test_instance_home())) as instance:

        def runs() -> list[dg.DagsterRun]:
            return list(instance.get_runs(dg.RunsFilter(job_name=JOB)))

        wait_for(
            lambda: len(runs()) >= 2 and all(r.is_finished for r in runs()),
            420,
            "the batch runs of the drop",
            lambda: describe(dep, instance),
        )
        batches = runs()
        print(f"[k8s-e2e] drop ingested in {time.monotonic() - t0:.0f} s")
        assert len(batches) == 2, describe(dep, instance)
        assert sorted(d for r in batches for d in run_documents(instance, r)) == sorted([*GOOD, BAD])

        # Every good document's chunks in OpenSearch once; the bad one failed, its batch went on.
        assert chunks_by_document(client, INDEX) == dict.fromkeys(GOOD, 1), describe(dep, instance)
        for rel, word in GOOD.items():
            assert word in texts(client, INDEX, rel)[0]
        status = instance.get_status_by_partition(
            KEY, [*GOOD, BAD], dg.DynamicPartitionsDefinition(name=PARTITIONS)
        )
        assert status is not None and status[BAD].value == "FAILED"
        assert all(status[d].value == "MATERIALIZED" for d in GOOD)
        bad_run = next(r for r in batches if BAD in run_documents(instance, r))
        assert len(run_documents(instance, bad_run)) > 1  # the bad document shared its batch
        failures = [
            e.dagster_event.step_failure_data.error.message  # type: ignore[union-attr]
            for e in instance.all_logs(bad_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
        assert any(BAD in m for m in failures), failures

        for run in batches:
            # A run-worker pod, then one pod per component, counted from the API server.
            workers = pods(dep, f"dagster/run-id={run.run_id},app.kubernetes.io/component=run_worker")
            steps = pods(dep, f"dagster/run-id={run.run_id},app.kubernetes.io/component=step_worker")
            assert len(workers) == 1 and nodes[workers[0].spec.node_name][POOL] == "cpu"
            assert len(steps) == STEPS, sorted(p.metadata.labels["dagster/op"] for p in steps)
            by_pool: dict[str, set[str]] = {}
            for pod in steps:
                op = pod.metadata.labels["dagster/op"].rsplit(".", 1)[-1]  # <asset graph>.<step>
                pool = pod.metadata.labels[POOL]
                assert pool == OFF_CPU.get(op, "cpu"), op
                assert nodes[pod.spec.node_name][POOL] == pool, f"{op} ran on {pod.spec.node_name}"
                by_pool.setdefault(pool, set()).add(pod.spec.node_name)
            # Co-located as asked (node:required): one node per pool for the run.
            assert all(len(n) == 1 for n in by_pool.values()), by_pool

        # The GPU pool loses its only node: the next document's run fails in bounded time.
        dep.kc.core_v1().patch_node("gpu-b", {"spec": {"unschedulable": True}})
        write(drop / "c/elderberries.md", b"# Notes\n\nThis note is about elderberries.\n")
        wait_for(lambda: len(runs()) == 3, 120, "a run for the new document", lambda: describe(dep, instance))
        stuck = next(r for r in runs() if r.run_id not in {b.run_id for b in batches})
        wait_for(
            lambda: instance.get_run_by_id(stuck.run_id).is_finished,  # type: ignore[union-attr]
            180,
            "the run with no GPU node to fail",
            lambda: describe(dep, instance),
        )
        print(f"[k8s-e2e] run with no GPU node finished {time.monotonic() - t0:.0f} s after the start")
        run = instance.get_run_by_id(stuck.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
        stats = instance.get_run_stats(stuck.run_id)
        assert stats.end_time and stats.start_time and stats.end_time - stats.start_time < 150
        messages = [
            e.dagster_event.step_failure_data.error.message  # type: ignore[union-attr]
            for e in instance.all_logs(stuck.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
        message = next((m for m in messages if "could not be scheduled" in m), "")
        for part in ("EmbeddingModel_eZ6bT", "node EmbeddingModel-eZ6bT", "pool gpu", "Unschedulable"):
            assert part in message, messages
        assert "node(s) were unschedulable" in message  # the scheduler's own reason

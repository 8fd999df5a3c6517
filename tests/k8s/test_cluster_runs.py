"""Runs on the real control plane (services/kube): the real K8sRunLauncher starts the run worker pod,
our executor one Job per component; placement, co-location and the Unschedulable timeout are
asserted from the API server. Skipped when the kube binaries are not built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest

from services.kube.cluster import KubeCluster, binaries_missing
from stepflow_dagster.defs.ops import preview
from stepflow_dagster.runtime import decode

from .flows import EXPECTED
from .harness import Deployment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(binaries_missing()), reason="kube binaries not built: run services/kube/build.sh"
    ),
]

POOL_OF_STEP = {
    "TextInput_in001": "cpu",
    "DoclingProbe_dcl01": "docling",
    "EmbeddingProbe_emb01": "gpu",
    "Tag_tag01": "cpu",
    "ChatOutput_out01": "cpu",
}
POOL = "stepflow.io/pool"
ZONE = "topology.kubernetes.io/zone"


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with KubeCluster() as kc:
        yield Deployment(kc, tmp_path_factory.mktemp("k8s")).setup()


def output(dep: Deployment, run_id: str) -> str:
    stored = json.loads((dep.storage / run_id / "ChatOutput_out01" / "message.json").read_text())
    return preview(decode(stored), limit=10**6)


def placements(dep: Deployment, run_id: str) -> dict[str, tuple[str, str]]:
    """step key -> (pod's pool label, node) from the API server."""
    return {
        p.metadata.labels["dagster/op"]: (p.metadata.labels.get(POOL, ""), p.spec.node_name)
        for p in dep.step_pods(run_id)
    }


def test_each_component_is_a_job_on_its_pool(dep: Deployment) -> None:
    run_id = dep.launch("pools", "one pod each", tags={"stepflow/colocate": "none"})
    run = dep.wait(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS, dep.describe(run_id)
    assert len(dep.step_jobs(run_id)) == len(POOL_OF_STEP)
    nodes = dep.node_labels()
    placed = placements(dep, run_id)
    assert {k: v[0] for k, v in placed.items()} == POOL_OF_STEP
    for step, (pool, node) in placed.items():
        assert nodes[node][POOL] == pool, f"{step} ran on {node}"
    assert output(dep, run_id) == EXPECTED.format(text="one pod each")


def test_colocation_per_run_and_pool(dep: Deployment) -> None:
    """Three runs at once: two `node:required`, one `zone:required`; each is co-located on its own."""
    wanted = {"node:required": 2, "zone:required": 1}
    scopes = [s for s, n in wanted.items() for _ in range(n)]
    with ThreadPoolExecutor(len(scopes)) as pool:
        run_ids = list(
            pool.map(
                lambda s: dep.launch(
                    "pools", s, tags={"stepflow/colocate": s}, execution={"unschedulable_timeout": 240}
                ),
                scopes,
            )
        )
    nodes = dep.node_labels()
    for scope, run_id in zip(scopes, run_ids, strict=True):
        run = dep.wait(run_id, timeout=600)
        assert run.status == dg.DagsterRunStatus.SUCCESS, dep.describe(run_id)
        assert output(dep, run_id) == EXPECTED.format(text=scope)
        cpu_nodes = {node for pool_, node in placements(dep, run_id).values() if pool_ == "cpu"}
        if scope.startswith("node"):
            assert len(cpu_nodes) == 1, cpu_nodes
        else:
            assert len({nodes[n][ZONE] for n in cpu_nodes}) == 1, cpu_nodes
        # The API server scoped each pod's affinity term to its own run and pool (matchLabelKeys).
        for pod in dep.step_pods(run_id):
            term = pod.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution[0]
            exprs = {e.key: e.values for e in term.label_selector.match_expressions}
            assert exprs == {"dagster/run-id": [run_id], POOL: [pod.metadata.labels[POOL]]}


def test_unschedulable_step_fails_the_run_quickly(dep: Deployment) -> None:
    t0 = time.monotonic()
    run_id = dep.launch("stuck", "nowhere", execution={"unschedulable_timeout": 5})
    run = dep.wait(run_id, timeout=180)
    elapsed = time.monotonic() - t0
    assert run.status == dg.DagsterRunStatus.FAILURE
    failures = [
        e.dagster_event.event_specific_data.error.message  # type: ignore[union-attr]
        for e in dep.events(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
    ]
    assert len(failures) == 1, dep.describe(run_id)
    message = failures[0]
    for part in ("DoclingProbe_dcl01", "node DoclingProbe-dcl01", "pool nowhere", "Unschedulable"):
        assert part in message
    assert "didn't match Pod's node affinity/selector" in message  # the scheduler's own reason
    assert elapsed < 90, f"took {elapsed:.0f}s"
    # The stuck step's Job is gone, so its pod cannot start after the run has failed.
    assert [j.metadata.labels["dagster/op"] for j in dep.step_jobs(run_id)] == ["TextInput_in001"]

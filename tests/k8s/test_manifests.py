"""Our Kubernetes manifests and the pod specs our placement produces, validated by a real API server
(`kubectl apply --dry-run=server`, and server-side dry-run creates): its schema and field validation
(strict: unknown fields fail) are the real ones of Kubernetes 1.37.

Not validated here: helm-values/dagster-values.yaml against the Dagster chart (the chart and its
values.schema.json are not available offline); it is only checked to parse and name our pieces.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from kubernetes.client import ApiClient

from services.kube.cluster import KubeCluster, binaries_missing
from stepflow_dagster.k8s import load_placement
from stepflow_dagster.k8s.colocate import Colocation, affinity

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "helm-values" / "manifests").glob("*.yaml"))

pytestmark = pytest.mark.skipif(
    bool(binaries_missing()) or shutil.which("kubectl") is None,
    reason="needs the kube binaries (services/kube/build.sh) and kubectl",
)


@pytest.fixture(scope="module")
def kc() -> Iterator[KubeCluster]:
    with KubeCluster() as cluster:
        cluster.create_namespace("stepflow")
        yield cluster


def kubectl(kc: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", kc.kubeconfig, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_passes_server_validation(kc: KubeCluster, manifest: Path) -> None:
    res = kubectl(kc, "apply", "--dry-run=server", "--validate=strict", "-f", str(manifest))
    assert res.returncode == 0, res.stderr
    assert "(server dry run)" in res.stdout


def test_a_typo_is_refused(kc: KubeCluster, tmp_path: Path) -> None:
    """The check is real: a misspelt field fails strict server-side validation."""
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load((ROOT / "helm-values" / "manifests" / "storage.yaml").read_text())
    doc["spec"]["accesModes"] = doc["spec"].pop("accessModes")
    bad.write_text(yaml.safe_dump(doc))
    res = kubectl(kc, "apply", "--dry-run=server", "--validate=strict", "-f", str(bad))
    assert res.returncode != 0 and "accesModes" in res.stderr


@pytest.mark.parametrize("colocate", ["none", "node:required", "zone:preferred"])
def test_step_jobs_of_every_pool_pass_server_validation(kc: KubeCluster, colocate: str) -> None:
    """A step Job as dagster-k8s builds it from our op tag (+ co-location), per shipped pool."""
    batch = kc.batch_v1()
    for pool in load_placement().pools.values():
        config: dict[str, Any] = pool.k8s_config()
        terms = affinity(Colocation.parse(colocate), ["cpu-a"])
        if terms:
            config["pod_spec_config"]["affinity"] = terms
        job = construct_dagster_k8s_job(
            DagsterK8sJobConfig(job_image="stepflow-dagster:dev", dagster_home="/opt/dagster/dagster_home"),
            args=["dagster", "api", "execute_step"],
            job_name=f"dagster-step-{pool.name}",
            user_defined_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config),
            labels={"dagster/run-id": "0f0e0d0c-0000-4000-8000-000000000000"},
            component="step_worker",
        )
        body = ApiClient().sanitize_for_serialization(job)
        batch.create_namespaced_job("stepflow", body, dry_run="All", field_validation="Strict")


def test_helm_values_name_our_pieces() -> None:
    values = yaml.safe_load((ROOT / "helm-values" / "dagster-values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
        "tagConcurrencyLimits"
    ]
    assert {lim["key"] for lim in limits} == {f"stepflow/uses-{p}" for p in load_placement().pools}
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["STEPFLOW_EXECUTOR"] == "k8s"
    assert deployment["envSecrets"] == [{"name": "stepflow-secrets"}]

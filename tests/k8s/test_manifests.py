"""Our Kubernetes manifests and the pod specs our placement produces, validated by a real API server
(`kubectl apply --dry-run=server`, and server-side dry-run creates): its schema and field validation
(strict: unknown fields fail) are the real ones of Kubernetes 1.37.

The values file is not rendered by the Dagster chart (the chart and its values.schema.json are not
available offline); the objects tests/k8s/deploy.py renders from it as the chart would (the code server
and daemon pods, the instance ConfigMap, the run worker and step Jobs as dagster-k8s builds them) are
validated instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from kubernetes.client import ApiClient

from services.kube.cluster import KubeCluster, binaries_missing
from stepflow_dagster.flow import load_flow
from stepflow_dagster.k8s import K8sTranslator, load_placement
from stepflow_dagster.k8s.colocate import Colocation, affinity
from stepflow_dagster.plan import plan_flow

from .deploy import ChartDeployment, Postgres
from .values import secret_keys

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


def values_deployment(kc: KubeCluster, tmp_path: Path) -> ChartDeployment:
    """The chart's objects rendered from helm-values as they are (the claim, not a host folder)."""
    secrets = dict.fromkeys(secret_keys()["stepflow-secrets"], "replace-me")
    pg = Postgres(dir=tmp_path / "pg")  # not started: only its connection settings are rendered
    return ChartDeployment(kc, tmp_path, pg, {}, secrets, shared_as_host_path=False)


def test_values_rendered_objects_pass_server_validation(kc: KubeCluster, tmp_path: Path) -> None:
    """What tests/k8s/deploy.py renders from the values (the user-code pod with its env, Secrets and the
    PVC; the daemon pod; the instance and workspace ConfigMaps; Secrets) under strict validation."""
    dep = values_deployment(kc, tmp_path)
    objects = dep.objects()
    assert objects[0][0] == "ServiceAccount"
    dep.create(*objects[0], field_validation="Strict")  # created: admission looks up the pods' account
    for kind, body in [*objects[1:], ("Pod", dep.code_server_pod()), ("Pod", dep.daemon_pod())]:
        dep.create(kind, body, dry_run="All", field_validation="Strict")
    volumes = dep.code_server_pod()["spec"]["volumes"]
    assert {"name": "stepflow-storage", "persistentVolumeClaim": {"claimName": "stepflow-storage"}} in volumes


def test_run_and_step_jobs_from_the_values_pass_server_validation(kc: KubeCluster, tmp_path: Path) -> None:
    """The run worker Job as K8sRunLauncher builds it from the values (runK8sConfig, envSecrets, the code
    location's container context), and each OpenRAG step's Job with its pool's op tag on top."""
    dep = values_deployment(kc, tmp_path)
    cfg = dep.launcher()["config"]
    launcher = SimpleNamespace(**{k: cfg[k] for k in ("job_image", "dagster_home", "instance_config_map")})
    launcher.postgres_password_secret = cfg["postgres_password_secret"]
    run_context = K8sContainerContext.create_from_config(dep.container_context()).merge(
        K8sContainerContext(
            env_secrets=cfg["env_secrets"],
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg["run_k8s_config"]),
        )
    )
    job_config = run_context.get_k8s_job_config(None, launcher)
    labels = {"dagster/run-id": "0f0e0d0c-0000-4000-8000-000000000000"}
    jobs = [
        construct_dagster_k8s_job(
            job_config,
            ["dagster", "api", "execute_run"],
            "dagster-run-0f0e0d0c",
            run_context.run_k8s_config,
            component="run_worker",
            labels=labels,
        )
    ]
    plan = plan_flow(load_flow(ROOT / "flows" / "openrag_ingestion.json"))
    translator = K8sTranslator()
    for step in plan.steps:
        op_config = json.loads(translator.get_op_tags(plan, step)["dagster-k8s/config"])
        step_context = run_context.merge(
            K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(op_config))
        )
        job = construct_dagster_k8s_job(
            job_config,
            ["dagster", "api", "execute_step"],
            f"dagster-step-{step.name.lower().replace('_', '-')}",
            step_context.run_k8s_config,
            component="step_worker",
            labels=labels,
        )
        spec = job.spec.template.spec
        assert spec.node_selector == {"stepflow.io/pool": translator.get_op_tags(plan, step)["stepflow/pool"]}
        jobs.append(job)
    batch = kc.batch_v1()
    for job in jobs:
        body = ApiClient().sanitize_for_serialization(job)
        batch.create_namespaced_job("stepflow", body, dry_run="All", field_validation="Strict")
    env = {e.name for e in jobs[0].spec.template.spec.containers[0].env}
    assert {"DOCLING_URL", "OPENSEARCH_URL", "STEPFLOW_DROP_DIR", "DAGSTER_PG_PASSWORD"} <= env

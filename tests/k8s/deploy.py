"""The project deployed on the control plane of services/kube the way helm-values/dagster-values.yaml
deploys it with the official chart: a user-code server pod and a daemon pod on the CPU pool (the chart's
commands, the values' environment and Secrets), the instance in a ConfigMap that every pod mounts at
DAGSTER_HOME, PostgreSQL for storage, the `K8sRunLauncher` with the values' run-worker config, the
`QueuedRunCoordinator` with the values' per-pool limits.

What differs from a real cluster, and why:
- the PVC `stepflow-storage` is a hostPath volume at the same mount path (the process kubelet has no
  PVCs; it bind-mounts the host folder into each pod's mount namespace, which is how a node sees an RWX
  volume): op outputs and the drop folder are shared by every pod, as on the cluster;
- the services' URLs are loopback addresses (no Services or DNS: every pod is 127.0.0.1), and the local
  OpenSearch runs without security, so its URL is http (the values' user and the Secret's password are
  still sent);
- PostgreSQL is Debian's, on loopback, started by the test (the chart's is a Bitnami pod).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.kube.cluster import KubeCluster

from .values import ROOT, deployment_env, secret_keys, user_deployment, values

NAMESPACE = "stepflow"
DAGSTER_HOME = "/opt/dagster/dagster_home"  # the chart's
PG_SECRET, PG_SECRET_KEY = "dagster-postgresql-secret", "postgresql-password"  # the chart's
INSTANCE_CM, WORKSPACE_CM = "dagster-instance", "dagster-workspace-yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_missing() -> str | None:
    for tool in ("initdb", "pg_ctl", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if os.geteuid() != 0:
        return "needs root (PostgreSQL runs as the postgres user; the kubelet's mount namespaces)"
    return None


@dataclass
class Postgres:
    """Debian's PostgreSQL 15 on 127.0.0.1, run as the `postgres` user, password auth (scram)."""

    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: os.urandom(12).hex())
    user: str = "dagster"
    db: str = "dagster"
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="stepflow-pg-")))

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120
        )

    def start(self) -> Postgres:
        data, pwfile = self.dir / "data", self.dir / "pw"
        pwfile.write_text(self.password)
        shutil.chown(self.dir, "postgres")
        shutil.chown(pwfile, "postgres")
        self._as_postgres(
            "initdb", "-D", str(data), "-U", self.user, f"--pwfile={pwfile}", "--auth=scram-sha-256"
        )
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.dir}"
        self._as_postgres("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db}")
        conn.close()
        return self

    def stop(self) -> None:
        try:
            self._as_postgres("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def storage(self, password: Any) -> dict[str, Any]:
        db = {"username": self.user, "password": password, "hostname": "127.0.0.1"}
        return {"postgres": {"postgres_db": {**db, "db_name": self.db, "port": self.port}}}


# stepflow-secrets for a test (keys as in manifests/secrets.example.yaml): the embeddings stand-in does not
# check the key; the local OpenSearch runs without security and ignores the basic-auth header it gets.
STAND_IN_SECRETS = {"OPENAI_API_KEY": "sk-local-stand-in-key-not-checked", "OPENSEARCH_PASSWORD": "stand-in"}


def flows_copy(dest: Path, **documents: Any) -> Path:
    """The OpenRAG export and its deployment file in `dest`, with `documents:` settings changed."""
    dest.mkdir(parents=True, exist_ok=True)
    source = ROOT / "flows" / "openrag_ingestion.json"
    (dest / source.name).write_bytes(source.read_bytes())
    deployment = yaml.safe_load(source.with_suffix(".yaml").read_text())
    deployment["documents"].update(documents)
    (dest / "openrag_ingestion.yaml").write_text(yaml.safe_dump(deployment))
    return dest


def local_overrides(
    flows: Path, docling_url: str, embeddings_base_url: str, opensearch_url: str, index: str
) -> dict[str, str]:
    """The env a test changes in the values' (see the module doc)."""
    return {
        # No Services or DNS in this control plane: the local services on loopback.
        "DOCLING_URL": docling_url,
        "OPENAI_BASE_URL": embeddings_base_url,
        "OPENSEARCH_URL": opensearch_url,  # the local node: no security, http
        "OPENSEARCH_INDEX": index,
        "STEPFLOW_FLOWS_DIR": str(flows),
        # Offline: the embeddings component's tokenizer from the local cache.
        "TIKTOKEN_CACHE_DIR": os.environ["TIKTOKEN_CACHE_DIR"],
        "DO_NOT_TRACK": "true",
    }


def snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def host_path(path: str) -> str:
    """The image's /app is the project checkout."""
    return str(ROOT / Path(path).relative_to("/app")) if path.startswith("/app") else path


@dataclass
class ChartDeployment:
    kc: KubeCluster
    dir: Path
    pg: Postgres
    overrides: Mapping[str, str]  # env the test changes (service URLs, timeouts): see the module doc
    secrets: Mapping[str, str]  # stepflow-secrets' values (keys as in manifests/secrets.example.yaml)
    grpc_port: int = field(default_factory=free_port)
    # The RWX claim as a host folder (the process kubelet has no PVCs); False: the values' volumes as is.
    shared_as_host_path: bool = True

    @property
    def shared(self) -> Path:
        """The host folder behind the `stepflow-storage` volume."""
        return self.dir / "pvc"

    def in_shared(self, pod_path: str) -> Path:
        mount = self.mount_path()
        return self.shared / Path(pod_path).relative_to(mount)

    def mount_path(self) -> str:
        dep = user_deployment()
        return next(m["mountPath"] for m in dep["volumeMounts"] if m["name"] == "stepflow-storage")

    def env(self) -> dict[str, str]:
        """The user deployment's env: the values', then the test's overrides."""
        return {**deployment_env(), **self.overrides}

    def volumes(self) -> list[dict[str, Any]]:
        out = []
        for vol in user_deployment()["volumes"]:
            if "persistentVolumeClaim" in vol and self.shared_as_host_path:  # a host folder every pod mounts
                vol = {"name": vol["name"], "hostPath": {"path": str(self.shared), "type": "Directory"}}
            out.append(vol)
        return out

    # ------------------------------------------------------------------ instance and objects

    def launcher(self) -> dict[str, Any]:
        doc = values()["runLauncher"]
        assert doc["type"] == "K8sRunLauncher"
        cfg = doc["config"]["k8sRunLauncher"]
        return {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "load_incluster_config": True,
                "job_namespace": cfg["jobNamespace"],
                "service_account_name": values()["global"]["serviceAccountName"],
                "instance_config_map": INSTANCE_CM,
                "dagster_home": DAGSTER_HOME,
                "postgres_password_secret": PG_SECRET,
                "job_image": "stepflow-dagster:dev",  # ignored by the process kubelet
                "image_pull_policy": "IfNotPresent",
                "env_secrets": [s["name"] for s in cfg["envSecrets"]],
                "run_k8s_config": {snake(k): v for k, v in cfg["runK8sConfig"].items()},
                "fail_pod_on_run_failure": cfg["failPodOnRunFailure"],
            },
        }

    def coordinator(self) -> dict[str, Any]:
        rc = values()["dagsterDaemon"]["runCoordinator"]
        assert rc["type"] == "QueuedRunCoordinator"
        cfg = rc["config"]["queuedRunCoordinator"]
        return {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": cfg["maxConcurrentRuns"],
                "tag_concurrency_limits": cfg["tagConcurrencyLimits"],
                "dequeue_interval_seconds": 1,
            },
        }

    def instance_yaml(self) -> dict[str, Any]:
        return {
            "storage": self.pg.storage({"env": "DAGSTER_PG_PASSWORD"}),
            "run_launcher": self.launcher(),
            "run_coordinator": self.coordinator(),
            "telemetry": {"enabled": False},
        }

    def objects(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, body) of what the test creates before the pods: service account, Secrets, ConfigMaps."""
        keys = secret_keys()["stepflow-secrets"]
        assert set(self.secrets) == keys, f"the Secret has keys {sorted(keys)}"
        out: list[tuple[str, dict[str, Any]]] = [
            ("ServiceAccount", {"metadata": {"name": values()["global"]["serviceAccountName"]}})
        ]
        for name, data in (
            ("stepflow-secrets", self.secrets),
            (PG_SECRET, {PG_SECRET_KEY: self.pg.password}),
        ):
            out.append(("Secret", {"metadata": {"name": name}, "type": "Opaque", "stringData": dict(data)}))
        workspace = {
            "load_from": [
                {"grpc_server": {"host": "127.0.0.1", "port": self.grpc_port, "location_name": "stepflow"}}
            ]
        }
        for name, key, doc in (
            (INSTANCE_CM, "dagster.yaml", self.instance_yaml()),
            (WORKSPACE_CM, "workspace.yaml", workspace),
        ):
            out.append(("ConfigMap", {"metadata": {"name": name}, "data": {key: yaml.safe_dump(doc)}}))
        return out

    def create(self, kind: str, body: dict[str, Any], **kwargs: Any) -> Any:
        core = self.kc.core_v1()
        create = {
            "ServiceAccount": core.create_namespaced_service_account,
            "Secret": core.create_namespaced_secret,
            "ConfigMap": core.create_namespaced_config_map,
            "Pod": core.create_namespaced_pod,
        }[kind]
        return create(NAMESPACE, body, **kwargs)

    def setup(self) -> ChartDeployment:
        self.shared.mkdir(parents=True, exist_ok=True)
        self.kc.create_namespace(NAMESPACE)
        for kind, body in self.objects():
            self.create(kind, body)
        return self

    # ------------------------------------------------------------------ pods

    def _pg_env(self) -> list[dict[str, Any]]:
        ref = {"secretKeyRef": {"name": PG_SECRET, "key": PG_SECRET_KEY}}
        return [
            {"name": "DAGSTER_PG_PASSWORD", "valueFrom": ref},
            {"name": "DAGSTER_HOME", "value": DAGSTER_HOME},
        ]

    def _instance_mount(self) -> tuple[dict[str, Any], dict[str, Any]]:
        volume = {"name": "dagster-instance", "configMap": {"name": INSTANCE_CM}}
        mount = {
            "name": "dagster-instance",
            "mountPath": f"{DAGSTER_HOME}/dagster.yaml",
            "subPath": "dagster.yaml",
        }
        return volume, mount

    def container_context(self) -> dict[str, Any]:
        """What the chart gives the code server with includeConfigInLaunchedRuns: run and step pods get
        the deployment's env, Secrets and volumes."""
        dep = user_deployment()
        return {
            "k8s": {
                "namespace": NAMESPACE,
                "service_account_name": values()["global"]["serviceAccountName"],
                "env": [{"name": k, "value": v} for k, v in self.env().items()],
                "env_secrets": [s["name"] for s in dep["envSecrets"]],
                "volumes": self.volumes(),
                "volume_mounts": dep["volumeMounts"],
            }
        }

    def code_server_pod(self) -> dict[str, Any]:
        dep = user_deployment()
        args = [host_path(a) for a in dep["dagsterApiGrpcArgs"]]
        cm_vol, cm_mount = self._instance_mount()
        env = [{"name": k, "value": v} for k, v in self.env().items()]
        env += [
            {"name": "DAGSTER_CONTAINER_CONTEXT", "value": json.dumps(self.container_context())},
            {"name": "DAGSTER_CURRENT_IMAGE", "value": "stepflow-dagster:dev"},
            *self._pg_env(),
        ]
        container = {
            "name": dep["name"],
            "image": f"{dep['image']['repository']}:{dep['image']['tag']}",
            "command": ["dagster", "api", "grpc"],
            "args": ["-h", "127.0.0.1", "-p", str(self.grpc_port), *args],
            "env": env,
            "envFrom": [{"secretRef": {"name": s["name"]}} for s in dep["envSecrets"]],
            "volumeMounts": [*dep["volumeMounts"], cm_mount],
            "resources": dep["resources"],
        }
        return self._pod(
            "stepflow-code-server",
            "user-deployments",
            container,
            [*self.volumes(), cm_vol],
            dep["nodeSelector"],
        )

    def daemon_pod(self) -> dict[str, Any]:
        cm_vol, cm_mount = self._instance_mount()
        ws_vol = {"name": "workspace", "configMap": {"name": WORKSPACE_CM}}
        ws_mount = {"name": "workspace", "mountPath": "/dagster-workspace"}
        container = {
            "name": "dagster-daemon",
            "image": "docker.io/dagster/dagster-celery-k8s:1.13.27",
            "command": ["dagster-daemon", "run", "-w", "/dagster-workspace/workspace.yaml"],
            "env": self._pg_env(),
            "volumeMounts": [cm_mount, ws_mount],
        }
        node_selector = values()["dagsterDaemon"]["nodeSelector"]
        return self._pod("dagster-daemon", "dagster-daemon", container, [cm_vol, ws_vol], node_selector)

    def _pod(
        self,
        name: str,
        component: str,
        container: dict[str, Any],
        volumes: list[dict[str, Any]],
        node_selector: Mapping[str, str],
    ) -> dict[str, Any]:
        log_dir = self.dir / "logs" / name
        log_dir.mkdir(parents=True, exist_ok=True)
        return {
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/component": component},
                "annotations": {"stepflow.io/log-dir": str(log_dir)},
            },
            "spec": {
                "serviceAccountName": values()["global"]["serviceAccountName"],
                "nodeSelector": dict(node_selector),
                "restartPolicy": "Always",
                "containers": [container],
                "volumes": volumes,
            },
        }

    def start(self) -> None:
        self.create("Pod", self.code_server_pod())
        self.wait_grpc()
        self.create("Pod", self.daemon_pod())

    def wait_grpc(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.grpc_port)) == 0:
                    return
            pod = self.kc.core_v1().read_namespaced_pod("stepflow-code-server", NAMESPACE)
            assert pod.status.phase != "Failed", self.logs("stepflow-code-server")
            time.sleep(1)
        raise AssertionError(
            f"code server not serving after {timeout:.0f}s: {self.logs('stepflow-code-server')}"
        )

    def logs(self, pod: str, tail: int = 60) -> str:
        try:
            return str(self.kc.core_v1().read_namespaced_pod_log(pod, NAMESPACE, tail_lines=tail))
        except Exception as e:  # noqa: BLE001 - for an assertion message only
            return f"(no log: {e})"

    def test_instance_home(self) -> Path:
        """A DAGSTER_HOME for this process: the same PostgreSQL storage (it launches nothing)."""
        home = self.dir / "reader-home"
        home.mkdir(exist_ok=True)
        doc = {"storage": self.pg.storage(self.pg.password), "telemetry": {"enabled": False}}
        (home / "dagster.yaml").write_text(yaml.safe_dump(doc))
        return home

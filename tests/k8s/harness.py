"""A Dagster deployment on the real control plane of services/kube: an instance whose run launcher is
dagster-k8s's `K8sRunLauncher`, runs launched by `dagster job launch` against the root definitions.py
with STEPFLOW_EXECUTOR=k8s, so that the run worker and every step are pods.

All pods run as processes of this machine, so the instance (SQLite), the IO storage and the flows
live in one host directory that every pod sees at the same absolute path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.kube.cluster import KubeCluster  # noqa: E402
from stepflow_dagster.k8s.placement import DEFAULT_POOLS  # noqa: E402

from .flows import write_pools_flow  # noqa: E402

NAMESPACE = "stepflow"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class Deployment:
    kc: KubeCluster
    dir: Path

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def storage(self) -> Path:
        return self.dir / "storage"

    @property
    def flows(self) -> Path:
        return self.dir / "flows"

    def env(self) -> dict[str, str]:
        return {
            "STEPFLOW_EXECUTOR": "k8s",
            "STEPFLOW_FLOWS_DIR": str(self.flows),
            "STEPFLOW_STORAGE": str(self.storage),
            "STEPFLOW_NODE_POOLS": str(self.dir / "pools.yaml"),
            "DO_NOT_TRACK": "true",
        }

    def setup(self, unschedulable_pool: str = "nowhere") -> Deployment:
        for d in (self.home, self.storage):
            d.mkdir(parents=True, exist_ok=True)
        write_pools_flow(self.flows, "pools")
        write_pools_flow(self.flows, "stuck")
        # The shipped pools, plus one no node has: the flow `stuck` puts its Docling step there.
        pools = yaml.safe_load(DEFAULT_POOLS.read_text())
        pools["pools"][unschedulable_pool] = {"node_selector": {"stepflow.io/pool": unschedulable_pool}}
        pools["flows"] = {"stuck": {"nodes": {"DoclingProbe-dcl01": unschedulable_pool}}}
        (self.dir / "pools.yaml").write_text(yaml.safe_dump(pools))
        instance = {
            "run_launcher": {
                "module": "dagster_k8s.launcher",
                "class": "K8sRunLauncher",
                "config": {
                    "load_incluster_config": False,
                    "kubeconfig_file": self.kc.kubeconfig,
                    "job_namespace": NAMESPACE,
                    "service_account_name": "default",
                    "instance_config_map": "dagster-instance",  # required; the pods get DAGSTER_HOME
                    "dagster_home": str(self.home),
                    "job_image": "stepflow-dagster:dev",  # ignored by the process kubelet
                    "image_pull_policy": "Never",
                    "env_vars": [f"{k}={v}" for k, v in self.env().items()],
                },
            },
            # Launch at once (1.13 queues by default, which needs the daemon).
            "run_coordinator": {
                "module": "dagster._core.run_coordinator",
                "class": "DefaultRunCoordinator",
            },
            "storage": {"sqlite": {"base_dir": str(self.home)}},
            "telemetry": {"enabled": False},
        }
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(instance))
        self.kc.create_namespace(NAMESPACE)
        return self

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def launch(
        self,
        job: str,
        input_value: str,
        tags: Mapping[str, str] | None = None,
        execution: Mapping[str, Any] | None = None,
    ) -> str:
        """`dagster job launch` through the instance's K8sRunLauncher; returns the run id."""
        run_id = str(uuid.uuid4())
        config = {
            "resources": {"langflow": {"config": {"input_value": input_value}}},
            "execution": {"config": {"check_step_health_interval_seconds": 1, **(execution or {})}},
        }
        args = [sys.executable, "-m", "dagster", "job", "launch", "-f", str(ROOT / "definitions.py")]
        args += ["-j", job, "--config-json", json.dumps(config), "--run-id", run_id]
        if tags:
            args += ["--tags", json.dumps(dict(tags))]
        env = {**os.environ, **self.env(), "DAGSTER_HOME": str(self.home)}
        res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        return run_id

    def wait(self, run_id: str, timeout: float = 300) -> dg.DagsterRun:
        deadline = time.monotonic() + timeout
        with self.instance() as instance:
            while time.monotonic() < deadline:
                run = instance.get_run_by_id(run_id)
                if run is not None and run.status in TERMINAL:
                    return run
                time.sleep(1)
        raise AssertionError(f"run {run_id} not finished after {timeout}s: {self.describe(run_id)}")

    def events(self, run_id: str) -> list[dg.EventLogEntry]:
        with self.instance() as instance:
            return list(instance.all_logs(run_id))

    def step_pods(self, run_id: str) -> list[Any]:
        return list(
            self.kc.core_v1()
            .list_namespaced_pod(
                NAMESPACE, label_selector=f"dagster/run-id={run_id},app.kubernetes.io/component=step_worker"
            )
            .items
        )

    def step_jobs(self, run_id: str) -> list[Any]:
        return list(
            self.kc.batch_v1()
            .list_namespaced_job(
                NAMESPACE, label_selector=f"dagster/run-id={run_id},app.kubernetes.io/component=step_worker"
            )
            .items
        )

    def node_labels(self) -> dict[str, dict[str, str]]:
        return {n.metadata.name: n.metadata.labels or {} for n in self.kc.core_v1().list_node().items}

    def describe(self, run_id: str) -> str:
        """What went wrong, for assertion messages: the run's failure events and pod states."""
        lines = []
        for e in self.events(run_id):
            if e.dagster_event and (
                e.dagster_event.is_failure or e.dagster_event.event_type_value == "ENGINE_EVENT"
            ):
                lines.append(f"{e.dagster_event.event_type_value} {e.step_key}: {e.message}")
        for pod in (
            self.kc.core_v1().list_namespaced_pod(NAMESPACE, label_selector=f"dagster/run-id={run_id}").items
        ):
            lines.append(f"pod {pod.metadata.name} {pod.status.phase} on {pod.spec.node_name}")
        return "\n".join(lines[-40:])

"""A "process kubelet": Kubernetes nodes whose pods are local processes.

There is no container runtime on our machines. This program registers one or more
Nodes with the API server (labels, taints, capacity: the node pools), keeps them
Ready (status heartbeats and Leases in ``kube-node-lease``), and runs the pods that
the real scheduler binds to them:

* every container's ``command`` + ``args`` (the image is ignored) runs as a local
  process with the container's environment (``env`` values with ``$(VAR)``
  expansion, ``valueFrom`` secretKeyRef / configMapKeyRef / fieldRef /
  resourceFieldRef, ``envFrom``), plus ``KUBERNETES_SERVICE_HOST/PORT`` pointing at
  the API server on loopback, so in-cluster clients work;
* init containers run first, one after another;
* working directory: the container's ``workingDir`` when it exists (and is not empty),
  else the project directory (with mount namespaces: the project directory is
  bind-mounted at a ``workingDir`` that does not exist);
* with ``mount_namespaces`` (root only) each container runs in its own mount
  namespace (``unshare -m``) where configMap, secret, projected (service account
  token, configMap, secret, downwardAPI), downwardAPI, emptyDir and hostPath volumes
  are bind-mounted at their ``mountPath`` (``subPath`` and ``readOnly`` honoured);
* pod status: Pending -> Running (containerStatuses running, podIP 127.0.0.1) ->
  Succeeded / Failed with each container's exit code; restartPolicy OnFailure and
  Always restart the process with a back-off; ``activeDeadlineSeconds`` enforced;
* logs: stdout+stderr of each container go to a file per container (path in the pod
  annotation ``stepflow.io/log-dir``), and a minimal kubelet HTTPS endpoint serves
  ``/containerLogs/{ns}/{pod}/{container}`` (follow, tailLines, limitBytes,
  timestamps, sinceSeconds, sinceTime), so ``kubectl logs`` and
  ``read_namespaced_pod_log`` work through the API server;
* pods being deleted get SIGTERM, SIGKILL after their grace period, and are then
  removed (delete with grace period 0), as the real kubelet does.

Not supported: images, exec/attach/port-forward, probes, resource limits, pod
networking (every pod is 127.0.0.1), persistentVolumeClaim and other volume types
(an empty directory is mounted instead, with a warning), native sidecars.

Run: ``python kubelet.py --config kubelet.json`` (see ``KubeletConfig``); ``cluster.py``
writes that file and starts this program.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("process-kubelet")

LOG_DIR_ANNOTATION = "stepflow.io/log-dir"
KUBELET_VERSION = "v1.37.2"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# ---------------------------------------------------------------- configuration


@dataclass
class NodeSpec:
    """One Node served by the process kubelet."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    # each {"key": ..., "value": ..., "effect": "NoSchedule"|"PreferNoSchedule"|"NoExecute"}
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeSpec:
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


@dataclass
class KubeletConfig:
    kubeconfig: str
    nodes: list[NodeSpec]
    state_dir: str
    project_dir: str
    apiserver_host: str = "127.0.0.1"
    apiserver_port: int = 6443
    # HTTPS log endpoint (served for every node on 127.0.0.1:port); 0 = off
    port: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    mount_namespaces: bool = False
    # environment every pod starts from (before its own env); None = a few of ours
    base_env: dict[str, str] | None = None
    heartbeat_seconds: float = 10.0

    @classmethod
    def load(cls, path: str) -> KubeletConfig:
        d = json.loads(Path(path).read_text())
        d["nodes"] = [NodeSpec.from_dict(n) for n in d["nodes"]]
        return cls(**d)

    def dump(self, path: str) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2))


INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV", "SSL_CERT_FILE")


# ---------------------------------------------------------------- helpers


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_nano() -> str:
    t = time.time_ns()
    return dt.datetime.fromtimestamp(t // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{t % 1_000_000_000:09d}Z"
    )


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined refs replaced, $$ -> $, others kept."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, s)


def field_value(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.*)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get("labels") or {}).items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get("annotations") or {}).items()))
    del status
    raise ValueError(f"unsupported fieldRef {path}")


class ConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing (CreateContainerConfigError)."""


# ---------------------------------------------------------------- API access


class Api:
    """Thin wrapper over the kubernetes client, dict in and dict out."""

    def __init__(self, kubeconfig: str):
        from kubernetes import client, config

        self.client = client
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.api_client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api_client)
        self.coord = client.CoordinationV1Api(self.api_client)
        self.kubeconfig = kubeconfig

    def new_core(self) -> Any:
        """A CoreV1Api with its own connection pool (for long watches)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return client.CoreV1Api(client.ApiClient(cfg))

    def raw(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """Call the API with a dict body and get a dict back (no model conversion)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        resp = self.api_client.call_api(
            path,
            method,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        data = resp.data
        return json.loads(data) if data else None

    def get(self, path: str) -> Any:
        return self.raw("GET", path)

    def secret(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._maybe(f"/api/v1/namespaces/{ns}/secrets/{name}")

    def config_map(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._maybe(f"/api/v1/namespaces/{ns}/configmaps/{name}")

    def _maybe(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get(path)
        except self.client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch_pod_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self.raw(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            {"status": status},
            "application/merge-patch+json",
        )

    def patch_pod(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        self.raw("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", patch, "application/merge-patch+json")

    def delete_pod_now(self, ns: str, name: str, uid: str) -> None:
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.raw("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", body)
        except self.client.ApiException as e:
            if e.status not in (404, 409):
                raise

    def token(self, ns: str, sa: str, pod: dict[str, Any], audience: str | None, seconds: int) -> str:
        spec: dict[str, Any] = {
            "expirationSeconds": max(seconds, 600),
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        }
        if audience:
            spec["audiences"] = [audience]
        out = self.raw(
            "POST",
            f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return out["status"]["token"]


# ---------------------------------------------------------------- nodes


class NodeAgent:
    """Registers the nodes and keeps them Ready."""

    def __init__(self, api: Api, cfg: KubeletConfig):
        self.api, self.cfg = api, cfg
        self.started = now()

    def register(self) -> None:
        for n in self.cfg.nodes:
            labels = {
                "kubernetes.io/hostname": n.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **n.labels,
            }
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n.name,
                    "labels": labels,
                    "annotations": {
                        "node.alpha.kubernetes.io/ttl": "0",
                        "stepflow.io/process-kubelet": "true",
                    },
                },
                "spec": {"taints": n.taints} if n.taints else {},
            }
            for attempt in range(60):
                try:
                    try:
                        self.api.raw("POST", "/api/v1/nodes", body)
                    except self.api.client.ApiException as e:
                        if e.status != 409:
                            raise
                        self.api.raw(
                            "PATCH",
                            f"/api/v1/nodes/{n.name}",
                            {"metadata": {"labels": labels}, "spec": {"taints": n.taints or None}},
                            "application/merge-patch+json",
                        )
                    break
                except Exception as e:  # noqa: BLE001 - the API may still be starting
                    if attempt == 59:
                        raise
                    log.info("registering node %s: %s (retrying)", n.name, e)
                    time.sleep(1)
            self.post_status(n)
            log.info("registered node %s labels=%s taints=%s", n.name, n.labels, n.taints)

    def post_status(self, n: NodeSpec) -> None:
        t = now()

        def cond(type_: str, status: str, reason: str, msg: str) -> dict[str, str]:
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": msg,
                "lastHeartbeatTime": t,
                "lastTransitionTime": self.started,
            }

        status = {
            "capacity": n.capacity,
            "allocatable": n.capacity,
            "conditions": [
                cond(
                    "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"
                ),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID"),
                cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": n.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.port or 10250}},
            "nodeInfo": {
                "machineID": n.name,
                "systemUUID": n.name,
                "bootID": self.started,
                "kernelVersion": os.uname().release,
                "osImage": "process-kubelet",
                "containerRuntimeVersion": "process://stepflow",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.api.raw(
            "PATCH", f"/api/v1/nodes/{n.name}/status", {"status": status}, "application/merge-patch+json"
        )

    def renew_lease(self, n: NodeSpec) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n.name}"
        spec = {"holderIdentity": n.name, "leaseDurationSeconds": 40, "renewTime": now_micro()}
        try:
            self.api.raw("PATCH", path, {"spec": spec}, "application/merge-patch+json")
        except self.api.client.ApiException as e:
            if e.status != 404:
                raise
            node = self.api.get(f"/api/v1/nodes/{n.name}")
            self.api.raw(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": n.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": n.name,
                                "uid": node["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": spec,
                },
            )

    def heartbeat_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for n in self.cfg.nodes:
                try:
                    self.renew_lease(n)
                    self.post_status(n)
                except Exception as e:  # noqa: BLE001
                    log.warning("heartbeat for %s failed: %s", n.name, e)
            stop.wait(self.cfg.heartbeat_seconds)


# ---------------------------------------------------------------- pods


@dataclass
class ContainerRun:
    name: str
    spec: dict[str, Any]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    last_state: dict[str, Any] = field(default_factory=dict)
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    pump: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None

    def state(self) -> dict[str, Any]:
        cid = f"process://{self.proc.pid}" if self.proc else ""
        if self.running:
            return {"running": {"startedAt": self.started_at}}
        if self.exit_code is not None:
            return {
                "terminated": {
                    "exitCode": self.exit_code,
                    "reason": "Completed" if self.exit_code == 0 else "Error",
                    "startedAt": self.started_at,
                    "finishedAt": self.finished_at,
                    "containerID": cid,
                }
            }
        w: dict[str, str] = {"reason": self.waiting_reason}
        if self.waiting_message:
            w["message"] = self.waiting_message
        return {"waiting": w}

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "process://",
            **({"containerID": f"process://{self.proc.pid}"} if self.proc else {}),
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": self.state(),
            "lastState": self.last_state,
        }


class PodRunner:
    """Runs one pod's containers as local processes and reports its status."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]):
        self.kubelet, self.api, self.cfg = kubelet, kubelet.api, kubelet.cfg
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = Path(self.cfg.state_dir) / "pods" / f"{self.ns}_{self.name}_{self.uid}"
        self.log_dir = self.dir / "logs"
        spec = pod["spec"]
        self.inits = [
            ContainerRun(c["name"], c, self.log_dir / f"{c['name']}.log")
            for c in spec.get("initContainers") or []
        ]
        self.mains = [
            ContainerRun(c["name"], c, self.log_dir / f"{c['name']}.log") for c in spec["containers"]
        ]
        self.phase = "Pending"
        self.started_at: str | None = None
        self.initialized = not self.inits
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.ns}/{self.name}", daemon=True)
        self.mounts: list[tuple[str, str, bool]] = []  # (src, dst, readonly) for all containers by volume
        self.volume_dirs: dict[str, str] = {}

    # -- lifecycle

    def start(self) -> None:
        self.thread.start()

    def containers(self) -> list[ContainerRun]:
        return self.inits + self.mains

    def find(self, name: str) -> ContainerRun | None:
        return next((c for c in self.containers() if c.name == name), None)

    def _run(self) -> None:
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            try:
                self.api.patch_pod(
                    self.ns, self.name, {"metadata": {"annotations": {LOG_DIR_ANNOTATION: str(self.log_dir)}}}
                )
            except Exception as e:  # noqa: BLE001
                log.warning("%s/%s: annotate: %s", self.ns, self.name, e)
            self.started_at = now()
            self.report()
            self._prepare_volumes_retrying()
            if self.stopping.is_set():
                return
            for c in self.inits:
                code = self._run_to_end(c, init=True)
                if self.stopping.is_set():
                    return
                if code != 0:
                    self.phase = "Failed"
                    self.report()
                    return
            self.initialized = True
            self._run_mains()
        except Exception as e:  # noqa: BLE001
            log.exception("%s/%s: pod failed in the kubelet", self.ns, self.name)
            if not self.stopping.is_set():
                self.phase = "Failed"
                self.report(message=f"process kubelet: {e}", reason="KubeletError")

    def _prepare_volumes_retrying(self) -> None:
        while not self.stopping.is_set():
            try:
                self.prepare_volumes()
                return
            except ConfigError as e:
                for c in self.containers():
                    c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(e)
                self.report()
                self.stopping.wait(2)

    def _restart_policy(self, c: ContainerRun) -> str:
        return self.pod["spec"].get("restartPolicy", "Always")

    def _run_to_end(self, c: ContainerRun, init: bool) -> int:
        """Run a container until it exits for good (restarting per policy)."""
        policy = self._restart_policy(c)
        backoff = 1.0
        while True:
            if not self._start(c):
                return -1
            self.report()
            code = self._wait(c)
            if self.stopping.is_set():
                return code
            restart = (policy == "Always" and not init) or (policy in ("Always", "OnFailure") and code != 0)
            if not restart:
                self.report()
                return code
            c.last_state = c.state()
            c.restart_count += 1
            c.proc, c.exit_code = None, None
            c.waiting_reason = "CrashLoopBackOff"
            self.report()
            if self.stopping.wait(backoff):
                return code
            backoff = min(backoff * 2, 10.0)

    def _run_mains(self) -> None:
        threads = [
            threading.Thread(target=self._run_to_end, args=(c, False), daemon=True) for c in self.mains
        ]
        for t in threads:
            t.start()
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        t0 = time.monotonic()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.5)
            if deadline and time.monotonic() - t0 > deadline and not self.stopping.is_set():
                self.kill(grace=0)
                self.phase = "Failed"
                self.report(
                    reason="DeadlineExceeded",
                    message="Pod was active on the node longer than the specified deadline",
                )
                return
        if self.stopping.is_set():
            return
        codes = [c.exit_code for c in self.mains]
        self.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        self.report()
        log.info("%s/%s: %s (exit codes %s)", self.ns, self.name, self.phase, codes)

    # -- processes

    def _start(self, c: ContainerRun) -> bool:
        spec = c.spec
        try:
            env = self.kubelet.container_env(self.pod, spec)
        except ConfigError as e:
            c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(e)
            self.report()
            return False
        argv = [expand(a, env) for a in (spec.get("command") or []) + (spec.get("args") or [])]
        if not argv:
            c.waiting_reason = "CreateContainerError"
            c.waiting_message = "process kubelet: the container has no command/args (images are not run)"
            return False
        workdir = spec.get("workingDir") or ""
        mounts = self.container_mounts(spec)
        use_ns = self.cfg.mount_namespaces
        # a workingDir that is absent (or empty: a mount point left by an earlier pod) stands for
        # the image's code: the project checkout
        if workdir and (not os.path.isdir(workdir) or not os.listdir(workdir)):
            if use_ns:
                mounts.append((self.cfg.project_dir, workdir, False))
            else:
                workdir = self.cfg.project_dir
        workdir = workdir or self.cfg.project_dir
        if use_ns:
            script = ["set -e"]
            for src, dst, ro in mounts:
                q_src, q_dst = shlex.quote(src), shlex.quote(dst)
                if os.path.isdir(src):
                    script.append(f"mkdir -p {q_dst}")
                else:
                    script.append(f"mkdir -p $(dirname {q_dst}); [ -e {q_dst} ] || touch {q_dst}")
                script.append(f"mount --bind {q_src} {q_dst}")
                if ro:
                    script.append(f"mount -o remount,bind,ro {q_dst}")
            script.append(f"cd {shlex.quote(workdir)}")
            script.append('exec "$@"')
            cmd = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                "\n".join(script),
                "sh",
                *argv,
            ]
        else:
            cmd = argv
        c.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info(
            "%s/%s[%s]: starting %s (cwd %s, %d mounts)",
            self.ns,
            self.name,
            c.name,
            argv,
            workdir,
            len(mounts),
        )
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=workdir if not use_ns else "/",
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            with open(c.log_path, "ab") as f:
                f.write(f"{now_nano()} process kubelet: cannot start {argv[0]}: {e}\n".encode())
            c.started_at = c.finished_at = now()
            c.proc = None
            c.exit_code = 127
            c.waiting_reason = "StartError"
            return True
        c.proc, c.exit_code, c.started_at, c.finished_at = proc, None, now(), None
        c.pump = threading.Thread(target=self._pump, args=(proc, c.log_path), daemon=True)
        c.pump.start()
        return True

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes], path: Path) -> None:
        """Copy output to the log file, each line prefixed with its timestamp."""
        assert proc.stdout is not None
        with open(path, "ab", buffering=0) as f:
            for line in iter(proc.stdout.readline, b""):
                if not line.endswith(b"\n"):
                    line += b"\n"
                f.write(now_nano().encode() + b" " + line)

    def _wait(self, c: ContainerRun) -> int:
        if c.proc is None:
            return c.exit_code if c.exit_code is not None else -1
        rc = c.proc.wait()
        if c.pump:
            c.pump.join(5)
        code = 128 - rc if rc < 0 else rc
        c.exit_code, c.finished_at = code, now()
        log.info("%s/%s[%s]: exited %s", self.ns, self.name, c.name, code)
        return code

    def kill(self, grace: float) -> None:
        """SIGTERM every process group, SIGKILL after grace seconds."""
        self.stopping.set()
        procs = [c.proc for c in self.containers() if c.proc and c.proc.poll() is None]
        for p in procs:
            with contextlib.suppress(Exception):
                os.killpg(p.pid, signal.SIGTERM)
        t_end = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, t_end - time.monotonic()))
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(Exception):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    p.wait(5)
        for c in self.containers():
            if c.proc and c.exit_code is None and c.proc.returncode is not None:
                rc = c.proc.returncode
                c.exit_code, c.finished_at = (128 - rc if rc < 0 else rc), now()

    def terminate_and_delete(self, grace: float) -> None:
        self.kill(grace)
        if self.phase not in ("Succeeded", "Failed"):
            self.phase = "Failed" if any(c.exit_code for c in self.mains) else "Succeeded"
            with contextlib.suppress(Exception):
                self.report(force=True)
        self.api.delete_pod_now(self.ns, self.name, self.uid)

    # -- status

    def report(self, reason: str = "", message: str = "", force: bool = False) -> None:
        if self.stopping.is_set() and not force:
            return
        with self.lock:
            status = self._status(reason, message)
            try:
                self.api.patch_pod_status(self.ns, self.name, status)
            except self.api.client.ApiException as e:
                if e.status != 404:
                    log.warning("%s/%s: status update failed: %s", self.ns, self.name, e)

    def _status(self, reason: str, message: str) -> dict[str, Any]:
        t = now()
        running = self.phase == "Pending" and self.initialized and any(c.proc for c in self.mains)
        phase = "Running" if running else self.phase
        all_ready = running and all(c.running for c in self.mains)
        terminal = phase in ("Succeeded", "Failed")
        current = {
            c["type"]: c
            for c in (self.kubelet.latest(self.uid) or self.pod).get("status", {}).get("conditions") or []
        }

        def cond(type_: str, ok: bool, why: str = "") -> None:
            old = current.get(type_)
            st = "True" if ok else "False"
            c: dict[str, Any] = {
                "type": type_,
                "status": st,
                "lastProbeTime": None,
                "lastTransitionTime": old["lastTransitionTime"] if old and old["status"] == st else t,
            }
            if why and not ok:
                c["reason"] = why
            current[type_] = c

        cond("PodReadyToStartContainers", True)
        cond("Initialized", self.initialized, "ContainersNotInitialized")
        cond("ContainersReady", all_ready, "PodCompleted" if terminal else "ContainersNotReady")
        cond("Ready", all_ready, "PodCompleted" if terminal else "ContainersNotReady")
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": list(current.values()),
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.started_at,
            "qosClass": (self.kubelet.latest(self.uid) or self.pod)
            .get("status", {})
            .get("qosClass", "BestEffort"),
            "containerStatuses": [c.status() for c in self.mains],
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        return status

    # -- volumes

    def prepare_volumes(self) -> None:
        """Materialise the pod's volumes under the pod dir (files for configMap/secret/...)."""
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            target = self.dir / "volumes" / name
            if "hostPath" in vol:
                hp = vol["hostPath"]
                path, kind = hp["path"], hp.get("type", "")
                if kind == "DirectoryOrCreate":
                    os.makedirs(path, exist_ok=True)
                elif kind == "FileOrCreate" and not os.path.exists(path):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    Path(path).touch()
                self.volume_dirs[name] = path
                continue
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            self.volume_dirs[name] = str(target)
            if "emptyDir" in vol:
                continue
            if "configMap" in vol:
                self._write_source(
                    target, self._cm_files(vol["configMap"]), vol["configMap"].get("defaultMode")
                )
            elif "secret" in vol:
                self._write_source(
                    target, self._secret_files(vol["secret"]), vol["secret"].get("defaultMode")
                )
            elif "downwardAPI" in vol:
                files = {i["path"]: self._downward(i).encode() for i in vol["downwardAPI"].get("items") or []}
                self._write_source(target, files, vol["downwardAPI"].get("defaultMode"))
            elif "projected" in vol:
                files: dict[str, bytes] = {}
                for src in vol["projected"].get("sources") or []:
                    if "serviceAccountToken" in src:
                        sat = src["serviceAccountToken"]
                        sa = self.pod["spec"].get("serviceAccountName") or "default"
                        token = self.api.token(
                            self.ns,
                            sa,
                            self.pod,
                            sat.get("audience"),
                            int(sat.get("expirationSeconds", 3607)),
                        )
                        files[sat["path"]] = token.encode()
                    elif "configMap" in src:
                        files.update(self._cm_files(src["configMap"]))
                    elif "secret" in src:
                        files.update(self._secret_files(src["secret"]))
                    elif "downwardAPI" in src:
                        for i in src["downwardAPI"].get("items") or []:
                            files[i["path"]] = self._downward(i).encode()
                self._write_source(target, files, vol["projected"].get("defaultMode"))
            else:
                kind = next((k for k in vol if k != "name"), "?")
                log.warning(
                    "%s/%s: volume %s of type %s is not supported: an empty directory instead",
                    self.ns,
                    self.name,
                    name,
                    kind,
                )

    def _downward(self, item: dict[str, Any]) -> str:
        if "fieldRef" in item:
            return field_value(self.pod, item["fieldRef"]["fieldPath"])
        return self.kubelet.resource_value(self.pod, item.get("resourceFieldRef") or {})

    @staticmethod
    def _select(data: dict[str, bytes], src: dict[str, Any], what: str) -> dict[str, bytes]:
        items = src.get("items")
        if not items:
            return dict(data)
        out = {}
        for it in items:
            if it["key"] not in data:
                if src.get("optional"):
                    continue
                raise ConfigError(f"{what}: key {it['key']} not found")
            out[it["path"]] = data[it["key"]]
        return out

    def _cm_files(self, src: dict[str, Any]) -> dict[str, bytes]:
        cm = self.api.config_map(self.ns, src["name"])
        if cm is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'configmap "{src["name"]}" not found')
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return self._select(data, src, f'configmap "{src["name"]}"')

    def _secret_files(self, src: dict[str, Any]) -> dict[str, bytes]:
        name = src.get("secretName") or src.get("name")
        sec = self.api.secret(self.ns, name)
        if sec is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'secret "{name}" not found')
        data = {k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()}
        return self._select(data, src, f'secret "{name}"')

    @staticmethod
    def _write_source(target: Path, files: dict[str, bytes], mode: int | None) -> None:
        for rel, content in files.items():
            p = target / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
            p.chmod(mode if mode is not None else 0o644)

    def container_mounts(self, spec: dict[str, Any]) -> list[tuple[str, str, bool]]:
        out = []
        for vm in spec.get("volumeMounts") or []:
            src = self.volume_dirs.get(vm["name"])
            if src is None:
                log.warning("%s/%s: volumeMount %s has no volume", self.ns, self.name, vm["name"])
                continue
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            out.append((src, vm["mountPath"], bool(vm.get("readOnly"))))
        return out


# ---------------------------------------------------------------- the kubelet


class Kubelet:
    def __init__(self, cfg: KubeletConfig):
        self.cfg = cfg
        self.api = Api(cfg.kubeconfig)
        self.nodes = {n.name for n in cfg.nodes}
        self.runners: dict[str, PodRunner] = {}
        self.pods: dict[str, dict[str, Any]] = {}  # latest object per uid
        self.deleting: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.agent = NodeAgent(self.api, cfg)

    def latest(self, uid: str) -> dict[str, Any] | None:
        return self.pods.get(uid)

    # -- env

    def base_env(self) -> dict[str, str]:
        if self.cfg.base_env is not None:
            env = dict(self.cfg.base_env)
        else:
            env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
            # "python" in a pod is the interpreter that runs this kubelet (the project's venv)
            here = os.path.dirname(sys.executable)
            path = env.get("PATH", os.defpath).split(os.pathsep)
            if here not in path:
                env["PATH"] = os.pathsep.join([here, *path])
        host, port = self.cfg.apiserver_host, str(self.cfg.apiserver_port)
        env.update(
            {
                "KUBERNETES_SERVICE_HOST": host,
                "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port,
                "KUBERNETES_PORT": f"tcp://{host}:{port}",
                f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            }
        )
        return env

    def resource_value(self, pod: dict[str, Any], ref: dict[str, Any]) -> str:
        res = ref.get("resource", "")
        kind, _, what = res.partition(".")
        for c in pod["spec"]["containers"]:
            if ref.get("containerName") in (None, c["name"]):
                v = ((c.get("resources") or {}).get(kind) or {}).get(what)
                if v is not None:
                    return str(v)
        node = next((n for n in self.cfg.nodes if n.name == pod["spec"].get("nodeName")), None)
        return (node.capacity if node else {}).get(what, "0")

    def container_env(self, pod: dict[str, Any], spec: dict[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env = self.base_env()
        env["HOSTNAME"] = pod["metadata"]["name"]
        own: dict[str, str] = {}
        for ef in spec.get("envFrom") or []:
            prefix = ef.get("prefix", "")
            if "configMapRef" in ef:
                ref = ef["configMapRef"]
                cm = self.api.config_map(ns, ref["name"])
                if cm is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'configmap "{ref["name"]}" not found')
                own.update({prefix + k: v for k, v in (cm.get("data") or {}).items()})
            elif "secretRef" in ef:
                ref = ef["secretRef"]
                sec = self.api.secret(ns, ref["name"])
                if sec is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'secret "{ref["name"]}" not found')
                own.update(
                    {
                        prefix + k: base64.b64decode(v).decode(errors="replace")
                        for k, v in (sec.get("data") or {}).items()
                    }
                )
        for e in spec.get("env") or []:
            name = e["name"]
            if "valueFrom" not in e:
                own[name] = expand(e.get("value", ""), {**env, **own})
                continue
            vf = e["valueFrom"]
            if "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                sec = self.api.secret(ns, ref["name"])
                data = (sec or {}).get("data") or {}
                if ref["key"] in data:
                    own[name] = base64.b64decode(data[ref["key"]]).decode(errors="replace")
                elif not ref.get("optional"):
                    raise ConfigError(
                        f'secret "{ref["name"]}" not found'
                        if sec is None
                        else f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}"
                    )
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                cm = self.api.config_map(ns, ref["name"])
                data = (cm or {}).get("data") or {}
                if ref["key"] in data:
                    own[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ConfigError(
                        f'configmap "{ref["name"]}" not found'
                        if cm is None
                        else f"couldn't find key {ref['key']} in ConfigMap {ns}/{ref['name']}"
                    )
            elif "fieldRef" in vf:
                own[name] = field_value(pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                own[name] = self.resource_value(pod, vf["resourceFieldRef"])
        env.update(own)
        return env

    # -- pods

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        if spec.get("nodeName") not in self.nodes:
            return
        uid = meta["uid"]
        with self.lock:
            if kind == "DELETED":
                self.pods.pop(uid, None)
                runner = self.runners.pop(uid, None)
                if runner:
                    threading.Thread(target=runner.kill, args=(0,), daemon=True).start()
                return
            self.pods[uid] = pod
            runner = self.runners.get(uid)
            if meta.get("deletionTimestamp"):
                if uid in self.deleting:
                    return
                self.deleting.add(uid)
                grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                if runner:
                    target = runner.terminate_and_delete
                    args: tuple[Any, ...] = (grace,)
                else:
                    target = self.api.delete_pod_now
                    args = (meta["namespace"], meta["name"], uid)
                threading.Thread(target=self._quietly, args=(target, *args), daemon=True).start()
                return
            phase = (pod.get("status") or {}).get("phase")
            if runner is None and phase not in ("Succeeded", "Failed"):
                runner = PodRunner(self, pod)
                self.runners[uid] = runner
                log.info("pod %s/%s bound to %s: starting", meta["namespace"], meta["name"], spec["nodeName"])
                runner.start()

    @staticmethod
    def _quietly(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            log.warning("%s failed: %s", getattr(fn, "__name__", fn), e)

    def watch_pods(self) -> None:
        from kubernetes import watch

        core = self.api.new_core()
        while not self.stop.is_set():
            try:
                lst = core.list_pod_for_all_namespaces(_preload_content=False)
                body = json.loads(lst.data)
                rv = body["metadata"]["resourceVersion"]
                for p in body["items"]:
                    self.on_pod("ADDED", p)
                w = watch.Watch()
                for ev in w.stream(
                    core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=300,
                    allow_watch_bookmarks=True,
                ):
                    if self.stop.is_set():
                        w.stop()
                        break
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.on_pod(ev["type"], ev["raw_object"])
            except Exception as e:  # noqa: BLE001
                if self.stop.is_set():
                    break
                log.warning("pod watch: %s (restarting)", e)
                time.sleep(1)

    # -- run

    def run(self) -> None:
        self.agent.register()
        threading.Thread(target=self.agent.heartbeat_forever, args=(self.stop,), daemon=True).start()
        if self.cfg.port:
            LogServer(self).start()
        threading.Thread(target=self.watch_pods, daemon=True, name="pod-watch").start()
        log.info("process kubelet serving nodes %s", sorted(self.nodes))
        self.stop.wait()
        self.shutdown()

    def shutdown(self) -> None:
        with self.lock:
            runners = list(self.runners.values())
        for r in runners:
            r.kill(grace=2)


# ---------------------------------------------------------------- log endpoint


def _parse_ts(s: str) -> float:
    s = s.strip()
    if not s:
        return 0.0
    main, _, frac = s.rstrip("Z").partition(".")
    t = dt.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


class LogServer:
    """A minimal kubelet HTTPS endpoint: /healthz and /containerLogs/{ns}/{pod}/{container}."""

    def __init__(self, kubelet: Kubelet):
        self.kubelet = kubelet
        cfg = kubelet.cfg
        handler = self._handler()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", cfg.port), handler)
        self.httpd.daemon_threads = True
        if cfg.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            self.httpd.socket = ctx.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="log-server").start()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        kubelet = self.kubelet

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("log endpoint: " + fmt, *args)

            def setup(self) -> None:
                super().setup()
                if isinstance(self.connection, ssl.SSLSocket):
                    self.connection.settimeout(30)
                    self.connection.do_handshake()
                    self.connection.settimeout(None)

            def _text(self, code: int, text: str) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
                if parts in (["healthz"], ["readyz"], ["livez"]):
                    return self._text(200, "ok")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    return self._text(404, f"process kubelet: {url.path} is not served")
                _, ns, pod, container = parts
                q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                runner = next(
                    (r for r in list(kubelet.runners.values()) if r.ns == ns and r.name == pod), None
                )
                if runner is None:
                    return self._text(
                        404, f'pod "{pod}" in namespace "{ns}" is not known to the process kubelet'
                    )
                c = runner.find(container)
                if c is None:
                    return self._text(400, f'container "{container}" is not valid for pod "{pod}"')
                if c.proc is None and c.exit_code is None:
                    return self._text(
                        400, f'container "{container}" in pod "{pod}" is waiting to start: {c.waiting_reason}'
                    )
                self.stream(c, q)

            def stream(self, c: ContainerRun, q: dict[str, str]) -> None:
                follow = q.get("follow") in ("true", "1")
                stamps = q.get("timestamps") in ("true", "1")
                tail = int(q["tailLines"]) if "tailLines" in q else None
                limit = int(q["limitBytes"]) if "limitBytes" in q else None
                since = 0.0
                if "sinceSeconds" in q:
                    since = time.time() - int(q["sinceSeconds"])
                elif "sinceTime" in q:
                    since = _parse_ts(q["sinceTime"])
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                sent = 0

                def emit(line: bytes) -> bool:
                    nonlocal sent
                    ts, _, rest = line.partition(b" ")
                    if since and _parse_ts(ts.decode()) < since:
                        return True
                    out = line if stamps else rest
                    if limit is not None:
                        out = out[: max(0, limit - sent)]
                    self.wfile.write(out)
                    sent += len(out)
                    return limit is None or sent < limit

                try:
                    with open(c.log_path, "rb") as f:
                        lines = f.readlines()
                        buf = b""
                        if lines and not lines[-1].endswith(b"\n"):
                            buf = lines.pop()
                        if tail is not None:
                            lines = lines[-tail:] if tail > 0 else []
                        for line in lines:
                            if not emit(line):
                                return
                        self.wfile.flush()
                        while follow:
                            chunk = f.readline()
                            if chunk:
                                buf += chunk
                                if buf.endswith(b"\n"):
                                    if not emit(buf):
                                        return
                                    buf = b""
                                    self.wfile.flush()
                                continue
                            if not c.running and (c.pump is None or not c.pump.is_alive()):
                                rest = f.read()
                                for line in (buf + rest).splitlines(keepends=True):
                                    if not emit(line):
                                        return
                                break
                            time.sleep(0.2)
                except FileNotFoundError:
                    pass
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

        return Handler


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="KubeletConfig as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    cfg = KubeletConfig.load(args.config)
    if cfg.mount_namespaces and (os.geteuid() != 0 or not shutil.which("unshare")):
        log.warning("mount namespaces need root and unshare: volumes will not be mounted")
        cfg.mount_namespaces = False
    kubelet = Kubelet(cfg)

    def on_signal(signum: int, frame: Any) -> None:
        kubelet.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kubelet.run()
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())

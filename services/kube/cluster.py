"""A real Kubernetes control plane on loopback, without containers.

``KubeCluster`` starts etcd, kube-apiserver, kube-controller-manager and
kube-scheduler (binaries built by ``services/kube/build.sh``) and the process kubelet
(``kubelet.py``, which serves labelled Nodes and runs their pods as local processes),
each on a free loopback port with its state in a temporary directory; it writes a
kubeconfig, waits until everything is healthy and every node is Ready, and stops
everything (process groups) on exit::

    with KubeCluster() as kc:
        api = kc.core_v1()
        ...

CLI: ``python services/kube/cluster.py up`` prints the kubeconfig path and stays in
the foreground until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from .kubelet import KubeletConfig, NodeSpec, free_port
except ImportError:  # run as a script
    from kubelet import KubeletConfig, NodeSpec, free_port  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

POOL = "stepflow.io/pool"
ZONE = "topology.kubernetes.io/zone"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def default_nodes() -> list[NodeSpec]:
    """2 CPU nodes (zone-a, zone-b), 1 docling node (zone-a), 1 gpu node with a taint (zone-b)."""
    return [
        NodeSpec("cpu-a", {POOL: "cpu", ZONE: "zone-a"}),
        NodeSpec("cpu-b", {POOL: "cpu", ZONE: "zone-b"}),
        NodeSpec("docling-a", {POOL: "docling", ZONE: "zone-a"}),
        NodeSpec(
            "gpu-b",
            {POOL: "gpu", ZONE: "zone-b"},
            taints=[dict(GPU_TAINT)],
            capacity={
                "cpu": "8",
                "memory": "32Gi",
                "pods": "110",
                "ephemeral-storage": "100Gi",
                "nvidia.com/gpu": "1",
            },
        ),
    ]


def bin_dir() -> Path:
    return Path(os.environ.get("STEPFLOW_CACHE", REPO / ".cache")) / "kube" / "bin"


def binaries_missing(bdir: Path | None = None) -> list[str]:
    bdir = bdir or bin_dir()
    return [b for b in BINARIES if not os.access(bdir / b, os.X_OK)]


class ClusterError(RuntimeError):
    pass


@dataclass
class KubeCluster:
    nodes: list[NodeSpec] | list[dict[str, Any]] | None = None
    state_dir: str | None = None  # a temporary directory (removed on stop) when None
    project_dir: str = str(REPO)
    bin_dir: str | None = None
    # run each pod in its own mount namespace with its volumes bind-mounted (root only)
    mount_namespaces: bool | None = None
    # authorization: AlwaysAllow (default) or RBAC (admin/kubelet are system:masters)
    rbac: bool = False
    # environment pods start from (None: PATH, HOME, LANG, VIRTUAL_ENV... of this process)
    pod_base_env: dict[str, str] | None = None
    keep_state: bool = False
    start_timeout: float = 120.0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    # ------------------------------------------------------------ public API

    def __post_init__(self) -> None:
        nodes = self.nodes if self.nodes is not None else default_nodes()
        self.node_specs = [n if isinstance(n, NodeSpec) else NodeSpec.from_dict(n) for n in nodes]
        self.bdir = Path(self.bin_dir) if self.bin_dir else bin_dir()
        if self.mount_namespaces is None:
            self.mount_namespaces = os.geteuid() == 0 and shutil.which("unshare") is not None
        self._own_tmp = self.state_dir is None
        self.dir = Path(self.state_dir or tempfile.mkdtemp(prefix="stepflow-kube-"))
        self.admin_token = os.urandom(16).hex()
        self.ports: dict[str, int] = {}

    @property
    def kubeconfig(self) -> str:
        return str(self.dir / "admin.kubeconfig")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def ca_file(self) -> str:
        return str(self.dir / "pki" / "ca.crt")

    def log_file(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def core_v1(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def batch_v1(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api_client())

    def __enter__(self) -> KubeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> KubeCluster:
        missing = binaries_missing(self.bdir)
        if missing:
            raise ClusterError(f"missing {missing} in {self.bdir}: run services/kube/build.sh")
        t0 = time.monotonic()
        try:
            for d in ("pki", "logs", "etcd", "kubelet"):
                (self.dir / d).mkdir(parents=True, exist_ok=True)
            for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kubelet"):
                self.ports[name] = free_port()
            self._pki()
            self._kubeconfigs()
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
            self._start_scheduler()
            self._start_kubelet()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        for name in ("kubelet", "scheduler", "controller-manager", "apiserver", "etcd"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(15 if name == "kubelet" else 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        if self._own_tmp and not self.keep_state and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def create_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Create a namespace and wait for its default ServiceAccount (pods need it)."""
        core = self.core_v1()
        from kubernetes.client import ApiException

        try:
            core.create_namespace({"metadata": {"name": name}})
        except ApiException as e:
            if e.status != 409:
                raise
        self._wait(lambda: self._has_default_sa(core, name), timeout, f"default ServiceAccount in {name}")

    # ------------------------------------------------------------ internals

    def _pki(self) -> None:
        pki = self.dir / "pki"

        def ossl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=pki)

        ossl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=stepflow-kube-ca",
        )

        def leaf(name: str, cn: str, sans: str, usage: str) -> None:
            ossl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                f"/CN={cn}",
            )
            (pki / f"{name}.ext").write_text(
                f"subjectAltName={sans}\nextendedKeyUsage={usage}\nkeyUsage=digitalSignature,keyEncipherment\n"
                "basicConstraints=CA:FALSE\n"
            )
            ossl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "3650",
                "-extfile",
                f"{name}.ext",
            )

        api_sans = ",".join(
            [
                "IP:127.0.0.1",
                "IP:10.96.0.1",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        leaf("apiserver", "kube-apiserver", api_sans, "serverAuth")
        leaf("kubelet", "process-kubelet", "IP:127.0.0.1,DNS:localhost", "serverAuth")
        leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "DNS:localhost", "clientAuth")
        ossl("genrsa", "-out", "sa.key", "2048")
        ossl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def _kubeconfigs(self) -> None:
        self.tokens = {
            "admin": (self.admin_token, "admin", "system:masters"),
            "controller-manager": (os.urandom(16).hex(), "system:kube-controller-manager", ""),
            "scheduler": (os.urandom(16).hex(), "system:kube-scheduler", ""),
            "kubelet": (os.urandom(16).hex(), "system:node:process-kubelet", "system:masters,system:nodes"),
        }
        lines = [
            f'{tok},{user},{user},"{groups}"' if groups else f"{tok},{user},{user}"
            for tok, user, groups in self.tokens.values()
        ]
        (self.dir / "pki" / "tokens.csv").write_text("\n".join(lines) + "\n")
        (self.dir / "pki" / "tokens.csv").chmod(0o600)
        server = f"https://127.0.0.1:{self.ports['apiserver']}"
        for name, (tok, user, _) in self.tokens.items():
            cfg = {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "stepflow",
                "clusters": [
                    {"name": "stepflow", "cluster": {"server": server, "certificate-authority": self.ca_file}}
                ],
                "users": [{"name": user, "user": {"token": tok}}],
                "contexts": [
                    {
                        "name": "stepflow",
                        "context": {"cluster": "stepflow", "user": user, "namespace": "default"},
                    }
                ],
            }
            path = self.dir / f"{name}.kubeconfig"
            path.write_text(json.dumps(cfg, indent=2))
            path.chmod(0o600)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        logf = open(self.log_file(name), "ab")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen(
            argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
            start_new_session=True,
            env=env or os.environ.copy(),
        )
        logf.close()

    def _bin(self, name: str) -> str:
        return str(self.bdir / name)

    def _start_etcd(self) -> None:
        c, p = self.ports["etcd"], self.ports["etcd-peer"]
        self._spawn(
            "etcd",
            [
                self._bin("etcd"),
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{c}",
                f"--advertise-client-urls=http://127.0.0.1:{c}",
                f"--listen-peer-urls=http://127.0.0.1:{p}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
                f"--initial-cluster=default=http://127.0.0.1:{p}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(
            lambda: self._http_ok(f"http://127.0.0.1:{c}/health", b'"health":"true"'), 30, "etcd", "etcd"
        )

    def _start_apiserver(self) -> None:
        pki = self.dir / "pki"
        self._spawn(
            "apiserver",
            [
                self._bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--authorization-mode={'RBAC' if self.rbac else 'AlwaysAllow'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={pki}",
            ],
        )
        self._wait(
            lambda: self._http_ok(f"{self.server}/readyz", b"ok", token=self.admin_token),
            self.start_timeout,
            "kube-apiserver /readyz",
            "apiserver",
        )

    def _component_flags(self, name: str) -> list[str]:
        kc = str(self.dir / f"{name}.kubeconfig")
        (self.dir / name).mkdir(exist_ok=True)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[name]}",
            "--leader-elect=false",
            f"--cert-dir={self.dir / name}",
            "--profiling=false",
        ]

    def _start_controller_manager(self) -> None:
        pki = self.dir / "pki"
        self._spawn(
            "controller-manager",
            [
                self._bin("kube-controller-manager"),
                *self._component_flags("controller-manager"),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--controllers=*",
                "--use-service-account-credentials=false",
            ],
        )

    def _start_scheduler(self) -> None:
        self._spawn("scheduler", [self._bin("kube-scheduler"), *self._component_flags("scheduler")])

    def _start_kubelet(self) -> None:
        cfg = KubeletConfig(
            kubeconfig=str(self.dir / "kubelet.kubeconfig"),
            nodes=self.node_specs,
            state_dir=str(self.dir / "kubelet"),
            project_dir=self.project_dir,
            apiserver_port=self.ports["apiserver"],
            port=self.ports["kubelet"],
            tls_cert=str(self.dir / "pki" / "kubelet.crt"),
            tls_key=str(self.dir / "pki" / "kubelet.key"),
            mount_namespaces=bool(self.mount_namespaces),
            base_env=self.pod_base_env,
        )
        path = self.dir / "kubelet.json"
        cfg.dump(str(path))
        self._spawn("kubelet", [sys.executable, str(HERE / "kubelet.py"), "--config", str(path)])

    def _wait_ready(self) -> None:
        for name in ("controller-manager", "scheduler"):
            url = f"https://127.0.0.1:{self.ports[name]}/healthz"
            self._wait(lambda url=url: self._http_ok(url, b"ok", verify=False), 60, f"{name} /healthz", name)
        core = self.core_v1()
        want = {n.name for n in self.node_specs}

        def nodes_ready() -> bool:
            ready = set()
            for n in core.list_node().items:
                conds = {c.type: c.status for c in (n.status.conditions or [])}
                taints = {t.key for t in (n.spec.taints or [])}
                if conds.get("Ready") == "True" and not taints & {
                    "node.kubernetes.io/not-ready",
                    "node.kubernetes.io/unreachable",
                }:
                    ready.add(n.metadata.name)
            return want <= ready

        self._wait(nodes_ready, 60, f"nodes {sorted(want)} Ready", "kubelet")
        self._wait(
            lambda: self._has_default_sa(core, "default"), 60, "default ServiceAccount", "controller-manager"
        )

        def root_ca() -> bool:
            return any(
                cm.metadata.name == "kube-root-ca.crt"
                for cm in core.list_namespaced_config_map("default").items
            )

        self._wait(root_ca, 60, "kube-root-ca.crt ConfigMap", "controller-manager")

    @staticmethod
    def _has_default_sa(core: Any, ns: str) -> bool:
        return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(ns).items)

    def _http_ok(self, url: str, expect: bytes, token: str | None = None, verify: bool = True) -> bool:
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if url.startswith("https"):
            ctx = (
                ssl.create_default_context(cafile=self.ca_file)
                if verify
                else ssl._create_unverified_context()
            )
        else:
            ctx = None
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status == 200 and expect in r.read()
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def _wait(self, check: Any, timeout: float, what: str, component: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if component and component in self.procs and self.procs[component].poll() is not None:
                raise ClusterError(
                    f"{component} exited with {self.procs[component].returncode} while waiting "
                    f"for {what}:\n{self._tail(component)}"
                )
            try:
                if check():
                    return
            except Exception as e:  # noqa: BLE001 - not up yet
                last = e
            time.sleep(0.3)
        tail = self._tail(component) if component else ""
        raise ClusterError(f"timed out after {timeout}s waiting for {what} (last error: {last})\n{tail}")

    def _tail(self, component: str, lines: int = 40) -> str:
        try:
            text = self.log_file(component).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- last lines of {self.log_file(component)}:\n" + "\n".join(text[-lines:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="A Kubernetes control plane with a process kubelet, on loopback."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the cluster, print the kubeconfig path, stay in the foreground")
    up.add_argument("--state-dir", help="keep state here (default: a temporary directory, removed on exit)")
    up.add_argument("--nodes", help="JSON file: a list of {name, labels, taints, capacity}")
    up.add_argument("--rbac", action="store_true", help="authorization mode RBAC instead of AlwaysAllow")
    up.add_argument("--no-mount-namespaces", action="store_true", help="run pods without unshare -m")
    args = ap.parse_args(argv)
    nodes = json.loads(Path(args.nodes).read_text()) if args.nodes else None
    kc = KubeCluster(
        nodes=nodes,
        state_dir=args.state_dir,
        rbac=args.rbac,
        mount_namespaces=False if args.no_mount_namespaces else None,
        keep_state=bool(args.state_dir),
    )
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with kc:
        print(kc.kubeconfig, flush=True)
        print(
            f"# cluster up in {kc.startup_seconds:.1f}s: export KUBECONFIG={kc.kubeconfig}  "
            f"(state {kc.dir}, logs {kc.dir / 'logs'}); Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while not stop["now"]:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The real control plane + process kubelet: scheduling, Jobs, logs, env, volumes.

Needs the binaries from ``services/kube/build.sh`` (CI runs it first); skipped when
they are not built.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.kube.cluster import KubeCluster, binaries_missing  # noqa: E402

pytestmark = pytest.mark.skipif(
    bool(binaries_missing()),
    reason=f"kube binaries not built ({binaries_missing()}): run services/kube/build.sh",
)

NS = "kt"
PY = sys.executable  # the venv's python, as "python" in a pod resolves via PATH too


@pytest.fixture(scope="module")
def kc() -> Iterator[KubeCluster]:
    with KubeCluster() as cluster:
        cluster.create_namespace(NS)
        yield cluster


@pytest.fixture(scope="module")
def core(kc: KubeCluster) -> Any:
    return kc.core_v1()


@pytest.fixture(scope="module")
def batch(kc: KubeCluster) -> Any:
    return kc.batch_v1()


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def job_body(job_name: str, node_selector: dict[str, str], command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": node_selector,
                    "containers": [{"name": "main", "image": "stepflow/none", "command": command}],
                }
            },
        },
    }


def job_pods(core: Any, job_name: str) -> list[Any]:
    return core.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={job_name}").items


def pod_log(core: Any, pod_name: str, **kw: Any) -> str:
    # kubernetes-client 36 returns str(bytes) ("b'...'") for text bodies unless we decode ourselves
    return core.read_namespaced_pod_log(pod_name, NS, _preload_content=False, **kw).data.decode()


def pod_phase(core: Any, pod_name: str) -> str:
    return core.read_namespaced_pod(pod_name, NS).status.phase


def test_nodes_are_the_pools(core: Any) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"cpu-a", "cpu-b", "docling-a", "gpu-b"}
    assert nodes["docling-a"].metadata.labels["stepflow.io/pool"] == "docling"
    assert nodes["gpu-b"].metadata.labels["topology.kubernetes.io/zone"] == "zone-b"
    assert [t.key for t in nodes["gpu-b"].spec.taints or []] == ["nvidia.com/gpu"]
    lease = wait_for(lambda: _lease(core, "cpu-a"), 30, "node lease")
    assert lease.spec.holder_identity == "cpu-a"


def _lease(core: Any, node: str) -> Any:
    from kubernetes import client

    try:
        return client.CoordinationV1Api(core.api_client).read_namespaced_lease(node, "kube-node-lease")
    except client.ApiException:
        return None


def test_job_on_docling_pool(core: Any, batch: Any) -> None:
    jn = name("hello")
    batch.create_namespaced_job(
        NS, job_body(jn, {"stepflow.io/pool": "docling"}, ["python", "-c", "print('hi')"])
    )

    def complete() -> bool:
        conds = batch.read_namespaced_job_status(jn, NS).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conds)

    wait_for(complete, 90, f"job {jn} Complete")
    job = batch.read_namespaced_job_status(jn, NS)
    assert job.status.succeeded == 1
    [pod] = job_pods(core, jn)
    assert pod.spec.node_name == "docling-a"
    assert pod.status.phase == "Succeeded"
    assert pod.status.pod_ip == "127.0.0.1"
    [cs] = pod.status.container_statuses
    assert cs.state.terminated.exit_code == 0
    # logs through the API server (kubelet log endpoint) and the log file the annotation names
    assert pod_log(core, pod.metadata.name) == "hi\n"
    assert pod_log(core, pod.metadata.name, container="main", tail_lines=1) == "hi\n"
    log_dir = pod.metadata.annotations["stepflow.io/log-dir"]
    assert "hi" in (Path(log_dir) / "main.log").read_text()


def test_failing_job_reports_exit_code(core: Any, batch: Any) -> None:
    jn = name("fails")
    batch.create_namespaced_job(
        NS, job_body(jn, {"stepflow.io/pool": "cpu"}, ["python", "-c", "import sys; sys.exit(3)"])
    )

    def failed() -> bool:
        conds = batch.read_namespaced_job_status(jn, NS).status.conditions or []
        return any(c.type == "Failed" and c.status == "True" for c in conds)

    wait_for(failed, 90, f"job {jn} Failed")
    [pod] = job_pods(core, jn)
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_job_without_matching_node_stays_pending(core: Any, batch: Any) -> None:
    jn = name("nowhere")
    batch.create_namespaced_job(NS, job_body(jn, {"stepflow.io/pool": "tpu"}, ["python", "-c", "print(1)"]))
    pods = wait_for(lambda: job_pods(core, jn), 30, "job pod")

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod(pods[0].metadata.name, NS)
        for c in pod.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return pod
        return None

    pod = wait_for(unschedulable, 30, "PodScheduled=False/Unschedulable")
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name
    time.sleep(2)
    assert pod_phase(core, pod.metadata.name) == "Pending"
    batch.delete_namespaced_job(jn, NS, propagation_policy="Background")


def test_gpu_taint_needs_toleration(core: Any) -> None:
    def pod(pn: str, tolerate: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "nodeSelector": {"stepflow.io/pool": "gpu"},
            "containers": [
                {
                    "name": "main",
                    "image": "x",
                    "command": ["python", "-c", "print('gpu')"],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        }
        if tolerate:
            spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pn}, "spec": spec}

    bad, good = name("gpu-no-tol"), name("gpu-tol")
    core.create_namespaced_pod(NS, pod(bad, False))
    core.create_namespaced_pod(NS, pod(good, True))
    wait_for(lambda: pod_phase(core, good) == "Succeeded", 60, "tolerating gpu pod Succeeded")
    assert core.read_namespaced_pod(good, NS).spec.node_name == "gpu-b"
    bad_pod = core.read_namespaced_pod(bad, NS)
    assert bad_pod.status.phase == "Pending" and not bad_pod.spec.node_name
    for pn in (bad, good):
        core.delete_namespaced_pod(pn, NS)


def test_pod_affinity_match_label_keys(core: Any) -> None:
    run = uuid.uuid4().hex[:6]

    def pod(pn: str, group: str, node: str | None = None, follow: bool = False) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"stepflow.io/pool": "cpu", **({"kubernetes.io/hostname": node} if node else {})},
            "containers": [{"name": "main", "image": "x", "command": ["sleep", "120"]}],
        }
        if follow:
            spec["affinity"] = {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {"app": f"aff-{run}"}},
                            "matchLabelKeys": ["group"],
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pn, "labels": {"app": f"aff-{run}", "group": group}},
            "spec": spec,
        }

    decoy, peer, follower = name("decoy"), name("peer"), name("follower")
    core.create_namespaced_pod(NS, pod(decoy, "g2", node="cpu-b"))
    core.create_namespaced_pod(NS, pod(peer, "g1", node="cpu-a"))
    for pn in (decoy, peer):
        wait_for(lambda pn=pn: pod_phase(core, pn) == "Running", 60, f"{pn} Running")
    core.create_namespaced_pod(NS, pod(follower, "g1", follow=True))
    wait_for(lambda: core.read_namespaced_pod(follower, NS).spec.node_name, 60, "follower scheduled")
    created = core.read_namespaced_pod(follower, NS)
    assert created.spec.node_name == "cpu-a"  # with its g1 peer, not with the g2 decoy on cpu-b
    # the API server merged matchLabelKeys into the selector (MatchLabelKeysInPodAffinity, GA)
    term = created.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution[0]
    assert any(e.key == "group" and e.values == ["g1"] for e in term.label_selector.match_expressions or [])
    wait_for(lambda: pod_phase(core, follower) == "Running", 60, "follower Running")
    for pn in (decoy, peer, follower):
        core.delete_namespaced_pod(pn, NS)
    for pn in (decoy, peer, follower):
        wait_for(lambda pn=pn: not _exists(core, pn), 30, f"{pn} deleted")


def _exists(core: Any, pn: str) -> bool:
    from kubernetes import client

    try:
        core.read_namespaced_pod(pn, NS)
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


def _run_pod(core: Any, pn: str, spec: dict[str, Any], timeout: float = 60) -> str:
    core.create_namespaced_pod(
        NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pn}, "spec": spec}
    )
    wait_for(lambda: pod_phase(core, pn) in ("Succeeded", "Failed"), timeout, f"{pn} finished")
    out = pod_log(core, pn)
    assert pod_phase(core, pn) == "Succeeded", out
    return out


def test_env_from_secret_and_configmap(core: Any) -> None:
    sec, cm = name("sec"), name("cm")
    core.create_namespaced_secret(NS, {"metadata": {"name": sec}, "stringData": {"token": "s3cr3t-value"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": cm}, "data": {"MODE": "batch", "LEVEL": "7"}})
    script = (
        "import os; print('TOKEN=' + os.environ['TOKEN']); print('MODE=' + os.environ['CFG_MODE']); "
        "print('LEVEL=' + os.environ['LEVEL']); print('POD=' + os.environ['POD']); "
        "print('GREETING=' + os.environ['GREETING']); print('CWD=' + os.getcwd())"
    )
    out = _run_pod(
        core,
        name("env"),
        {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "x",
                    "command": ["python", "-c", script],
                    "envFrom": [{"configMapRef": {"name": cm}, "prefix": "CFG_"}],
                    "env": [
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": sec, "key": "token"}}},
                        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "LEVEL"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "GREETING", "value": "hello $(POD)"},
                    ],
                }
            ],
        },
    )
    assert "TOKEN=s3cr3t-value" in out
    assert "MODE=batch" in out and "LEVEL=7" in out
    assert "GREETING=hello env-" in out
    assert f"CWD={ROOT}" in out  # no workingDir: the project directory


needs_mount_ns = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")


@needs_mount_ns
def test_volumes_are_mounted(core: Any) -> None:
    sec, cm = name("vsec"), name("vcm")
    core.create_namespaced_secret(NS, {"metadata": {"name": sec}, "stringData": {"password": "pw-123"}})
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": cm}, "data": {"dagster.yaml": "run_launcher: {}\n"}}
    )
    script = (
        "import os; print(open('/opt/stepflow-kt/home/dagster.yaml').read().strip()); "
        "print(open('/run/stepflow-kt/secret/password').read()); "
        "print('SUBPATH', open(os.environ['DAGSTER_HOME'] + '/dagster.yaml').read().strip()); "
        "open('/run/stepflow-kt/scratch/x', 'w').write('1'); "
        "print('SCRATCH', os.listdir('/run/stepflow-kt/scratch')); "
        "print('CWD=' + os.getcwd(), sorted(os.listdir('.'))[:50])"
    )
    out = _run_pod(
        core,
        name("vol"),
        {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "home", "configMap": {"name": cm}},
                {"name": "sec", "secret": {"secretName": sec}},
                {"name": "scratch", "emptyDir": {}},
            ],
            "containers": [
                {
                    "name": "main",
                    "image": "x",
                    "command": ["python", "-c", script],
                    # absent here: the project checkout is mounted there
                    "workingDir": "/opt/stepflow-kt/app",
                    "env": [{"name": "DAGSTER_HOME", "value": "/opt/stepflow-kt/dh"}],
                    "volumeMounts": [
                        {"name": "home", "mountPath": "/opt/stepflow-kt/home", "readOnly": True},
                        # as K8sRunLauncher mounts the instance ConfigMap: one file through subPath
                        {
                            "name": "home",
                            "mountPath": "/opt/stepflow-kt/dh/dagster.yaml",
                            "subPath": "dagster.yaml",
                        },
                        {"name": "sec", "mountPath": "/run/stepflow-kt/secret"},
                        {"name": "scratch", "mountPath": "/run/stepflow-kt/scratch"},
                    ],
                }
            ],
        },
    )
    assert "run_launcher: {}" in out
    assert "pw-123" in out
    assert "SUBPATH run_launcher: {}" in out
    assert "SCRATCH ['x']" in out
    assert "CWD=/opt/stepflow-kt/app" in out and "'pyproject.toml'" in out
    # nothing leaked into the host's view of those paths
    assert not os.path.exists("/run/stepflow-kt/scratch/x")


@needs_mount_ns
def test_in_cluster_client(core: Any) -> None:
    """The service account token volume + KUBERNETES_SERVICE_* let a pod use the API."""
    script = (
        "from kubernetes import client, config; config.load_incluster_config(); "
        "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read(); "
        "print('NS=' + ns, len(client.CoreV1Api().list_namespaced_pod(ns).items) > 0)"
    )
    out = _run_pod(
        core,
        name("incluster"),
        {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "x", "command": ["python", "-c", script]}],
        },
    )
    assert f"NS={NS} True" in out


def test_deleted_pod_process_is_killed(core: Any) -> None:
    pn = name("sleeper")
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pn},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "main", "image": "x", "command": ["sleep", "300"]}],
            },
        },
    )
    wait_for(lambda: pod_phase(core, pn) == "Running", 60, "sleeper Running")
    pid = int(core.read_namespaced_pod(pn, NS).status.container_statuses[0].container_id.split("//")[1])
    assert _alive(pid)
    core.delete_namespaced_pod(pn, NS)
    wait_for(lambda: not _exists(core, pn), 30, "pod gone")
    wait_for(lambda: not _alive(pid), 10, "process killed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_follow_logs(core: Any) -> None:
    pn = name("follow")
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pn},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "x",
                        "command": [
                            "python",
                            "-u",
                            "-c",
                            "import time\nfor i in range(3):\n    print('line', i); time.sleep(0.5)",
                        ],
                    }
                ],
            },
        },
    )
    wait_for(lambda: pod_phase(core, pn) != "Pending", 60, "follow pod started")
    resp = core.read_namespaced_pod_log(pn, NS, follow=True, timestamps=True, _preload_content=False)
    text = b"".join(resp.stream()).decode()
    lines = [line for line in text.splitlines() if line]
    assert [line.split(" ", 1)[1] for line in lines] == ["line 0", "line 1", "line 2"], text
    assert lines[0][:2] == "20" and "T" in lines[0].split(" ", 1)[0]


def test_restart_on_failure(core: Any, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    script = (
        f"import os, sys; p = {str(marker)!r}\n"
        "if os.path.exists(p): print('second'); sys.exit(0)\n"
        "open(p, 'w')\nsys.exit(1)"
    )
    pn = name("retry")
    out = _run_pod(
        core,
        pn,
        {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "main", "image": "x", "command": ["python", "-c", script]}],
        },
    )
    assert "second" in out
    cs = core.read_namespaced_pod(pn, NS).status.container_statuses[0]
    assert cs.restart_count == 1
    assert cs.last_state.terminated.exit_code == 1

"""Node-pool config, the K8s translator's op tags, the co-location terms, and the pod specs that our
step handler builds (dagster-k8s's own construct path, with a mocked Kubernetes API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import dagster as dg
import pytest
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.step_delegating import StepHandlerContext
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s.container_context import K8sContainerContext

from stepflow_dagster.defs.io_manager import JsonIOManager
from stepflow_dagster.defs.jobs import flow_job
from stepflow_dagster.defs.resources import LangflowRun
from stepflow_dagster.flow import load_flow
from stepflow_dagster.k8s import K8sTranslator, PlacementConfig, load_placement
from stepflow_dagster.k8s.colocate import Colocation, affinity
from stepflow_dagster.k8s.executor import StepflowK8sStepHandler, stepflow_k8s_executor
from stepflow_dagster.k8s.placement import PlacementError
from stepflow_dagster.plan import plan_flow

from .flows import write_pools_flow

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def pools_plan(tmp_path: Path, name: str = "pools") -> Any:
    return plan_flow(load_flow(write_pools_flow(tmp_path, name)))


def k8s_tag(tags: Any) -> dict[str, Any]:
    return json.loads(tags["dagster-k8s/config"])


# ----------------------------------------------------------------- placement


def test_shipped_pools_place_by_category(tmp_path: Path) -> None:
    plan = pools_plan(tmp_path)
    t = K8sTranslator(load_placement())
    pools = {s.name: t.get_op_tags(plan, s)["stepflow/pool"] for s in plan.steps}
    assert pools == {
        "TextInput_in001": "cpu",
        "DoclingProbe_dcl01": "docling",
        "EmbeddingProbe_emb01": "gpu",
        "Tag_tag01": "cpu",
        "ChatOutput_out01": "cpu",
    }
    gpu = k8s_tag(t.get_op_tags(plan, plan.step("EmbeddingProbe_emb01")))
    assert gpu["pod_spec_config"]["node_selector"] == {"stepflow.io/pool": "gpu"}
    assert gpu["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["pod_template_spec_metadata"]["labels"] == {"stepflow.io/pool": "gpu"}
    assert t.get_job_tags(plan)["stepflow/uses-gpu"] == "true"


OPENRAG = FLOWS / "openrag_ingestion.json"
OPENRAG_POOLS = {"DoclingRemote_Dp3PX": "docling", "EmbeddingModel_eZ6bT": "gpu"}  # the rest: cpu


def test_openrag_export_places_docling_and_embeddings(tmp_path: Path) -> None:
    """The real export's plan: its Docling step on docling, its embeddings step on gpu, the rest on cpu,
    each with its pool's resources; from the component types, not from test names."""
    plan = plan_flow(load_flow(OPENRAG))
    t = K8sTranslator(load_placement())
    tags = {s.name: t.get_op_tags(plan, s) for s in plan.steps}
    assert {k: v["stepflow/pool"] for k, v in tags.items()} == {
        s.name: OPENRAG_POOLS.get(s.name, "cpu") for s in plan.steps
    }
    assert plan.step("DoclingRemote_Dp3PX").component_type == "DoclingRemote"
    assert plan.step("EmbeddingModel_eZ6bT").component_type == "EmbeddingModel"
    docling = k8s_tag(tags["DoclingRemote_Dp3PX"])
    assert docling["container_config"]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}
    assert docling["pod_spec_config"] == {"node_selector": {"stepflow.io/pool": "docling"}}
    gpu = k8s_tag(tags["EmbeddingModel_eZ6bT"])
    assert gpu["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["pod_spec_config"]["tolerations"][0]["effect"] == "NoSchedule"
    cpu = k8s_tag(tags["ExportDoclingDocument_zZdRg"])
    assert cpu["container_config"]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert {k: v for k, v in t.get_job_tags(plan).items() if "uses-" in k} == {
        f"stepflow/uses-{p}": "true" for p in ("cpu", "docling", "gpu")
    }


def test_code_location_gives_batch_runs_their_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """definitions.py with STEPFLOW_EXECUTOR=k8s: the sensor's batch job runs our executor, its ops
    carry their pools and the job the pools it uses (the run queue's tag limits)."""
    import importlib.util

    monkeypatch.setenv("STEPFLOW_EXECUTOR", "k8s")
    spec = importlib.util.spec_from_file_location("k8s_code_location", FLOWS.parent / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a module of its own: `definitions` stays as it was
    defs = module.defs
    job = defs.resolve_job_def("opensearch_ingestion_flow_documents")
    assert job.executor_def is stepflow_k8s_executor
    assert job.tags["stepflow/uses-gpu"] == "true"
    # The sink asset is a graph of the flow's ops.
    pools = {op.name.split("__")[-1]: op.tags["stepflow/pool"] for op in job.graph.iterate_op_defs()}
    assert len(pools) == 13
    assert {k: v for k, v in pools.items() if v != "cpu"} == OPENRAG_POOLS


def test_defs_never_imports_k8s() -> None:
    """One-way: k8s builds on defs; the code location picks the k8s pieces and passes them in."""
    import ast

    for path in sorted((FLOWS.parent / "stepflow_dagster" / "defs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert "k8s" not in module.split("."), f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert not any("k8s" in a.name for a in node.names), f"{path.name} imports k8s"


def test_overrides_per_flow_and_node(tmp_path: Path) -> None:
    plan = pools_plan(tmp_path)
    config = PlacementConfig.from_dict(
        {
            "pools": {"cpu": {}, "big": {"node_selector": {"size": "big"}}, "gpu": {}},
            "rules": [{"component_type": "tag*", "pool": "gpu"}],
            "nodes": {"TextInput-in001": "big"},
            "default_pool": "cpu",
            "flows": {
                "pools": {
                    "nodes": {"ChatOutput-out01": "big"},
                    "rules": [{"category": "docling", "pool": "big"}],
                }
            },
        }
    )
    pool = {s.name: config.pool_for(plan, s).name for s in plan.steps}
    assert pool == {
        "TextInput_in001": "big",  # global node override
        "DoclingProbe_dcl01": "big",  # the flow's rule
        "EmbeddingProbe_emb01": "cpu",  # no rule: default
        "Tag_tag01": "gpu",  # global rule, a glob on the component type
        "ChatOutput_out01": "big",  # the flow's node override
    }


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"default_pool": "cpu"}, "pools"),
        ({"pools": {"cpu": {}}}, "default_pool"),
        ({"pools": {"cpu": {}}, "default_pool": "gpu"}, "unknown pool 'gpu'"),
        ({"pools": {"cpu": {"selector": {}}}, "default_pool": "cpu"}, "unknown keys ['selector']"),
        (
            {"pools": {"cpu": {}}, "default_pool": "cpu", "rules": [{"category": "x", "pool": "cpu"}]},
            "category",
        ),
        (
            {"pools": {"cpu": {}}, "default_pool": "cpu", "flows": {"f": {"nodes": {"A-1": "no"}}}},
            "flows.f.nodes.A-1",
        ),
    ],
)
def test_invalid_config_names_the_place(doc: dict[str, Any], error: str) -> None:
    with pytest.raises(PlacementError, match=error.replace("[", r"\[")):
        PlacementConfig.from_dict(doc)


# ----------------------------------------------------------------- co-location


def test_colocation_tag_parsing() -> None:
    assert Colocation.parse("node") == Colocation("node", True)
    assert Colocation.parse("zone:preferred") == Colocation("zone", False)
    assert Colocation.parse(None, Colocation("zone", True)) == Colocation("zone", True)
    assert affinity(Colocation.parse("none")) == {}
    with pytest.raises(ValueError, match="stepflow/colocate"):
        Colocation.parse("rack")


def test_affinity_terms() -> None:
    required = affinity(Colocation("node", True))["pod_affinity"][
        "required_during_scheduling_ignored_during_execution"
    ]
    assert required[0]["match_label_keys"] == ["dagster/run-id", "stepflow.io/pool"]
    assert required[0]["topology_key"] == "kubernetes.io/hostname"
    preferred = affinity(Colocation("zone", False), ["zone-b"])
    term = preferred["pod_affinity"]["preferred_during_scheduling_ignored_during_execution"][0]
    assert (
        term["weight"] == 100 and term["pod_affinity_term"]["topology_key"] == "topology.kubernetes.io/zone"
    )
    pin = preferred["node_affinity"]["preferred_during_scheduling_ignored_during_execution"][0]
    assert pin["preference"]["match_expressions"][0]["values"] == ["zone-b"]


# ----------------------------------------------------------------- the step handler's pod specs

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "t",
    "clusters": [{"name": "t", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "t", "user": {"token": "x"}}],
    "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
}


def k8s_job_for(path: str) -> dg.JobDefinition:
    resources = {"langflow": LangflowRun(), "io_manager": JsonIOManager(base_path=str(Path(path).parent))}
    return flow_job(plan_flow(load_flow(Path(path))), K8sTranslator(), stepflow_k8s_executor, resources)


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(KUBECONFIG))
    return str(path)


@pytest.fixture
def instance(kubeconfig: str, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    launcher = {
        "module": "dagster_k8s.launcher",
        "class": "K8sRunLauncher",
        "config": {
            "load_incluster_config": False,
            "kubeconfig_file": kubeconfig,
            "service_account_name": "default",
            "instance_config_map": "dagster-instance",
            "dagster_home": str(tmp_path),
            "job_image": "stepflow-dagster:dev",
            "job_namespace": "stepflow",
        },
    }
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as inst:
        yield inst


class FakeCore:
    """Pods the handler lists: earlier pods of the run (for pinning) or a stuck one (for health)."""

    def __init__(self) -> None:
        self.pods: list[Any] = []
        self.nodes = {"cpu-a": {"topology.kubernetes.io/zone": "zone-a"}}

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> Any:
        return SimpleNamespace(items=self.pods)

    def read_node(self, name: str) -> Any:
        return SimpleNamespace(metadata=SimpleNamespace(labels=self.nodes[name]))

    def list_namespaced_event(self, namespace: str, field_selector: str = "") -> Any:
        return SimpleNamespace(items=[])

    def delete_namespaced_pod(self, name: str, namespace: str) -> None:
        self.deleted = name


def launch(
    instance: dg.DagsterInstance, kubeconfig: str, flow: Path, step: str, tags: dict[str, str], core: FakeCore
) -> tuple[Any, StepflowK8sStepHandler, StepHandlerContext]:
    recon = dg.build_reconstructable_job(__name__, "k8s_job_for", reconstructable_args=(str(flow),))
    job_def = recon.get_definition()
    run = instance.create_run_for_job(job_def, tags=tags)
    plan = create_execution_plan(recon)
    batch = mock.MagicMock()
    batch.read_namespaced_job_status.return_value = SimpleNamespace(status=SimpleNamespace(failed=0))
    handler = StepflowK8sStepHandler(
        image=None,
        container_context=K8sContainerContext(),
        load_incluster_config=False,
        kubeconfig_file=kubeconfig,
        k8s_client_batch_api=batch,
        k8s_client_core_api=core,
        unschedulable_timeout=30,
    )
    executor = mock.MagicMock()
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(recon, run, instance, plan, raise_on_error=True, retry_mode=RetryMode.DISABLED),
        log_manager=create_context_free_log_manager(instance, run),
        executor=executor,
        output_capture=None,
    )
    ctx = StepHandlerContext(
        instance=instance,
        plan_context=plan_context,
        steps=plan.steps,
        execute_step_args=ExecuteStepArgs(recon.get_python_origin(), run.run_id, [step]),
        dagster_run=run,
    )
    list(handler.launch_step(ctx))
    body = batch.create_namespaced_job.call_args.kwargs["body"]
    return body.spec.template, handler, ctx


def test_pod_spec_carries_pool_and_run_scoped_affinity(
    instance: dg.DagsterInstance, kubeconfig: str, tmp_path: Path
) -> None:
    flow = write_pools_flow(tmp_path / "flows")
    core = FakeCore()
    # An earlier cpu pod of this run ran on cpu-a: later cpu pods are pinned there.
    core.pods = [SimpleNamespace(spec=SimpleNamespace(node_name="cpu-a"))]
    template, _, ctx = launch(
        instance, kubeconfig, flow, "Tag_tag01", {"stepflow/colocate": "zone:required"}, core
    )
    spec = template.spec
    assert template.metadata.labels["stepflow.io/pool"] == "cpu"
    assert template.metadata.labels["dagster/run-id"] == ctx.dagster_run.run_id
    assert spec.node_selector == {"stepflow.io/pool": "cpu"}
    assert spec.containers[0].resources.requests == {"cpu": "500m", "memory": "1Gi"}
    term = spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution[0]
    assert term.match_label_keys == ["dagster/run-id", "stepflow.io/pool"]
    assert term.topology_key == "topology.kubernetes.io/zone"
    pin = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms[
        0
    ]
    assert pin.match_expressions[0].key == "topology.kubernetes.io/zone"
    assert pin.match_expressions[0].values == ["zone-a"]


def test_no_colocation_tag_means_no_affinity(
    instance: dg.DagsterInstance, kubeconfig: str, tmp_path: Path
) -> None:
    flow = write_pools_flow(tmp_path / "flows")
    template, _, _ = launch(instance, kubeconfig, flow, "EmbeddingProbe_emb01", {}, FakeCore())
    assert template.spec.affinity is None
    assert template.spec.tolerations[0].key == "nvidia.com/gpu"


def test_health_check_fails_a_pod_unschedulable_too_long(
    instance: dg.DagsterInstance, kubeconfig: str, tmp_path: Path
) -> None:
    flow = write_pools_flow(tmp_path / "flows")
    core = FakeCore()
    _, handler, ctx = launch(instance, kubeconfig, flow, "DoclingProbe_dcl01", {}, core)
    cond = SimpleNamespace(
        type="PodScheduled",
        status="False",
        reason="Unschedulable",
        message="0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector.",
        last_transition_time=datetime.now(UTC) - timedelta(seconds=10),
    )
    stuck = SimpleNamespace(
        metadata=SimpleNamespace(name="p-1", creation_timestamp=cond.last_transition_time),
        status=SimpleNamespace(phase="Pending", conditions=[cond]),
        spec=SimpleNamespace(node_name=None),
    )
    core.pods = [stuck]
    assert handler.check_step_health(ctx).is_healthy  # 10 s < 30 s
    cond.last_transition_time = datetime.now(UTC) - timedelta(seconds=31)
    result = handler.check_step_health(ctx)
    assert not result.is_healthy
    reason = result.unhealthy_reason or ""
    assert "DoclingProbe_dcl01" in reason and "node DoclingProbe-dcl01" in reason and "pool docling" in reason
    assert "didn't match Pod's node affinity/selector" in reason
    handler._api_client.batch_api.delete_namespaced_job.assert_called_once()  # the stuck Job is gone

    # The run stops: a step in flight fails at its next check (its Job deleted), none is launched.
    core.pods = []
    stopped = handler.check_step_health(ctx)
    assert not stopped.is_healthy and "stopped: step DoclingProbe_dcl01" in (stopped.unhealthy_reason or "")
    assert handler._api_client.batch_api.delete_namespaced_job.call_count == 2
    with pytest.raises(RuntimeError, match="not launching .*could not be scheduled"):
        list(handler.launch_step(ctx))

"""The `LangflowFlows` Dagster component: the real `dg` CLI against the dg project in tests/dg_project,
and the component built in process (same definitions as definitions.py, translator overrides)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components import build_defs_for_component

from stepflow_dagster import LangflowFlows
from stepflow_dagster.defs import LangflowTranslator
from stepflow_dagster.plan import FlowPlan
from tests.conftest import ROOT

PROJECT = ROOT / "tests" / "dg_project"
FLOWS = PROJECT / "dg_project" / "defs" / "langflow" / "flows"  # links to the repository's flows/
DG = Path(sys.executable).with_name("dg")  # the dg of this environment: never `uv run` (the project has
# a pyproject.toml of its own, which uv would give an environment of its own)


def dg_cli(*args: str, cwd: Path = PROJECT, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "DAGSTER_TELEMETRY_DISABLED": "1"}
    if home is not None:
        env["DAGSTER_HOME"] = str(home)
    return subprocess.run(
        [str(DG), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def names(defs: dg.Definitions) -> dict[str, set[str]]:
    """What a code location offers, by kind (Dagster's hidden `__ASSET_JOB` left out)."""
    return {
        "jobs": {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")},
        "assets": {k.to_user_string() for k in defs.resolve_all_asset_keys()},
        "checks": {
            f"{k.asset_key.to_user_string()}:{k.name}" for k in defs.resolve_asset_graph().asset_check_keys
        },
        "sensors": {s.name for s in defs.sensors or []},  # type: ignore[union-attr]
        "resources": set(defs.resources or {}),
    }


def root_definitions(monkeypatch: pytest.MonkeyPatch, flows: Path) -> dg.Definitions:
    """The repository's own code location (definitions.py) on `flows`, loaded as a module of its own."""
    monkeypatch.setenv("STEPFLOW_FLOWS_DIR", str(flows))
    spec = importlib.util.spec_from_file_location("root_code_location", ROOT / "definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


@pytest.fixture(scope="module")
def listed() -> dict[str, Any]:
    res = dg_cli("list", "defs", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_dg_list_defs_shows_the_flows(listed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = {j["name"] for j in listed["jobs"]}
    assert {"hello_world", "opensearch_ingestion_flow", "opensearch_ingestion_flow_documents"} <= jobs
    (asset,) = listed["assets"]
    assert asset["asset_key"] == "opensearch/documents" and asset["group_name"] == "stepflow"
    assert asset["kinds"] == ["langflow"]
    assert asset["source"].endswith("defs/langflow/defs.yaml:4")  # the component instance it came from
    sensors = {s["name"] for s in listed["sensors"]}
    assert "opensearch_ingestion_flow_document_drop" in sensors
    # The same names as the repository's own code location gives for the same folder.
    expected = names(root_definitions(monkeypatch, FLOWS))
    assert jobs == expected["jobs"]
    assert {a["asset_key"] for a in listed["assets"]} == expected["assets"]
    assert {c["key"] for c in listed["asset_checks"]} == expected["checks"]
    assert sensors == expected["sensors"]
    assert {r["name"] for r in listed["resources"]} == expected["resources"]


def test_dg_check_defs_passes() -> None:
    res = dg_cli("check", "defs")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "All definitions loaded successfully" in res.stdout + res.stderr


def test_dg_lists_the_component_type() -> None:
    res = dg_cli("list", "components")
    assert res.returncode == 0, res.stderr
    assert "stepflow_dagster.LangflowFlows" in res.stdout


@pytest.fixture
def project_copy(tmp_path: Path) -> Iterator[Path]:
    """The dg project copied, its flow links pointing at the repository's files."""
    copy = tmp_path / "dg_project"
    shutil.copytree(PROJECT, copy, symlinks=False)  # the copies are the files the links name
    yield copy


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        # A misspelled attribute: dg's schema check points at the line.
        (("  flows: flows", "  flowz: flows"), ["defs/langflow/defs.yaml:6", "attributes.flowz"]),
        # A deployment override of the wrong value: the file, the override and the field.
        (
            ("max_documents_per_run: 10", "max_documents_per_run: 0"),
            ["dg_project/defs/langflow/defs.yaml", "deployments.openrag_ingestion", "max_documents_per_run"],
        ),
        # An override for a flow that is not there.
        (
            ("    openrag_ingestion:", "    openrag_ingest:"),
            ["dg_project/defs/langflow/defs.yaml", "deployments: no flow file for 'openrag_ingest'"],
        ),
    ],
)
def test_a_bad_defs_yaml_names_the_file_and_field(
    project_copy: Path, edit: tuple[str, str], says: list[str]
) -> None:
    defs_yaml = project_copy / "dg_project" / "defs" / "langflow" / "defs.yaml"
    text = defs_yaml.read_text()
    assert edit[0] in text
    defs_yaml.write_text(text.replace(edit[0], edit[1]))
    res = dg_cli("check", "defs", cwd=project_copy)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for phrase in says:
        assert phrase in out, out


def test_dg_scaffolds_an_instance(project_copy: Path) -> None:
    res = dg_cli("scaffold", "defs", "stepflow_dagster.LangflowFlows", "more_flows", cwd=project_copy)
    assert res.returncode == 0, res.stdout + res.stderr
    made = project_copy / "dg_project" / "defs" / "more_flows"
    assert (made / "flows").is_dir()
    assert "type: stepflow_dagster.LangflowFlows" in (made / "defs.yaml").read_text()
    assert "flows: flows" in (made / "defs.yaml").read_text()
    res = dg_cli("check", "defs", cwd=project_copy)  # an empty flows folder: nothing more, no error
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_a_job_launched_from_the_project_succeeds(tmp_path: Path) -> None:
    """`dg launch` of the hello_world job, on the component's default executor (forkserver)."""
    config = ROOT / "tests" / "frontends" / "run_configs" / "hello_world.yaml"
    res = dg_cli("launch", "--job", "hello_world", "--config", str(config), home=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        (run,) = instance.get_runs()
        assert run.job_name == "hello_world" and run.status == dg.DagsterRunStatus.SUCCESS
        outputs = [
            e.dagster_event.step_output_data
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
            if e.dagster_event and e.step_key == "ChatOutput_boh63"
        ]
        previews = [str(m.value) for o in outputs for k, m in o.metadata.items() if k == "flow_output"]
        assert any("Hello from a run config file" in p for p in previews), previews


def test_the_component_builds_what_definitions_py_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    component = build_defs_for_component(LangflowFlows(flows=str(ROOT / "flows")))
    assert names(component) == names(root_definitions(monkeypatch, ROOT / "flows"))


def test_deployment_overrides_merge_over_the_file() -> None:
    defs = build_defs_for_component(
        LangflowFlows(
            flows=str(FLOWS),
            deployments={"openrag_ingestion": {"documents": {"max_documents_per_run": 10}}},
        )
    )
    asset = defs.resolve_assets_def(dg.AssetKey(["opensearch", "documents"]))
    assert asset.backfill_policy == dg.BackfillPolicy.multi_run(10)  # the file says 50
    sensor = defs.resolve_sensor_def("opensearch_ingestion_flow_document_drop")
    assert "STEPFLOW_DROP_DIR" in (sensor.description or "")  # the file's location stays


def test_the_default_executor_warms_with_the_overridden_deployment() -> None:
    """The forkserver's warm-up reads a run's deployment by flow file: it sees the defs.yaml overrides."""
    from stepflow_dagster.defs.executor import warm_set

    policy = {"TextInput-J1CQK": "upgrade-stock"}
    defs = build_defs_for_component(
        LangflowFlows(flows=str(FLOWS), deployments={"hello_world": {"run": {"code_policy": policy}}})
    )
    job = defs.resolve_job_def("hello_world")
    (target,) = warm_set(job, ["TextInput_J1CQK", "ChatOutput_boh63"])
    assert target["code_policy"] == policy and sorted(target["nodes"]) == [
        "ChatOutput-boh63",
        "TextInput-J1CQK",
    ]


class Renamed(LangflowTranslator):
    """One method each for the job names and the asset's key and group: everything else follows."""

    def get_job_name(self, plan: FlowPlan) -> str:
        return f"lf_{plan.name}"

    def get_asset_key(self, plan: FlowPlan, docs: Any) -> dg.AssetKey:
        return dg.AssetKey(["rag", self.get_job_name(plan)])

    def get_group_name(self, plan: FlowPlan) -> str:
        return "retrieval"


class RenamedFlows(LangflowFlows):
    def get_translator(self) -> LangflowTranslator:
        return Renamed()


def test_a_translator_override_reaches_everything_built() -> None:
    defs = build_defs_for_component(RenamedFlows(flows=str(FLOWS)))
    built = names(defs)
    flow = "lf_opensearch_ingestion_flow"
    assert built["jobs"] == {
        "lf_hello_world",
        flow,
        f"{flow}_documents",
        f"{flow}_documents_check",
        f"{flow}_removal",
    }
    assert built["assets"] == {f"rag/{flow}"}
    assert built["checks"] == {f"rag/{flow}:chunks_in_index"}
    assert f"{flow}_document_drop" in built["sensors"]
    key = dg.AssetKey(["rag", flow])
    asset = defs.resolve_assets_def(key)
    assert asset.group_names_by_key[key] == "retrieval"
    assert asset.partitions_def == dg.DynamicPartitionsDefinition(name=f"{flow}_documents")
    ops = {op.name for op in defs.resolve_job_def(flow).graph.iterate_op_defs()}
    assert ops and all(o.startswith(f"{flow}__") for o in ops)
    removal = defs.resolve_job_def(f"{flow}_removal")
    assert {op.name for op in removal.graph.iterate_op_defs()} == {f"{flow}_removal__remove"}
    sensor = defs.resolve_sensor_def(f"{flow}_document_drop")
    assert {t.job_name for t in sensor.targets} == {f"{flow}_documents", f"{flow}_removal"}


def test_a_yaml_translation_reaches_the_asset_and_its_check() -> None:
    """defs.yaml's `translation` (dagster-dbt's attribute) over the translator's asset spec."""
    component = LangflowFlows.resolve_from_yaml(
        f"""
flows: {FLOWS}
translation:
  group_name: retrieval
  key_prefix: lf
  metadata: {{job: "{{{{ plan.name }}}}"}}
"""
    )
    defs = build_defs_for_component(component)
    key = dg.AssetKey(["lf", "opensearch", "documents"])
    asset = defs.resolve_assets_def(key)
    assert asset.group_names_by_key[key] == "retrieval"
    assert asset.specs_by_key[key].metadata["job"] == "opensearch_ingestion_flow"
    assert names(defs)["checks"] == {"lf/opensearch/documents:chunks_in_index"}


def test_k8s_executor_keeps_the_users_translator() -> None:
    from stepflow_dagster.k8s import stepflow_k8s_executor

    defs = build_defs_for_component(
        RenamedFlows(
            flows=str(FLOWS), executor="k8s", placement=str(ROOT / "stepflow_dagster" / "k8s" / "pools.yaml")
        )
    )
    job = defs.resolve_job_def("lf_opensearch_ingestion_flow_documents")
    assert job.executor_def is stepflow_k8s_executor
    assert job.tags["stepflow/uses-gpu"] == "true"  # K8sTranslator's job tags
    op = next(iter(job.graph.iterate_op_defs()))
    assert op.name.startswith("lf_") and "dagster-k8s/config" in op.tags  # both translators at once


def test_the_package_import_stays_cheap() -> None:
    """`stepflow_dagster.LangflowFlows` is imported on first use: the CLI's start does not pay Dagster."""
    code = (
        "import sys, stepflow_dagster; cheap = 'dagster' not in sys.modules; "
        "print(cheap, 'LangflowFlows' in dir(stepflow_dagster), stepflow_dagster.LangflowFlows.__name__)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "True", "LangflowFlows"]

"""The Dagster definitions built from flows: structure, names, tags, config, and a cheap load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from stepflow_dagster.defs import StepflowSettings, build_definitions
from tests.conftest import ROOT, SHARED_FLOWS


def _defs(flows: Path) -> dg.Definitions:
    return build_definitions(StepflowSettings(flows_dir=flows))


def test_one_job_per_shared_flow_one_op_per_component() -> None:
    defs = _defs(SHARED_FLOWS)
    jobs = {j.name: j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert len(jobs) == len(list(SHARED_FLOWS.glob("*.json")))
    # Two exports are named "Basic Prompting", two "OpenSearch Ingestion Flow": the file tells them apart.
    assert "opensearch_ingestion_flow_openrag__ingestion_flow" in jobs
    assert "opensearch_ingestion_flow_openrag__ingestion_flow_v17" in jobs
    job = jobs["opensearch_ingestion_flow_openrag__ingestion_flow"]
    ops = {node.name: node.definition for node in job.graph.nodes}
    assert len(ops) == 13
    sink = ops["OpenSearchHybrid_Ve6bS"]
    assert sink.description.startswith(
        "OpenSearch (OpenSearchVectorStoreComponent), node OpenSearchHybrid-Ve6bS"
    )
    assert sink.tags["stepflow/node_id"] == "OpenSearchHybrid-Ve6bS"
    assert sink.tags["stepflow/component_type"] == "OpenSearchVectorStoreComponent"
    assert sink.tags["stepflow/category"] == "vector_store"
    assert set(sink.input_dict) == {"ingest_data", "embedding", "docs_metadata"}
    deps = job.graph.dependency_structure.input_to_upstream_outputs_for_node("OpenSearchHybrid_Ve6bS")
    upstream = {inp.input_name: [o.node_name for o in outs] for inp, outs in deps.items()}
    assert upstream == {
        "ingest_data": ["SplitText_QIKhg"],
        "embedding": ["EmbeddingModel_eZ6bT"],
        "docs_metadata": ["AdvancedDynamicFormBuilder_81Exw"],
    }


def test_the_project_folder_loads_as_a_code_server_loads_it() -> None:
    """flows/ with the OpenRAG deployment: a job per flow, the document asset in batches, its sensor and
    its removal job, all loadable together (names unique across the code location)."""
    defs = _defs(ROOT / "flows")
    dg.Definitions.validate_loadable(defs)
    asset = defs.resolve_assets_def(dg.AssetKey(["opensearch", "documents"]))
    assert asset.backfill_policy == dg.BackfillPolicy.multi_run(50)  # the deployment file's N
    names = {j.name for j in defs.resolve_all_job_defs()}
    assert {"opensearch_ingestion_flow_documents", "opensearch_ingestion_flow_removal"} <= names
    sensor = defs.resolve_sensor_def("opensearch_ingestion_flow_document_drop")
    assert {t.job_name for t in sensor.targets} == {
        "opensearch_ingestion_flow_documents",
        "opensearch_ingestion_flow_removal",
    }


def test_launchpad_schema_documents_the_run_inputs() -> None:
    job = _defs(ROOT / "flows").resolve_job_def("hello_world")
    fields = job.run_config_schema.config_type.fields["resources"].config_type.fields["langflow"]
    config = fields.config_type.fields["config"].config_type.fields
    assert {"input_value", "files", "variables", "tweaks"} <= set(config)
    assert "Chat Input" in (config["input_value"].description or "")


def test_loading_definitions_does_not_import_lfx() -> None:
    code = "import sys, definitions; print(len(definitions.defs.jobs), 'lfx' in sys.modules)"
    env = {**os.environ, "STEPFLOW_FLOWS_DIR": str(SHARED_FLOWS)}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    count, lfx_loaded = res.stdout.split()
    assert int(count) == len(list(SHARED_FLOWS.glob("*.json"))) and lfx_loaded == "False"


def test_a_bad_flow_in_the_folder_names_itself(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"name": "Broken", "data": {"nodes": [], "edges": []}}')
    try:
        _defs(tmp_path)
    except ValueError as exc:
        assert "flow 'Broken'" in str(exc) and "no components" in str(exc)
    else:
        raise AssertionError("a broken flow must fail the code location with its name")

"""Re-executing a failed batch run from failure re-runs only what failed: the documents it ingested stay as
they are (same chunks, not written again), the one that failed is tried again and reported again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from opensearchpy import OpenSearch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
KEY = dg.AssetKey(["opensearch", "documents"])


def ingestion_job() -> dg.JobDefinition:
    """The project's ingestion asset job, rebuilt by Dagster for a re-execution (reconstructable)."""
    from stepflow_dagster.defs import StepflowSettings, build_definitions

    flows = Path(os.environ["STEPFLOW_TEST_FLOWS"])
    settings = StepflowSettings(
        flows_dir=flows, executor="in_process", storage=os.environ["STEPFLOW_STORAGE"]
    )
    return build_definitions(settings).resolve_job_def("opensearch_ingestion_flow_documents")


def chunk_ids(client: OpenSearch, index: str) -> dict[str, set[str]]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 100, "_source": ["filename"]})["hits"]["hits"]
    found: dict[str, set[str]] = {}
    for hit in hits:
        found.setdefault(hit["_source"]["filename"], set()).add(hit["_id"])
    return found


def test_reexecution_from_failure_reruns_only_what_failed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    opensearch_url: str,
    docling_url: str,
    embeddings_base_url: str,
) -> None:
    flows, drop = tmp_path / "flows", tmp_path / "drop"
    flows.mkdir()
    for name in ("openrag_ingestion.json", "openrag_ingestion.yaml"):
        shutil.copy(ROOT / "flows" / name, flows / name)
    for i in range(3):
        (drop / "notes").mkdir(parents=True, exist_ok=True)
        (drop / "notes" / f"n{i}.md").write_text(f"# Note {i}\n\nA short note about rivers number {i}.\n")
    (drop / "zz_broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    index = "test_reexecution"
    for name, value in {
        "STEPFLOW_TEST_FLOWS": str(flows),
        "STEPFLOW_STORAGE": str(tmp_path / "io"),
        "STEPFLOW_DROP_DIR": str(drop),
        "OPENSEARCH_URL": opensearch_url,
        "OPENSEARCH_INDEX": index,
        "DOCLING_URL": docling_url,
        "OPENAI_BASE_URL": embeddings_base_url,
        "OPENAI_API_KEY": "sk-local-stand-in-key-not-checked",
    }.items():
        monkeypatch.setenv(name, value)
    documents = ["notes/n0.md", "notes/n1.md", "notes/n2.md", "zz_broken.pdf"]
    job = dg.reconstructable(ingestion_job)
    client = OpenSearch(hosts=[opensearch_url])
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions("opensearch_ingestion_flow_documents", documents)
        tags = {ASSET_PARTITION_RANGE_START_TAG: documents[0], ASSET_PARTITION_RANGE_END_TAG: documents[-1]}
        with dg.execute_job(job, instance=instance, tags=tags) as first:
            assert not first.success
            first_id = first.run_id
        ids = chunk_ids(client, index)
        assert sorted(ids) == documents[:3]

        options = dg.ReexecutionOptions.from_failure(first_id, instance)
        with dg.execute_job(job, instance=instance, reexecution_options=options, tags=tags) as again:
            assert not again.success  # the PDF still cannot be converted
            started = {e.step_key for e in again.all_events if e.is_step_start}
            failed = [e for e in again.all_events if e.is_step_failure]
        # Only the sink ran again, and it wrote nothing for the documents already in: same chunk ids.
        assert [s.rsplit(".", 1)[-1] for s in started] == ["OpenSearchHybrid_Ve6bS"]
        assert chunk_ids(client, index) == ids
        assert "zz_broken.pdf" in failed[0].event_specific_data.error.message
        status = instance.get_status_by_partition(
            KEY, documents, dg.DynamicPartitionsDefinition(name="opensearch_ingestion_flow_documents")
        )
        assert status is not None
        assert {d: s.value for d, s in status.items() if s} == {
            **dict.fromkeys(documents[:3], "MATERIALIZED"),
            "zz_broken.pdf": "FAILED",
        }

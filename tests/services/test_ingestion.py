"""The OpenRAG ingestion flows, unmodified, ingesting real documents through Dagster into real services.

Docling Serve converts, the local OpenAI-compatible endpoint embeds with all-MiniLM-L6-v2, OpenSearch
(k-NN, lucene) stores; every assertion reads OpenSearch itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from opensearchpy import OpenSearch

from stepflow_dagster.defs import StepflowSettings, build_definitions
from tests.conftest import ROOT, shared_flow

CORPUS = ROOT / "flows" / "samples" / "openrag"
FIRST_SENTENCES = {
    "volcanoes.html": "Volcanoes form where molten rock from the mantle rises through the crust",
    "honeybees.docx": "Honeybees live in colonies of tens of thousands of workers serving a single queen",
    "chess.md": "Chess openings such as the Sicilian Defence fight for the centre of the board",
    "tides.pdf": "Ocean tides rise and fall twice a day because the Moon's gravity pulls the water",
}
MIMETYPES = {
    "volcanoes.html": "text/html",
    "honeybees.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "chess.md": "text/markdown",
    "tides.pdf": "application/pdf",
}
pytestmark = pytest.mark.slow


@pytest.fixture
def deployment_env(
    monkeypatch: pytest.MonkeyPatch,
    opensearch_url: str,
    docling_url: str,
    embeddings_base_url: str,
    tmp_path: Path,
) -> Path:
    drop = tmp_path / "drop"
    shutil.copytree(CORPUS, drop)
    monkeypatch.setenv("OPENSEARCH_URL", opensearch_url)
    monkeypatch.setenv("DOCLING_URL", docling_url)
    monkeypatch.setenv("OPENAI_BASE_URL", embeddings_base_url)
    monkeypatch.setenv("OLLAMA_BASE_URL", embeddings_base_url.removesuffix("/v1"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-stand-in-key-not-checked")
    monkeypatch.setenv("STEPFLOW_DROP_DIR", str(drop))
    return drop


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as inst:
        yield inst


def ingestion_defs(tmp_path: Path, flow: Path, deployment: Path) -> dg.Definitions:
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(flow, flows / "ingestion.json")  # byte for byte: the export is not edited
    shutil.copy(deployment, flows / "ingestion.yaml")
    return build_definitions(
        StepflowSettings(flows_dir=flows, executor="in_process", storage=str(tmp_path / "io"))
    )


def ingest(
    defs: dg.Definitions, instance: dg.DagsterInstance, documents: list[str]
) -> dict[str, dict[str, Any]]:
    """Materialize one partition per document, in one batch run (one document: a run of that partition);
    returns each document's materialization metadata."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    job = next(j for j in defs.jobs if j.name.endswith("_documents"))
    partitions = defs.resolve_job_def(job.name).partitions_def
    assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name
    new = [d for d in documents if d not in instance.get_dynamic_partitions(partitions.name)]
    instance.add_dynamic_partitions(partitions.name, new)
    if len(documents) == 1:
        kwargs: dict[str, Any] = {"partition_key": documents[0]}
    else:
        kwargs = {
            "tags": {
                ASSET_PARTITION_RANGE_START_TAG: documents[0],
                ASSET_PARTITION_RANGE_END_TAG: documents[-1],
            }
        }
    result = defs.resolve_job_def(job.name).execute_in_process(instance=instance, **kwargs)
    assert result.success
    found = {}
    for mat in [e.materialization for e in result.get_asset_materialization_events()]:
        assert mat.partition is not None
        found[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    assert sorted(found) == sorted(documents)
    return found


def check_passes(defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[bool, dict[str, Any]]:
    """The asset check: every document's chunks are in the index; and the documents that differ."""
    job = next(j for j in defs.jobs if j.name.endswith("_documents_check"))
    result = defs.resolve_job_def(job.name).execute_in_process(instance=instance)
    [evaluation] = result.get_asset_check_evaluations()
    return bool(evaluation.passed), evaluation.metadata["differ"].value  # type: ignore[return-value]


def chunks(client: OpenSearch, index: str, filename: str) -> list[dict[str, Any]]:
    client.indices.refresh(index=index)
    body = {"query": {"term": {"filename": filename}}, "size": 1000}
    return [h["_source"] for h in client.search(index=index, body=body)["hits"]["hits"]]


def knn_first(client: OpenSearch, index: str, field: str, vector: list[float]) -> str:
    body = {"size": 1, "query": {"knn": {field: {"vector": vector, "k": 3}}}, "_source": ["filename"]}
    return str(client.search(index=index, body=body)["hits"]["hits"][0]["_source"]["filename"])


def embed(base_url: str, text: str) -> list[float]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="stand-in")
    return client.embeddings.create(model="text-embedding-3-small", input=text).data[0].embedding


@pytest.mark.parametrize(
    ("flow", "deployment", "owner_fields"),
    [
        (ROOT / "flows/openrag_ingestion.json", ROOT / "flows/openrag_ingestion.yaml", ()),
        (
            shared_flow("openrag__ingestion_flow_v17.json"),
            ROOT / "tests/flows/openrag_ingestion_v17.yaml",
            ("source_url",),
        ),
    ],
    ids=["openrag-1.6", "openrag-1.7"],
)
def test_openrag_ingestion_into_opensearch(
    flow: Path,
    deployment: Path,
    owner_fields: tuple[str, ...],
    deployment_env: Path,
    instance: dg.DagsterInstance,
    opensearch_url: str,
    embeddings_base_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    index = f"test_{request.node.callspec.id.replace('.', '_').replace('-', '_')}"
    monkeypatch.setenv("OPENSEARCH_INDEX", index)
    monkeypatch.setenv("OPENRAG_OWNER", "owner-42")
    defs = ingestion_defs(tmp_path, flow, deployment)
    metadata = ingest(defs, instance, sorted(FIRST_SENTENCES))
    client = OpenSearch(hosts=[opensearch_url])
    field = "chunk_embedding_text_embedding_3_small"
    for doc, sentence in FIRST_SENTENCES.items():
        stored = chunks(client, index, doc)
        # Every chunk Split Text made is in the index, once; the document's text is all there.
        assert len(stored) == metadata[doc]["dagster/row_count"] >= 1, doc
        assert metadata[doc]["index"] == index and metadata[doc]["document"] == doc
        assert sentence.split()[0] in " ".join(c["text"] for c in stored)
        for chunk in stored:
            assert chunk["filename"] == doc and chunk["mimetype"] == MIMETYPES[doc]
            assert int(chunk["file_size"]) == (deployment_env / doc).stat().st_size
            assert (chunk["owner"], chunk["connector_type"]) == ("owner-42", "local")
            assert chunk["owner_email"] and chunk["owner_name"] and chunk["document_id"]
            assert chunk["embedding_model"] == "text-embedding-3-small" and len(chunk[field]) == 384
            for extra in owner_fields:
                assert chunk[extra] == str(deployment_env / doc)
        assert knn_first(client, index, field, embed(embeddings_base_url, sentence)) == doc
    total = client.count(index=index)["count"]
    assert total == sum(m["dagster/row_count"] for m in metadata.values())

    # A changed document is ingested again: its chunks are replaced, not added to.
    changed = deployment_env / "chess.md"
    changed.write_text("# Chess\n\nThe queen is the most powerful piece on the chess board.\n")
    again = ingest(defs, instance, ["chess.md"])
    stored = chunks(client, index, "chess.md")
    assert len(stored) == again["chess.md"]["dagster/row_count"] == 1
    assert "most powerful piece" in stored[0]["text"]
    assert client.count(index=index)["count"] == total - metadata["chess.md"]["dagster/row_count"] + 1

    # The asset check passes while every document's chunks are there, and names the one that lost them.
    assert check_passes(defs, instance) == (True, {})
    body = {"query": {"term": {"filename": "volcanoes.html"}}}
    client.delete_by_query(index=index, body=body, params={"refresh": "true"})
    written = metadata["volcanoes.html"]["dagster/row_count"]
    assert check_passes(defs, instance) == (False, {"volcanoes.html": {"written": written, "in_index": 0}})


def test_ingest_command_and_search_script(
    deployment_env: Path, opensearch_url: str, embeddings_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's main command, on two of the bundled documents: ingest a folder, then ask a question."""
    import subprocess
    import sys

    folder = deployment_env.parent / "two"
    folder.mkdir()
    for name in ("honeybees.docx", "tides.pdf"):
        shutil.copy(deployment_env / name, folder / name)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
        "OPENSEARCH_INDEX": "test_cli_ingest"
    }
    res = subprocess.run(
        [sys.executable, "-m", "stepflow_dagster.cli", "ingest", str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "honeybees.docx: ingested, chunks: " in res.stdout and "tides.pdf: ingested, chunks: " in res.stdout
    )
    res = subprocess.run(
        [sys.executable, "scripts/search.py", "How do bees tell each other where flowers are?"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[1]
    assert "honeybees.docx" in first and "Forager bees" in first

"""The real local services: OpenSearch k-NN, Docling Serve, the embeddings endpoint."""

from __future__ import annotations

import base64
import time
import urllib.parse
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import SAMPLES, stack

# --------------------------------------------------------------------------- OpenSearch


@pytest.fixture(scope="module")
def os_client(opensearch_url: str):
    from opensearchpy import OpenSearch

    u = urllib.parse.urlparse(opensearch_url)
    client = OpenSearch(hosts=[{"host": u.hostname, "port": u.port}], use_ssl=False, timeout=30)
    yield client
    client.close()


def lucene_mapping(dim: int) -> dict:
    return {
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {
            "properties": {
                "vector": {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {
                        "name": "hnsw",
                        "engine": "lucene",
                        "space_type": "l2",
                        "parameters": {"ef_construction": 64, "m": 16},
                    },
                },
                "text": {"type": "text"},
            }
        },
    }


def test_opensearch_health_and_knn_plugin(os_client) -> None:
    assert os_client.cluster.health()["status"] in ("green", "yellow")
    plugins = os_client.cat.plugins(format="json")
    knn = [p for p in plugins if p["component"] == "opensearch-knn"]
    assert knn and knn[0]["version"] == "2.19.1.0"
    assert os_client.info()["version"]["number"] == "2.19.1"


def test_opensearch_knn_round_trip_lucene(os_client) -> None:
    index = "stepflow-knn-test"
    if os_client.indices.exists(index=index):
        os_client.indices.delete(index=index)
    os_client.indices.create(index=index, body=lucene_mapping(3))
    docs = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0]}
    for doc_id, vec in docs.items():
        os_client.index(index=index, id=doc_id, body={"vector": vec, "text": f"doc {doc_id}"})
    os_client.indices.refresh(index=index)
    res = os_client.search(
        index=index, body={"size": 2, "query": {"knn": {"vector": {"vector": [0.1, 0.9, 0.0], "k": 2}}}}
    )
    ids = [h["_id"] for h in res["hits"]["hits"]]
    assert ids[0] == "b"
    assert len(ids) == 2
    os_client.indices.delete(index=index)


def test_opensearch_lucene_refuses_disk_ann(os_client) -> None:
    """The frozen OpenRAG OpenSearch code sends method `disk_ann`: lucene refuses it (DESIGN.md)."""
    from opensearchpy.exceptions import RequestError

    body = lucene_mapping(3)
    body["mappings"]["properties"]["vector"]["method"] = {"name": "disk_ann", "engine": "lucene"}
    with pytest.raises(RequestError, match="disk_ann"):
        os_client.indices.create(index="stepflow-disk-ann", body=body)


# --------------------------------------------------------------------------- Docling Serve

FORMATS = ["sample.html", "sample.md", "sample.docx", "sample.pdf"]
EXPECTED = "OpenSearch stores vector embeddings for semantic search."


def convert_like_docling_remote(base_url: str, path: Path, extra_options: dict | None = None) -> dict:
    """The HTTP exchange of Langflow's DoclingRemote component (lfx 1.13): async convert, poll, result."""
    options = {
        "to_formats": ["json"],
        "image_export_mode": "placeholder",
        "do_ocr": False,
        **(extra_options or {}),
    }
    payload = {
        "options": options,
        "sources": [
            {
                "kind": "file",
                "base64_string": base64.b64encode(path.read_bytes()).decode(),
                "filename": path.name,
            }
        ],
    }
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{base_url}/v1/convert/source/async", json=payload)
        r.raise_for_status()
        task = r.json()
        deadline = time.monotonic() + 120
        while task["task_status"] not in ("success", "failure"):
            assert time.monotonic() < deadline, f"conversion of {path.name} timed out"
            time.sleep(0.3)
            task = client.get(f"{base_url}/v1/status/poll/{task['task_id']}").json()
        assert task["task_status"] == "success", f"{path.name}: {task}"
        result = client.get(f"{base_url}/v1/result/{task['task_id']}")
        result.raise_for_status()
        return result.json()


@pytest.mark.parametrize("sample", FORMATS)
def test_docling_converts_with_component_defaults(docling_url: str, sample: str) -> None:
    """The stock component options ({'do_ocr': False} from the flow): served by the native pipeline."""
    from docling_core.types.doc import DoclingDocument

    result = convert_like_docling_remote(docling_url, SAMPLES / sample)
    assert result["status"] == "success", result.get("errors")
    doc = DoclingDocument.model_validate(result["document"]["json_content"])
    texts = [t.text for t in doc.texts]
    assert EXPECTED in texts, texts
    assert any("Stepflow sample" in t for t in texts)


@pytest.mark.parametrize("sample", ["sample.pdf", "sample.docx"])
def test_docling_explicit_native_pipeline(docling_url: str, sample: str) -> None:
    result = convert_like_docling_remote(docling_url, SAMPLES / sample, {"pipeline": "native"})
    texts = [t["text"] for t in result["document"]["json_content"]["texts"]]
    assert EXPECTED in texts


def test_docling_bound_where_langflow_leaves_it(docling_url: str, services) -> None:
    """Docling and embeddings bind 127.0.0.2, which transform_localhost_url leaves alone."""
    assert urllib.parse.urlparse(docling_url).hostname == "127.0.0.2"
    assert urllib.parse.urlparse(services["embeddings"].url).hostname == "127.0.0.2"
    assert httpx.get(f"{docling_url}/health", timeout=5).json()["status"] == "ok"
    try:
        from lfx.utils.util import transform_localhost_url
    except ImportError:
        pytest.skip("lfx not installed")
    assert transform_localhost_url(docling_url) == docling_url


# --------------------------------------------------------------------------- embeddings


def cos(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_langchain_openai(embeddings_base_url: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(model="text-embedding-3-small", base_url=embeddings_base_url, api_key="sk-local")
    vecs = emb.embed_documents(
        ["The cat sits on the mat.", "A cat is sitting on a rug.", "Quarterly revenue grew by ten percent."]
    )
    assert [len(v) for v in vecs] == [384, 384, 384]
    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2]) + 0.3
    assert len(emb.embed_query("cat")) == 384


def test_embeddings_openai_client_shapes(embeddings_base_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=embeddings_base_url, api_key="sk-local")
    r = client.embeddings.create(input="hello world", model="text-embedding-3-small")  # base64 on the wire
    assert r.model == "text-embedding-3-small" and len(r.data[0].embedding) == 384
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0
    floats = client.embeddings.create(input=["hello world"], model="m", encoding_format="float")
    np.testing.assert_allclose(floats.data[0].embedding, r.data[0].embedding, atol=1e-6)
    import tiktoken

    ids = tiktoken.get_encoding("cl100k_base").encode("hello world")
    by_ids = client.embeddings.create(input=[ids], model="m", encoding_format="float")
    np.testing.assert_allclose(by_ids.data[0].embedding, r.data[0].embedding, atol=1e-6)
    assert [m.id for m in client.models.list().data] == [stack.EMBEDDINGS_MODEL]


def test_embeddings_ollama_api(services) -> None:
    url = services["embeddings"].url
    assert httpx.get(f"{url}/api/tags").json()["models"]
    r = httpx.post(f"{url}/api/embed", json={"model": "all-minilm", "input": ["a", "b"]}, timeout=30).json()
    assert len(r["embeddings"]) == 2 and len(r["embeddings"][0]) == 384


def test_ingest_pipeline_end_to_end(docling_url: str, embeddings_base_url: str, os_client) -> None:
    """Docling -> text -> embeddings -> OpenSearch k-NN -> the right document comes back."""
    from langchain_openai import OpenAIEmbeddings

    texts = []
    for sample in FORMATS:
        doc = convert_like_docling_remote(docling_url, SAMPLES / sample)["document"]["json_content"]
        texts += [(sample, t["text"]) for t in doc["texts"]]
    emb = OpenAIEmbeddings(model="text-embedding-3-small", base_url=embeddings_base_url, api_key="sk-local")
    vecs = emb.embed_documents([t for _, t in texts])
    index = "stepflow-e2e"
    if os_client.indices.exists(index=index):
        os_client.indices.delete(index=index)
    os_client.indices.create(index=index, body=lucene_mapping(384))
    for i, ((src, text), vec) in enumerate(zip(texts, vecs, strict=True)):
        os_client.index(index=index, id=str(i), body={"vector": vec, "text": text, "source": src})
    os_client.indices.refresh(index=index)
    q = emb.embed_query("Which tool turns files into structured text?")
    hits = os_client.search(
        index=index, body={"size": 1, "query": {"knn": {"vector": {"vector": q, "k": 1}}}}
    )
    assert "Docling converts documents" in hits["hits"]["hits"][0]["_source"]["text"]
    os_client.indices.delete(index=index)

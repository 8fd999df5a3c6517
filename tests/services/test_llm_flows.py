"""Every shared export (../shared/flows) through `stepflow-dagster parity`'s code: `lfx run` and our Dagster
job, with the same inputs, tweaks and variables, against the same local services, give the same result.

Stand-ins for what cannot be had offline, each speaking the real protocol: the chat model
(services/embeddings/server.py: deterministic replies, tool calls, streaming) and the web
(services/web/server.py: static pages on loopback; an HTTP proxy that answers for export.arxiv.org only).
The exports are never edited: what differs per deployment is a tweak, a variable or the environment
(OPENAI_BASE_URL, http_proxy, LANGFLOW_SSRF_ALLOWED_HOSTS), as a deployment would set them.

The lfx runs of a phase start together (each is its own process); our runs go one after another in this
process: the whole module is one batch, and each test reads its flow's report.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stepflow_dagster.flow import load_flow
from stepflow_dagster.parity import (
    FAILED,
    RAN,
    LfxRun,
    ParityInputs,
    ParityReport,
    compare,
    render,
    run_dagster,
)
from stepflow_dagster.plan import plan_flow
from tests.conftest import ALL_SHARED, ROOT, shared_flow

pytestmark = pytest.mark.slow

MODEL = [{"name": "gpt-4o-mini", "provider": "OpenAI"}]  # 1.13 exports carry no model: the UI would pick one
CSV = ROOT / "tests" / "fixtures" / "runtime" / "fruits.csv"
NOTE = "The lighthouse keeper lit the lamp at dusk every day for forty years."
DOCUMENT = "sample.md"  # tests/services/samples/sample.md, ingested by the OpenRAG flows
QUESTION = "What is 4*4*(33/22)+12-20? Then read {web}/lighthouse.html"


@dataclass(frozen=True)
class Stack:
    web: str
    opensearch: str
    docling: str
    openai: str
    samples: Path
    note: Path


@dataclass(frozen=True)
class Case:
    flow: str
    inputs: Callable[[Stack], ParityInputs]
    executor: str | None = "in_process"  # None: the default executor (forkserver), step processes
    phase: int = 1  # phase 2 runs after phase 1 (nudges search what the ingestion wrote)
    why: str = ""  # for a case whose two runs fail alike: the named reason, as in the README


def openrag_tweaks(s: Stack, docling: str, embedding: str, store: str, index: str) -> dict[str, Any]:
    return {
        docling: {"api_url": s.docling, "path": [str(s.samples / DOCUMENT)]},
        embedding: {"api_base": s.openai},
        store: {
            "opensearch_url": s.opensearch,
            "index_name": index,
            "auth_mode": "basic",
            "username": "",
            "use_ssl": False,
            "engine": "lucene",
            "num_candidates": 0,
        },
    }


def document_variables(s: Stack) -> dict[str, str]:
    path = s.samples / DOCUMENT
    return {
        "FILENAME": DOCUMENT,
        "FILESIZE": str(path.stat().st_size),
        "MIMETYPE": "text/markdown",
        "OWNER": "owner-42",
        "OWNER_NAME": "Parity",
        "OWNER_EMAIL": "parity@example.org",
        "CONNECTOR_TYPE": "local",
    }


def v17_inputs(s: Stack) -> ParityInputs:
    tweaks = openrag_tweaks(
        s,
        "DoclingRemote-Dp3PX",
        "EmbeddingModel-EAo9i",
        "OpenSearchVectorStoreComponentMultimodalMultiEmbedding-By9U4",
        "parity_openrag_v17",
    )
    tweaks["EmbeddingModel-3LsIP"] = {"api_base": s.openai}
    variables = {
        **document_variables(s),
        "SELECTED_EMBEDDING_MODEL": "text-embedding-3-small",
        "OLLAMA_BASE_URL": s.openai.removesuffix("/v1"),
        "WATSONX_PROJECT_ID": "unused",
        "DOCUMENT_ID": "parity-doc-1",
        "SOURCE_URL": str(s.samples / DOCUMENT),
    }
    return ParityInputs(tweaks=tweaks, variables=variables, same_code=True)


def nudges_inputs(s: Stack) -> ParityInputs:
    tweaks = openrag_tweaks(s, "", "EmbeddingModel-eZ6bT", "OpenSearch-iYfjf", "parity_openrag")
    tweaks.pop("")
    return ParityInputs("What stores vector embeddings?", tweaks, {"JWT": "unused"})


CASES: dict[str, Case] = {
    "hello-world": Case(
        "lfx_template__hello-world.json", lambda s: ParityInputs("Parity, please"), executor=None
    ),
    "dataframe_image": Case(
        "langflow_factory__others__dataframe_image.json",
        lambda s: ParityInputs(tweaks={"File-g3C6N": {"path": [str(CSV)]}}),
        # Step processes: lfx execs component code in shared namespaces, and a repaired copy of this
        # flow run earlier in this process (tests/runtime) would lend it its `pd`.
        executor=None,
        why="the published export's edited DataFrame Operations code uses `pd` without importing it",
    ),
    "basic_prompting_1.5": Case(
        "langflow_starter__Basic_Prompting.json", lambda s: ParityInputs("What is a vector store?")
    ),
    "basic_prompting_1.13": Case(
        "langflow_starter_1.13__Basic_Prompting.json",
        lambda s: ParityInputs("What is a vector store?", {"LanguageModelComponent-FLeYF": {"model": MODEL}}),
    ),
    "research_translation_loop": Case(
        "langflow_starter_1.13__Research_Translation_Loop.json",
        lambda s: ParityInputs("loops", {"LanguageModelComponent-ps5yd": {"model": MODEL}}),
    ),
    "memory_chatbot": Case(
        "langflow_starter__Memory_Chatbot.json", lambda s: ParityInputs("Hello, who are you?")
    ),
    "document_qa": Case(
        "langflow_starter__Document_Q_A.json",
        lambda s: ParityInputs("Who lit the lamp?", {"File-b2gOG": {"path": [str(s.note)]}}),
    ),
    "simple_agent": Case(
        "langflow_starter__Simple_Agent.json",
        lambda s: ParityInputs(QUESTION.format(web=s.web)),
        why="the 1.5 Agent's own code does not run on lfx 1.13 (its base class reads a `model` input)",
    ),
    # The same export with the installed Agent code (a code policy in run config, not an edited export)
    # and lfx given that code too: the calculator and URL tools run, driven by the stand-in's tool calls.
    "simple_agent_tools": Case(
        "langflow_starter__Simple_Agent.json",
        lambda s: ParityInputs(
            QUESTION.format(web=s.web),
            {"Agent-D0Kx2": {"model": MODEL}},
            code_policy={"Agent-D0Kx2": "upgrade"},
            same_code=True,
        ),
        executor=None,  # the tools are live objects: the Agent's step rebuilds them in its own process
    ),
    "vector_store_rag": Case(
        "langflow_starter__Vector_Store_RAG.json",
        lambda s: ParityInputs("Who lit the lamp?", {"File-XWkVj": {"path": [str(s.note)]}}),
        why="Astra DB is a hosted vector database (no local stand-in; a tweak cannot swap the component)",
    ),
    # lfx gets the code our run runs (--same-code): as exported, lfx 1.13 fails on the frozen Export
    # DoclingDocument code, which our default policy upgrades (the next case shows both failing alike).
    "openrag_ingestion_1.6": Case(
        "openrag__ingestion_flow.json",
        lambda s: ParityInputs(
            tweaks=openrag_tweaks(
                s, "DoclingRemote-Dp3PX", "EmbeddingModel-eZ6bT", "OpenSearchHybrid-Ve6bS", "parity_openrag"
            ),
            variables=document_variables(s),
            same_code=True,
        ),
    ),
    "openrag_ingestion_1.6_export_code": Case(
        "openrag__ingestion_flow.json",
        lambda s: ParityInputs(
            tweaks=openrag_tweaks(
                s, "DoclingRemote-Dp3PX", "EmbeddingModel-eZ6bT", "OpenSearchHybrid-Ve6bS", "parity_unused"
            ),
            variables=document_variables(s),
            code_policy={"ExportDoclingDocument-zZdRg": "frozen"},
        ),
        why="the export's frozen Export DoclingDocument code fails on lfx 1.13 (a helper returns a list now)",
    ),
    "openrag_ingestion_1.7": Case("openrag__ingestion_flow_v17.json", v17_inputs),
    "openrag_ingest_docling": Case(
        "openrag__openrag_ingest_docling.json",
        lambda s: ParityInputs(
            tweaks=openrag_tweaks(
                s,
                "DoclingRemote-78KoX",
                "EmbeddingModel-eZ6bT",
                "OpenSearchHybrid-XtKoA",
                "parity_openrag_docling",
            ),
            variables=document_variables(s),
            same_code=True,
        ),
    ),
    "openrag_nudges": Case("openrag__openrag_nudges.json", nudges_inputs, phase=2),
}
INDEXES = {
    "openrag_ingestion_1.6": "parity_openrag",
    "openrag_ingestion_1.7": "parity_openrag_v17",
    "openrag_ingest_docling": "parity_openrag_docling",
}


@dataclass
class Outcome:
    report: ParityReport | None = None
    error: BaseException | None = None
    asked: list[str] = field(default_factory=list)  # what the stand-in web site was asked for, by then


@pytest.fixture(scope="module")
def stack(
    services: dict[str, Any], embeddings_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    from tests.services.conftest import SAMPLES

    note = tmp_path_factory.mktemp("parity") / "note.txt"
    note.write_text(NOTE)
    web = services["web"].url
    env = {
        "OPENAI_BASE_URL": embeddings_base_url,
        "OPENAI_API_KEY": "sk-stand-in-llm-key-not-checked",
        # The ArXiv component calls http://export.arxiv.org: the stand-in web site answers as its proxy.
        "http_proxy": web,
        "no_proxy": "127.0.0.1,127.0.0.2,localhost",
        # lfx's URL component refuses loopback addresses unless the deployment allows them.
        "LANGFLOW_SSRF_ALLOWED_HOSTS": "127.0.0.2",
    }
    create_indexes(services["opensearch"].url)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield Stack(
            web, services["opensearch"].url, services["docling"].url, embeddings_base_url, SAMPLES, note
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_indexes(url: str) -> None:
    """The indexes the OpenRAG flows write to, as their deployment files create them when missing (the
    flows' OpenSearch code expects the index to exist: OpenRAG's backend makes it)."""
    import yaml
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url])
    bodies = {
        "flows/openrag_ingestion.yaml": ["parity_openrag", "parity_openrag_docling", "parity_unused"],
        "tests/flows/openrag_ingestion_v17.yaml": ["parity_openrag_v17"],
    }
    for deployment, indexes in bodies.items():
        body = yaml.safe_load((ROOT / deployment).read_text())["documents"]["index_body"]
        for index in indexes:
            if not client.indices.exists(index=index):
                client.indices.create(index=index, body=body)


def web_requests(stack: Stack) -> list[str]:
    with urllib.request.urlopen(f"{stack.web}/_stand_in/requests", timeout=10) as r:  # noqa: S310
        return list(json.loads(r.read()))


def reviewed_copy(export: Path, folder: Path) -> Path:
    """The export as a user deploys it: a copy in a flows folder, its deployment file trusting (by code
    hash) the nodes whose code is not stock, as a reviewer would after reading them."""
    from stepflow_dagster.runtime.trust import STOCK_ONLY, untrusted

    folder.mkdir(parents=True, exist_ok=True)
    flow = folder / export.name
    if not flow.exists():
        shutil.copy(export, flow)
        nodes = [(c.node_id, c.data) for step in plan_flow(load_flow(flow)).steps for c in step.components]
        hashes = sorted({n.sha256 for n in untrusted(nodes, STOCK_ONLY)})
        if hashes:
            flow.with_suffix(".yaml").write_text(json.dumps({"run": {"trust": {"code_sha256": hashes}}}))
    return flow


@pytest.fixture(scope="module")
def outcomes(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case, through the parity command's code; the lfx runs of a phase side by side."""
    found: dict[str, Outcome] = {}
    flows = tmp_path_factory.mktemp("flows")
    for phase in (1, 2):
        cases = {k: c for k, c in CASES.items() if c.phase == phase}
        started: dict[str, tuple[Any, Any, ParityInputs, LfxRun]] = {}
        for key, case in cases.items():
            flow = reviewed_copy(shared_flow(case.flow), flows)
            plan = plan_flow(load_flow(flow))
            inputs = case.inputs(stack)
            started[key] = (flow, plan, inputs, LfxRun(flow, plan, inputs, timeout=900))
        for key, (flow, plan, inputs, lfx) in started.items():
            outcome = found[key] = Outcome()
            try:
                ours = run_dagster(flow, plan, inputs, CASES[key].executor)
                outcome.report = compare(plan.flow, plan, lfx.result(), ours)
            except Exception as exc:  # noqa: BLE001 (reported by the case's own test)
                lfx.kill()
                outcome.error = exc
            outcome.asked = web_requests(stack)
    return found


def report_of(outcomes: dict[str, Outcome], key: str) -> ParityReport:
    outcome = outcomes[key]
    if outcome.error is not None:
        raise outcome.error
    assert outcome.report is not None
    print(render(outcome.report))
    return outcome.report


def test_every_shared_flow_has_a_case() -> None:
    assert sorted({c.flow for c in CASES.values()}) == ALL_SHARED


@pytest.mark.parametrize("key", sorted(CASES))
def test_parity(outcomes: dict[str, Outcome], key: str) -> None:
    report = report_of(outcomes, key)
    assert report.same, render(report)
    case = CASES[key]
    if case.why:  # lfx itself fails on this export: ours fails at the same node with the same cause
        print(f"{key}: both fail: {case.why}")
        assert report.lfx.failure is not None and report.ours.failure is not None
    else:
        assert report.lfx.failure is None and report.ours.failure is None, render(report)
        assert all(status == RAN for status in report.ours.status.values()), render(report)


def test_simple_agent_tools_reach_the_answer(outcomes: dict[str, Outcome], stack: Stack) -> None:
    report = report_of(outcomes, "simple_agent_tools")
    answer = report.ours.result or ""
    assert answer.startswith("[stand-in LLM] What is 4*4*(33/22)+12-20?")
    assert 'evaluate_expression: {"result": "16"}' in answer  # the Calculator's own result
    assert "fetch_content:" in answer and NOTE in answer  # the URL component read the stand-in page
    assert f"{stack.web}/lighthouse.html" in outcomes["simple_agent_tools"].asked


def test_simple_agent_as_exported_fails_at_the_agent_in_both(outcomes: dict[str, Outcome]) -> None:
    report = report_of(outcomes, "simple_agent")
    assert report.ours.failure is not None and report.lfx.failure is not None
    assert report.ours.failure.node == "Agent-D0Kx2"
    assert "Attribute model not found in AgentComponent" in report.ours.failure.cause
    assert "Attribute model not found in AgentComponent" in report.lfx.failure.cause


def test_dataframe_image_fails_at_the_same_node_in_both(outcomes: dict[str, Outcome]) -> None:
    report = report_of(outcomes, "dataframe_image")
    assert report.ours.failure is not None and report.lfx.failure is not None
    assert report.ours.failure.node == report.lfx.failure.node == "DataFrameOperationsComponent-wfbGg"
    assert "name 'pd' is not defined" in report.ours.failure.cause
    assert report.ours.status["File-g3C6N"] == RAN
    assert report.lfx.status["DataFrameOperationsComponent-wfbGg"] == FAILED


def test_research_loop_asks_arxiv_and_runs_each_paper_through_the_body(
    outcomes: dict[str, Outcome],
) -> None:
    report = report_of(outcomes, "research_translation_loop")
    assert any(
        u.startswith("http://export.arxiv.org/api/query") and "loops" in u
        for u in outcomes["research_translation_loop"].asked
    )
    replies = [line for line in (report.ours.result or "").splitlines() if "[stand-in LLM]" in line]
    titles = ("Loops in dataflow graphs", "Operators that run in processes")  # services/web/site
    assert len(replies) == len(titles)
    for title, reply in zip(titles, replies, strict=True):
        assert title in reply


def test_llm_answers_are_the_stand_ins(outcomes: dict[str, Outcome]) -> None:
    """The stand-in answers the last user message: the chat input reached the model, in both runs."""
    for key, question in (
        ("basic_prompting_1.5", "What is a vector store?"),
        ("basic_prompting_1.13", "What is a vector store?"),
        ("memory_chatbot", "Hello, who are you?"),
        ("document_qa", "Who lit the lamp?"),
    ):
        assert report_of(outcomes, key).ours.result == f"[stand-in LLM] {question}", key


@pytest.mark.parametrize("key", sorted(INDEXES))
def test_openrag_ingestion_writes_the_same_chunks_both_ways(
    outcomes: dict[str, Outcome], stack: Stack, key: str
) -> None:
    """Both runs ingested the document into one index: every chunk is there twice, vector and all."""
    from opensearchpy import OpenSearch

    report_of(outcomes, key)
    client = OpenSearch(hosts=[stack.opensearch])
    client.indices.refresh(index=INDEXES[key])
    body = {"query": {"term": {"filename": DOCUMENT}}, "size": 1000}
    hits = [h["_source"] for h in client.search(index=INDEXES[key], body=body)["hits"]["hits"]]
    assert hits, f"no chunks of {DOCUMENT} in {INDEXES[key]}"
    vectors = [k for k in hits[0] if k.startswith("chunk_embedding")]
    counts = Counter(json.dumps([h["text"], *[h.get(v) for v in vectors]]) for h in hits)
    assert set(counts.values()) == {2}, counts


def test_nudges_found_the_ingested_chunks(outcomes: dict[str, Outcome]) -> None:
    report = report_of(outcomes, "openrag_nudges")
    assert (report.ours.result or "").startswith("[stand-in LLM]")

"""`analyze` on real exports: what a person deploying them must know."""

from __future__ import annotations

from stepflow_dagster.flow import analyze, load_flow
from tests.conftest import shared_flow

OPENRAG_VARIABLES = {
    "OWNER",
    "OWNER_NAME",
    "OWNER_EMAIL",
    "CONNECTOR_TYPE",
    "FILENAME",
    "FILESIZE",
    "MIMETYPE",
    "OPENAI_API_KEY",
}


def test_openrag_ingestion_analysis() -> None:
    a = analyze(load_flow(shared_flow("openrag__ingestion_flow.json")))
    assert (a.node_count, a.edge_count) == (13, 12)
    assert a.components["SecretInput"] == 4 and a.components["DataFrameOperations"] == 3
    assert {v.variable for v in a.variables} == OPENRAG_VARIABLES
    assert [(e.source, e.target, e.field, e.value_type) for e in a.live_edges] == [
        ("EmbeddingModel-eZ6bT", "OpenSearchHybrid-Ve6bS", "embedding", "Embeddings")
    ]
    # The literal JWT in the OpenSearch node is flagged; empty password fields are not.
    assert [(w.node, w.field) for w in a.warnings] == [("OpenSearchHybrid-Ve6bS", "jwt_token")]
    assert [i.node for i in a.inputs] == ["DoclingRemote-Dp3PX"]
    assert [o.node for o in a.outputs] == ["OpenSearchHybrid-Ve6bS"]
    assert a.langflow_version == "1.6.3.dev1"


def test_v17_flags_its_hard_coded_opensearch_password() -> None:
    a = analyze(load_flow(shared_flow("openrag__ingestion_flow_v17.json")))
    node = "OpenSearchVectorStoreComponentMultimodalMultiEmbedding-By9U4"
    assert {(w.node, w.field) for w in a.warnings} == {(node, "password"), (node, "jwt_token")}
    assert len(a.live_edges) == 3 and {e.field for e in a.live_edges} == {"embedding"}
    assert "SELECTED_EMBEDDING_MODEL" in {v.variable for v in a.variables}


def test_agent_tools_are_live_edges() -> None:
    a = analyze(load_flow(shared_flow("langflow_starter__Simple_Agent.json")))
    assert {(e.source, e.field, e.value_type) for e in a.live_edges} == {
        ("CalculatorComponent-hMbFw", "tools", "Tool"),
        ("URLComponent-TpTHB", "tools", "Tool"),
    }
    assert [v.variable for v in a.variables] == ["OPENAI_API_KEY"]


def test_hello_world_has_an_input_and_an_output() -> None:
    a = analyze(load_flow(shared_flow("lfx_template__hello-world.json")))
    assert [(i.node, i.kind) for i in a.inputs] == [("TextInput-J1CQK", "message")]
    assert [o.node for o in a.outputs] == ["ChatOutput-boh63"]
    assert a.variables == [] and a.warnings == [] and a.live_edges == []

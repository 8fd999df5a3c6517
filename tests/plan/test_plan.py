"""The plan: steps, wiring, variables, and its YAML round trip, on real exports."""

from __future__ import annotations

import re

import pytest

from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import dump_plan, load_plan, plan_flow
from tests.conftest import ALL_SHARED, shared_flow
from tests.flow.test_analysis import OPENRAG_VARIABLES

NAME = re.compile(r"^[A-Za-z0-9_]+$")


@pytest.mark.parametrize("name", ALL_SHARED)
def test_every_shared_flow_plans_and_round_trips(name: str) -> None:
    flow = load_flow(shared_flow(name))
    plan = plan_flow(flow)
    assert load_plan(dump_plan(plan)) == plan
    assert dump_plan(plan) == dump_plan(plan_flow(load_flow(shared_flow(name))))  # stable
    covered = {c.node_id for s in plan.steps for c in s.components}
    assert covered == set(flow.nodes)
    names = [s.name for s in plan.steps]
    assert len(set(names)) == len(names) and all(NAME.match(n) for n in names)
    seen: set[str] = set()
    for step in plan.steps:  # run order: every source comes earlier
        for inp in step.inputs:
            assert NAME.match(inp.name)
            for src in inp.sources:
                assert src.step in seen and src.output in {o.name for o in plan.step(src.step).outputs}
        seen.add(step.name)


def test_openrag_ingestion_plan_in_detail() -> None:
    plan = plan_flow(load_flow(shared_flow("openrag__ingestion_flow.json")))
    assert plan.name == "opensearch_ingestion_flow"
    assert len(plan.steps) == 13
    wiring = sorted(
        (src.step, src.output, step.name, inp.field)
        for step in plan.steps
        for inp in step.inputs
        for src in inp.sources
    )
    assert wiring == sorted(
        [
            ("SplitText_QIKhg", "dataframe", "OpenSearchHybrid_Ve6bS", "ingest_data"),
            ("EmbeddingModel_eZ6bT", "embeddings", "OpenSearchHybrid_Ve6bS", "embedding"),
            ("SecretInput_F34VJ", "text", "AdvancedDynamicFormBuilder_81Exw", "dynamic_connector_type"),
            ("SecretInput_b2cab", "text", "AdvancedDynamicFormBuilder_81Exw", "dynamic_owner"),
            ("SecretInput_ZVfuS", "text", "AdvancedDynamicFormBuilder_81Exw", "dynamic_owner_email"),
            ("SecretInput_Iqtxd", "text", "AdvancedDynamicFormBuilder_81Exw", "dynamic_owner_name"),
            ("AdvancedDynamicFormBuilder_81Exw", "form_data", "OpenSearchHybrid_Ve6bS", "docs_metadata"),
            ("DoclingRemote_Dp3PX", "dataframe", "ExportDoclingDocument_zZdRg", "data_inputs"),
            ("ExportDoclingDocument_zZdRg", "dataframe", "DataFrameOperations_1BWXB", "df"),
            ("DataFrameOperations_1BWXB", "output_", "DataFrameOperations_9vMrp", "df"),
            ("DataFrameOperations_9vMrp", "output_", "DataFrameOperations_N80fC", "df"),
            ("DataFrameOperations_N80fC", "output_", "SplitText_QIKhg", "data_inputs"),
        ]
    )
    sink = plan.step("OpenSearchHybrid_Ve6bS")
    assert sink.category == "vector_store" and sink.display_name == "OpenSearch"
    # A node without outgoing edges computes all of its outputs (the vector store ingests).
    assert [o.output for o in sink.outputs] == ["search_results", "dataframe", "vectorstoreconnection"]
    assert sink.live_outputs == ("vectorstoreconnection",)
    assert [i.field for i in sink.inputs if i.live] == ["embedding"]
    embed = plan.step("EmbeddingModel_eZ6bT")
    assert embed.category == "embeddings" and [o.live for o in embed.outputs] == [True]
    assert plan.step("DoclingRemote_Dp3PX").category == "docling"
    # Export computes only the output its edge names.
    assert [o.output for o in plan.step("ExportDoclingDocument_zZdRg").outputs] == ["dataframe"]
    assert {v.name for v in plan.variables if v.origin == "load_from_db"} == OPENRAG_VARIABLES
    assert [(v.name, v.node, v.field) for v in plan.variables if v.origin == "credential"] == [
        ("OPENSEARCHHYBRID_VE6BS_JWT_TOKEN", "OpenSearchHybrid-Ve6bS", "jwt_token")
    ]
    assert [(e.node, e.kind) for e in plan.inputs] == [("DoclingRemote-Dp3PX", "file")]
    assert [(e.step, e.field) for e in plan.outputs] == [("OpenSearchHybrid_Ve6bS", "search_results")]


def test_literal_credentials_never_reach_the_yaml() -> None:
    path = shared_flow("openrag__ingestion_flow_v17.json")
    text = dump_plan(plan_flow(load_flow(path)))
    assert "MyStrongOpenSearchPassword123!" not in text
    assert "OPENSEARCHVECTORSTORECOMPONENTMULTIMODALMULTIEMBEDDING_BY9U4_PASSWORD" in text
    kept = dump_plan(plan_flow(load_flow(path), keep_credentials=True))
    assert "MyStrongOpenSearchPassword123!" in kept
    nudges = dump_plan(plan_flow(load_flow(shared_flow("openrag__openrag_nudges.json"))))
    assert "o8h@xwLus123o" not in nudges


def test_loop_and_its_body_are_one_step() -> None:
    plan = plan_flow(load_flow(shared_flow("langflow_starter_1.13__Research_Translation_Loop.json")))
    assert [s.name for s in plan.steps] == [
        "ChatInput_MBlfD",
        "ArXivComponent_zGqWh",
        "LoopComponent_E7Ur0",
        "ChatOutput_scvYG",
    ]
    loop = plan.step("LoopComponent_E7Ur0")
    assert loop.is_loop and {c.node_id for c in loop.components} == {
        "LoopComponent-E7Ur0",
        "ParserComponent-V2o48",
        "LanguageModelComponent-ps5yd",
    }
    assert [(i.node, i.field) for i in loop.inputs] == [("LoopComponent-E7Ur0", "data")]
    assert [(o.node, o.output) for o in loop.outputs] == [("LoopComponent-E7Ur0", "done")]
    assert sum(e.loop_feedback for e in loop.inner_edges) == 1 and len(loop.inner_edges) == 3
    assert loop.category == "llm"


def test_reserved_output_names_and_file_inputs() -> None:
    plan = plan_flow(load_flow(shared_flow("langflow_factory__others__dataframe_image.json")))
    ops = plan.step("DataFrameOperationsComponent_wfbGg")
    assert [o.name for o in ops.outputs] == ["output_"]  # `output` is reserved in Dagster
    assert [(e.node, e.kind, e.field) for e in plan.inputs] == [("File-g3C6N", "file", "path")]

"""run_component on real lfx 1.13 components, one node per call with JSON between calls."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stepflow_dagster.runtime import (
    ComponentCall,
    ComponentError,
    LiveInput,
    Redacted,
    encode,
    run_component,
    secret_fields,
)
from tests.conftest import shared_flow
from tests.runtime.conftest import fixture_node, flow_nodes, hop

pytestmark = pytest.mark.slow


def lfx_run(flow: dict[str, Any] | Path, *args: str) -> dict[str, Any]:
    """What ``lfx run`` prints for a flow file or an in-memory flow."""
    cmd = [sys.executable, "-m", "lfx", "run"]
    cmd += [str(flow)] if isinstance(flow, Path) else ["--flow-json", json.dumps(flow)]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_hello_world_matches_lfx_run() -> None:
    nodes = flow_nodes("lfx_template__hello-world.json")
    text_input = nodes["TextInput-J1CQK"]
    chat_output = nodes["ChatOutput-boh63"]

    first = run_component(ComponentCall("TextInput-J1CQK", text_input, {}, ["text"]), flow_name="hello-world")
    second = run_component(
        ComponentCall("ChatOutput-boh63", chat_output, {"input_value": hop(first["text"])}, ["message"]),
        flow_name="hello-world",
    )
    expected = lfx_run(
        shared_flow("lfx_template__hello-world.json"), "--input-value", "ignored: no Chat Input"
    )
    assert expected["component_id"] == "ChatOutput-boh63"
    assert hop(second["message"]).text == expected["result"] == "Hello, World!"


def test_tweak_by_display_name_and_by_id() -> None:
    nodes = flow_nodes("lfx_template__hello-world.json")
    call = ComponentCall("TextInput-J1CQK", nodes["TextInput-J1CQK"], {}, ["text"])
    by_name = run_component(call, tweaks={"Text Input": {"input_value": "tweaked"}})
    by_id = run_component(
        call, tweaks={"TextInput-J1CQK": {"input_value": "by id"}, "Other": {"input_value": "x"}}
    )
    assert by_name["text"].text == "tweaked"
    assert by_id["text"].text == "by id"


def _lfx_run_env_unrestricted() -> dict[str, str]:
    import os

    return {**os.environ, "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false"}


def test_dataframe_image_flow_matches_lfx_run(fixtures_dir: Path) -> None:
    """File -> DataFrame Operations (edited) -> Parser -> Chat Output, on a small CSV.

    The published flow's edited DataFrame Operations code uses ``pd`` without importing it, and
    fails the same way under ``lfx run``; both runs then use a copy repaired by its missing imports
    (pd, io, base64).
    """
    pytest.importorskip("matplotlib", reason="the flow's edited DataFrame Operations code imports matplotlib")
    from lfx.processing.process import process_tweaks

    name = "langflow_factory__others__dataframe_image.json"
    csv = str(fixtures_dir / "fruits.csv")
    tweaks = {"File-g3C6N": {"path": [csv]}}
    flow = json.loads(shared_flow(name).read_text())["data"]
    nodes = {n["id"]: n["data"] for n in flow["nodes"]}

    file_out = run_component(
        ComponentCall("File-g3C6N", nodes["File-g3C6N"], {}, ["dataframe"]), tweaks=tweaks
    )
    frame = hop(file_out["dataframe"])
    assert list(frame["name"]) == ["apple", "pear", "plum"]

    ops_id = "DataFrameOperationsComponent-wfbGg"
    with pytest.raises(ComponentError, match="name 'pd' is not defined") as info:
        run_component(ComponentCall(ops_id, nodes[ops_id], {"df": frame}, ["output"]), flow_name=name)
    assert info.value.node_id == ops_id
    tweaked = json.loads(json.dumps(flow))
    process_tweaks(tweaked, tweaks)
    broken = subprocess.run(
        [sys.executable, "-m", "lfx", "run", "--flow-json", json.dumps(tweaked)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_lfx_run_env_unrestricted(),
    )
    assert "name 'pd' is not defined" in broken.stdout

    code = nodes[ops_id]["node"]["template"]["code"]
    repaired_imports = "import base64\nimport io\nimport matplotlib.pyplot as plt\nimport pandas as pd"
    code["value"] = code["value"].replace("import matplotlib.pyplot as plt", repaired_imports)
    ops = run_component(ComponentCall(ops_id, nodes[ops_id], {"df": frame}, ["output"]))
    parsed = run_component(
        ComponentCall(
            "ParserComponent-2baU8",
            nodes["ParserComponent-2baU8"],
            {"input_data": hop(ops["output"])},
            ["parsed_text"],
        )
    )
    chat = run_component(
        ComponentCall(
            "ChatOutput-Ec39z",
            nodes["ChatOutput-Ec39z"],
            {"input_value": hop(parsed["parsed_text"])},
            ["message"],
        )
    )
    ours = hop(chat["message"]).text
    assert ours.startswith("![imagem](data:image/png;base64,")

    # lfx run on the same (repaired) flow, the file path set the way Langflow's API applies tweaks.
    process_tweaks(flow, tweaks)
    out = subprocess.run(
        [sys.executable, "-m", "lfx", "run", "--flow-json", json.dumps(flow)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_lfx_run_env_unrestricted(),
    )
    expected = json.loads(out.stdout)
    assert expected["success"], expected
    assert expected["result"] == ours


def _docling_frame() -> Any:
    """What Docling Serve's component outputs: a DataFrame of {doc: DoclingDocument, file_path}."""
    from docling_core.types.doc import DocItemLabel, DoclingDocument
    from lfx.schema.data import Data
    from lfx.schema.dataframe import DataFrame

    doc = DoclingDocument(name="report")
    doc.add_heading(text="Quarterly report")
    for i in range(40):
        doc.add_text(
            label=DocItemLabel.PARAGRAPH, text=f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 4
        )
    return DataFrame([Data(data={"doc": doc, "file_path": "/docs/report.pdf"})])


def test_openrag_chain_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = flow_nodes("openrag__ingestion_flow.json")
    # The three DataFrame Operations read their column values from variables.
    variables = {"FILENAME": "report.pdf", "MIMETYPE": "application/pdf"}
    monkeypatch.setenv("FILESIZE", "12345")

    value = hop(_docling_frame())
    exported = run_component(
        ComponentCall(
            "ExportDoclingDocument-zZdRg",
            nodes["ExportDoclingDocument-zZdRg"],
            {"data_inputs": value},
            ["dataframe"],
        ),
        variables=variables,
        flow_name="openrag-ingestion",
    )
    value = hop(exported["dataframe"])
    for node_id in ("DataFrameOperations-1BWXB", "DataFrameOperations-9vMrp", "DataFrameOperations-N80fC"):
        out = run_component(
            ComponentCall(node_id, nodes[node_id], {"df": value}, ["output"]), variables=variables
        )
        value = hop(out["output"])
    split = run_component(
        ComponentCall("SplitText-QIKhg", nodes["SplitText-QIKhg"], {"data_inputs": value}, ["dataframe"]),
        variables=variables,
    )
    chunks = hop(split["dataframe"])
    assert len(chunks) > 1
    assert {"text", "filename", "mimetype", "file_size"} <= set(chunks.columns)
    assert set(chunks["filename"]) == {"report.pdf"}
    assert set(chunks["mimetype"]) == {"application/pdf"}
    assert set(chunks["file_size"]) == {"12345"}
    assert all(len(t) <= 1000 for t in chunks["text"])
    assert "Quarterly report" in chunks["text"].iloc[0]


def test_openrag_export_frozen_code_fails_on_lfx_113() -> None:
    nodes = flow_nodes("openrag__ingestion_flow.json")
    call = ComponentCall(
        "ExportDoclingDocument-zZdRg",
        nodes["ExportDoclingDocument-zZdRg"],
        {"data_inputs": _docling_frame()},
        ["dataframe"],
    )
    with pytest.raises(ComponentError, match="export_to_markdown") as info:
        run_component(call, code_policy="frozen", flow_name="openrag-ingestion")
    assert info.value.node_id == "ExportDoclingDocument-zZdRg"
    assert info.value.display_name == "Export DoclingDocument"


SECRET = "sk-test-Zq81xW-very-secret"


def test_secret_from_environment_reaches_component_and_never_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", SECRET)
    node = fixture_node("secret_probe.py", "SecretProbe")
    assert secret_fields(node) == ["api_key"]
    out = run_component(ComponentCall("SecretProbe-1", node, {}, ["probe", "echo"]))
    digest = hashlib.sha256(SECRET.encode()).hexdigest()[:12]
    assert out["probe"].text == f"len={len(SECRET)} sha={digest}"
    assert out["echo"] == Redacted(node_id="SecretProbe-1", output="echo")
    assert SECRET not in json.dumps(encode(out))
    assert SECRET not in repr(out)


def test_run_variables_take_precedence_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", "from-env")
    node = fixture_node("secret_probe.py", "SecretProbe")
    out = run_component(
        ComponentCall("SecretProbe-1", node, {}, ["probe"]), variables={"STEPFLOW_TEST_SECRET": "from-run"}
    )
    assert out["probe"].text.startswith(f"len={len('from-run')} ")


def test_redacted_input_is_refused() -> None:
    node = fixture_node("boom.py", "Boom")
    with pytest.raises(ComponentError, match="LiveInput"):
        run_component(
            ComponentCall("Boom-1", node, {"input_value": Redacted("SecretProbe-1", "echo")}, ["out"])
        )


def test_component_error_names_node_and_carries_message() -> None:
    import pickle

    node = fixture_node("boom.py", "Boom")
    with pytest.raises(ComponentError) as info:
        run_component(ComponentCall("Boom-xyz", node, {"input_value": "abc"}, ["out"]), flow_name="f1")
    err = info.value
    assert err.node_id == "Boom-xyz" and err.flow_name == "f1" and err.display_name == "Boom"
    assert "kaboom: cannot handle 'abc'" in err.message
    assert "Boom-xyz" in str(err) and "kaboom" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.node_id, again.message) == (err.node_id, err.message)


def test_live_input_rebuilds_producer_in_process() -> None:
    producer = fixture_node("fake_embeddings.py", "FakeEmbeddings")
    consumer = fixture_node("embeddings_probe.py", "EmbeddingsProbe")
    live = LiveInput(ComponentCall("FakeEmbeddings-1", producer, {"size": 16}, ["embeddings"]), "embeddings")
    out = run_component(ComponentCall("EmbeddingsProbe-1", consumer, {"embedding": live}, ["report"]))
    assert out["report"].text.startswith("langchain_core.embeddings.fake.DeterministicFakeEmbedding ")


def test_live_input_openai_embeddings_from_openrag_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow's own Embedding Model node, its API key from the environment; no network call."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    nodes = flow_nodes("openrag__ingestion_flow.json")
    consumer = fixture_node("embeddings_probe.py", "EmbeddingsProbe")
    live = LiveInput(
        ComponentCall("EmbeddingModel-eZ6bT", nodes["EmbeddingModel-eZ6bT"], {}, ["embeddings"]), "embeddings"
    )
    out = run_component(ComponentCall("EmbeddingsProbe-1", consumer, {"embedding": live}, ["report"]))
    report = out["report"].text
    # The export's own code runs (1.13's reads the `model` dropdown as a model selection): it builds
    # OpenAIEmbeddings itself, not 1.13's wrapper around it.
    assert report.startswith("langchain_openai.embeddings.base.OpenAIEmbeddings ")
    assert "model=text-embedding-3-small" in report and "key=True" in report
    assert SECRET not in json.dumps(encode(out))


def test_live_output_cannot_be_encoded() -> None:
    producer = fixture_node("fake_embeddings.py", "FakeEmbeddings")
    out = run_component(ComponentCall("FakeEmbeddings-1", producer, {}, ["embeddings"]))
    with pytest.raises(TypeError, match="LiveInput"):
        encode(out)


def test_router_reports_stopped_output() -> None:
    from lfx.components.flow_controls import conditional_router

    from tests.runtime.conftest import node_from_code

    node = node_from_code(Path(conditional_router.__file__).read_text(), "ConditionalRouter")
    call = ComponentCall(
        "ConditionalRouter-1",
        node,
        {"input_text": "hello world", "match_text": "hello", "operator": "contains"},
        ["true_result", "false_result"],
    )
    out = run_component(call)
    assert list(out) == ["true_result"]
    assert out["true_result"].text == "hello world"
    call_false = ComponentCall(
        "ConditionalRouter-1", node, {**call.inputs, "match_text": "bye"}, ["true_result", "false_result"]
    )
    assert list(run_component(call_false)) == ["false_result"]


def test_file_component_reads_absolute_path_input(fixtures_dir: Path) -> None:
    from lfx.services.deps import get_settings_service

    from stepflow_dagster.runtime.file_access import allowed_files

    nodes = flow_nodes("langflow_factory__others__dataframe_image.json")
    csv = str(fixtures_dir / "fruits.csv")
    call = ComponentCall("File-g3C6N", nodes["File-g3C6N"], {"path": [csv]}, ["dataframe"])
    with allowed_files([csv]):  # a run's own file (the defs layer grants them)
        out = run_component(call)
    assert list(hop(out["dataframe"])["qty"]) == [3, 7, 1]
    # lfx's restriction stays on: a path from an upstream value, not granted to the run, is refused
    assert get_settings_service().settings.restrict_local_file_access is True
    with pytest.raises(ComponentError, match="LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS=true"):
        run_component(call)


def test_component_error_names_the_field_for_the_run_summary() -> None:
    import pickle

    from stepflow_dagster.run_report import _COMPONENT_TEXT

    err = ComponentError("no value", flow_name="f", node_id="N-1", display_name="Probe (v2)", field="api_key")
    assert str(err) == "flow 'f', node 'N-1' (Probe (v2)), field 'api_key': no value"
    assert pickle.loads(pickle.dumps(err)).field == "api_key"
    match = _COMPONENT_TEXT.match(f"stepflow_dagster.runtime.errors.ComponentError: {err}")
    assert match is not None and match["field"] == "api_key"
    assert f"stepflow_dagster.runtime.errors.ComponentError: {err}"[match.end() :] == "no value"

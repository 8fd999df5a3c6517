from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from stepflow_dagster.runtime import apply_code_policy, decide_code, describe_code_policy
from tests.conftest import ALL_SHARED, shared_flow
from tests.runtime.conftest import flow_nodes

UPGRADED = "not edited, outputs kept, inputs read alike"
OPENRAG_EXPECTED = {
    "SplitText-QIKhg": "kept frozen: edited",
    "OpenSearchHybrid-Ve6bS": "kept frozen: edited; patched: k-NN method by engine",
    "AdvancedDynamicFormBuilder-81Exw": "kept frozen: edited",
    "SecretInput-F34VJ": "kept frozen: edited",
    # 1.13's Embedding Model reads `model` as a model selection, not the export's dropdown value
    "EmbeddingModel-eZ6bT": (
        "kept frozen: installed code reads fields differently "
        "(model: DropdownInput -> ModelInput; provider: DropdownInput -> StrInput)"
    ),
    "DoclingRemote-Dp3PX": (
        "kept frozen: installed code reads fields differently "
        "(api_headers: NestedDictInput -> TableInput; path: list-ness changed)"
    ),
    # The one frozen code that breaks on lfx 1.13: its inputs are unchanged, so it is upgraded.
    "ExportDoclingDocument-zZdRg": (
        f"upgraded to installed code (lfx_docling/components/docling/export_docling_document.py): {UPGRADED}"
    ),
    "DataFrameOperations-1BWXB": (
        "kept frozen: installed code reads fields differently (df: list-ness changed)"
    ),
}


def test_openrag_ingestion_per_node() -> None:
    nodes = flow_nodes("openrag__ingestion_flow.json")
    for node_id, expected in OPENRAG_EXPECTED.items():
        assert describe_code_policy(nodes[node_id]) == expected, node_id
        assert describe_code_policy(nodes[node_id], "frozen") == "kept frozen: policy frozen"


def test_current_export_is_identical_and_unknown_types_stay_frozen() -> None:
    nodes = flow_nodes("langflow_starter_1.13__Research_Translation_Loop.json")
    assert describe_code_policy(nodes["LoopComponent-E7Ur0"]) == "frozen code is the installed code"
    # arXiv moved to a bundle that is not installed here
    assert describe_code_policy(nodes["ArXivComponent-zGqWh"]) == "kept frozen: not in registry"


def test_apply_writes_installed_code_and_joins_line_lists() -> None:
    nodes = flow_nodes("openrag__ingestion_flow.json")
    node = copy.deepcopy(nodes["ExportDoclingDocument-zZdRg"])
    decision = apply_code_policy(node)
    assert decision.upgraded
    assert "coerce_docling_document" in node["node"]["template"]["code"]["value"]

    edited = copy.deepcopy(nodes["SplitText-QIKhg"])
    original = edited["node"]["template"]["code"]["value"]
    edited["node"]["template"]["code"]["value"] = original.split("\n")
    assert not apply_code_policy(edited).upgraded
    assert edited["node"]["template"]["code"]["value"] == original


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown code policy"):
        decide_code(flow_nodes("lfx_template__hello-world.json")["TextInput-J1CQK"], "latest")


def test_describe_is_cheap() -> None:
    """No lfx component module, graph or service is imported to describe a flow."""
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "from stepflow_dagster.runtime import describe_code_policy\n"
        f"d = json.load(open({str(shared_flow('openrag__ingestion_flow.json'))!r}))\n"
        "[describe_code_policy(n['data']) for n in d['data']['nodes'] if n.get('type') == 'genericNode']\n"
        "heavy = ('lfx.graph', 'lfx.components', 'pandas')\n"
        "print(time.perf_counter() - t, any(m.startswith(heavy) for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1] == "False"
    assert float(out[0]) < 5.0


LANGUAGE_MODELS_1_5 = {
    "langflow_starter__Basic_Prompting.json": "LanguageModelComponent-kBOja",
    "langflow_starter__Document_Q_A.json": "LanguageModelComponent-htMuI",
    "langflow_starter__Memory_Chatbot.json": "LanguageModelComponent-n8KRg",
    "langflow_starter__Vector_Store_RAG.json": "LanguageModelComponent-cAjdO",
}


@pytest.mark.parametrize("name", sorted(LANGUAGE_MODELS_1_5))
def test_old_language_model_keeps_its_code_with_a_warning(name: str) -> None:
    """1.13 reads `provider`/`model_name` as overrides of a model selection the export does not have."""
    decision = decide_code(flow_nodes(name)[LANGUAGE_MODELS_1_5[name]])
    assert not decision.upgraded and decision.code is None
    assert decision.warning is not None
    assert "provider: DropdownInput -> StrInput" in decision.warning
    assert "model_name: DropdownInput -> StrInput" in decision.warning


@pytest.mark.parametrize(
    "name",
    [
        "openrag__ingestion_flow.json",
        "openrag__ingestion_flow_v17.json",
        "openrag__openrag_ingest_docling.json",
    ],
)
def test_export_docling_document_is_upgraded_in_every_openrag_flow(name: str) -> None:
    nodes = flow_nodes(name)
    export = [d for d in nodes.values() if d["type"] == "ExportDoclingDocument"]
    assert export and all(decide_code(d).upgraded for d in export)


def _installed_template(code: str) -> dict:
    """The installed component's template as lfx itself builds it (imports the component)."""
    from lfx.custom.utils import create_component_template

    template, _ = create_component_template({"code": code, "output_types": []})
    return template["template"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_SHARED)
def test_upgraded_code_reads_every_field_of_the_export(name: str) -> None:
    """Under the default policy, a node that runs installed code finds every field of its template among
    the installed inputs as lfx builds them, with the same list-ness and a compatible input type."""
    from stepflow_dagster.runtime.code_inputs import HANDLE_INPUTS, TEXT_INPUTS, template_inputs

    renames = {"JSON": "Data", "Table": "DataFrame"}
    for node_id, data in flow_nodes(name).items():
        decision = decide_code(data)
        if not decision.upgraded:
            continue
        assert decision.code is not None
        installed = _installed_template(decision.code)
        for field_name, old in template_inputs(data).items():
            new = installed.get(field_name)
            where = f"{name} {node_id}.{field_name}"
            assert isinstance(new, dict), f"{where}: not an installed input"
            assert bool(old.get("list")) == bool(new.get("list")), where
            old_kind, new_kind = old.get("_input_type"), new.get("_input_type")
            if old_kind is None:  # exports before `_input_type`
                assert old.get("type") == new.get("type"), where
            elif old_kind != new_kind and not {old_kind, new_kind} <= TEXT_INPUTS:
                accepted = {renames.get(t, t) for t in old.get("input_types") or ["Message"]}
                offered = {renames.get(t, t) for t in new.get("input_types") or []}
                assert new_kind in HANDLE_INPUTS and accepted <= offered, f"{where}: {old_kind} -> {new_kind}"
            if old_kind == "DropdownInput" and old.get("value") and not new.get("combobox"):
                assert old["value"] in new.get("options", []), where


def test_upgrade_asked_for_by_name_runs_the_installed_code_with_a_warning() -> None:
    node = flow_nodes("langflow_starter__Basic_Prompting.json")["LanguageModelComponent-kBOja"]
    decision = decide_code(node, "upgrade")
    assert decision.upgraded and decision.code is not None
    assert decision.warning is not None and "provider: DropdownInput -> StrInput" in decision.warning


def test_decisions_are_kept_on_disk_per_node_and_survive_a_corrupt_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process (a step, a pod) reads the decision instead of parsing the installed code again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    nodes = flow_nodes("lfx_template__hello-world.json")
    node = next(n for n in nodes.values() if n["type"] == "TextInput")
    first = decide_code(node)
    assert first.upgraded
    (entry,) = (tmp_path / "stepflow-dagster" / "code-decisions").glob("*.json")
    assert decide_code(node) == first
    entry.write_text("{not json")
    assert decide_code(node) == first  # a damaged entry is decided again, and rewritten
    edited = copy.deepcopy(node)
    edited["node"]["edited"] = True
    assert decide_code(edited).description == "kept frozen: edited"  # another node, another entry
    assert len(list(entry.parent.glob("*.json"))) == 2

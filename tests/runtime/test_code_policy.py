from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from stepflow_dagster.runtime import apply_code_policy, decide_code, describe_code_policy
from tests.conftest import shared_flow
from tests.runtime.conftest import flow_nodes

OPENRAG_EXPECTED = {
    "SplitText-QIKhg": "kept frozen: edited",
    "OpenSearchHybrid-Ve6bS": "kept frozen: edited; patched: k-NN method by engine",
    "AdvancedDynamicFormBuilder-81Exw": "kept frozen: edited",
    "SecretInput-F34VJ": "kept frozen: edited",
    "EmbeddingModel-eZ6bT": "upgraded to installed code (lfx core index)",
    "DoclingRemote-Dp3PX": "upgraded to installed code (lfx_docling/components/docling/docling_remote.py)",
    "ExportDoclingDocument-zZdRg": (
        "upgraded to installed code (lfx_docling/components/docling/export_docling_document.py)"
    ),
    "DataFrameOperations-1BWXB": "upgraded to installed code (lfx core index)",
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

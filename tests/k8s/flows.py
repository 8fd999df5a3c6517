"""A test flow whose steps land on every pool: Text Input (cpu) -> DoclingProbe (docling) ->
EmbeddingProbe (gpu) -> Tag (cpu) -> Chat Output (cpu); built from tests/flows/flaky.json's nodes.

Each probe tags the text, so the run's output shows that every step ran, in order.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

CODE = """from lfx.custom import Component
from lfx.io import MessageTextInput, Output
from lfx.schema.message import Message


class {name}(Component):
    display_name = "{name}"
    name = "{name}"
    inputs = [MessageTextInput(name="input_value", display_name="Input")]
    outputs = [Output(display_name="Out", name="out", method="tag")]

    def tag(self) -> Message:
        return Message(text=f"{name}({{self.input_value}})")
"""

CHAIN = [("DoclingProbe", "dcl01"), ("EmbeddingProbe", "emb01"), ("Tag", "tag01")]
EXPECTED = "Tag(EmbeddingProbe(DoclingProbe({text})))"


def _edge(source: str, source_type: str, output: str, target: str) -> dict[str, Any]:
    return {
        "source": source,
        "target": target,
        "data": {
            "sourceHandle": {
                "dataType": source_type,
                "id": source,
                "name": output,
                "output_types": ["Message"],
            },
            "targetHandle": {
                "fieldName": "input_value",
                "id": target,
                "inputTypes": ["Message"],
                "type": "str",
            },
        },
    }


def pools_flow(name: str = "pools") -> dict[str, Any]:
    base = json.loads((ROOT / "tests" / "flows" / "flaky.json").read_text())
    by_type = {n["data"]["type"]: n for n in base["data"]["nodes"]}
    nodes = [by_type["TextInput"], by_type["ChatOutput"]]
    edges = []
    prev, prev_type, prev_out = by_type["TextInput"]["id"], "TextInput", "text"
    for kind, suffix in CHAIN:
        node = copy.deepcopy(by_type["Flaky"])
        node_id = f"{kind}-{suffix}"
        node["id"] = node["data"]["id"] = node_id
        node["data"]["type"] = kind
        spec = node["data"]["node"]
        spec["display_name"] = kind
        spec["template"]["code"]["value"] = CODE.format(name=kind)
        spec["outputs"][0]["method"] = "tag"
        spec["metadata"] = {"component_class_name": kind}
        nodes.append(node)
        edges.append(_edge(prev, prev_type, prev_out, node_id))
        prev, prev_type, prev_out = node_id, kind, "out"
    edges.append(_edge(prev, prev_type, prev_out, by_type["ChatOutput"]["id"]))
    return {"name": name, "data": {"nodes": nodes, "edges": edges}, "last_tested_version": "1.13.0"}


def write_pools_flow(folder: Path, name: str = "pools") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(pools_flow(name), indent=1))
    # The probes are custom components: their code runs because the deployment file trusts it.
    ids = ", ".join(f"{kind}-{suffix}" for kind, suffix in CHAIN)
    path.with_suffix(".yaml").write_text(f"run: {{trust: {{nodes: [{ids}]}}}}\n")
    return path

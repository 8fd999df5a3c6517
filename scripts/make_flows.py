"""Write the project's own flows as Langflow exports, built with lfx's own components and graph dump.

    uv run python scripts/make_flows.py

The output is committed (flows/document_chunks.json, tests/flows/*.json); rerun after an lfx upgrade.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from lfx.components.files_and_knowledge.directory import DirectoryComponent
from lfx.components.flow_controls.conditional_router import ConditionalRouterComponent
from lfx.components.input_output import ChatOutput, TextInputComponent
from lfx.components.processing.parser import ParserComponent
from lfx.components.processing.split_text import SplitTextComponent
from lfx.graph import Graph

ROOT = Path(__file__).resolve().parents[1]


def document_chunks() -> dict:
    """Directory -> Split Text -> Parser -> Chat Output: real document work, offline."""
    folder = DirectoryComponent(_id="Directory-docs1")
    folder.set(path="flows/samples/docs", types=["md", "txt", "html"])
    split = SplitTextComponent(_id="SplitText-chnk1")
    split.set(data_inputs=folder.as_dataframe, chunk_size=200, chunk_overlap=0, separator="\n\n")
    parse = ParserComponent(_id="ParserComponent-prs01")
    parse.set(input_data=split.split_text, mode="Parser", pattern="[{file_path}] {text}", sep="\n---\n")
    out = ChatOutput(_id="ChatOutput-out01")
    out.set(input_value=parse.parse_combined_text)
    return Graph(folder, out).dump(
        name="Document Chunks",
        description="Reads the documents of a folder, splits them into chunks and prints the chunks.",
    )


def router() -> dict:
    """Text Input -> If-Else router -> one of two Chat Outputs: the branch not taken must not run."""
    text = TextInputComponent(_id="TextInput-rt001")
    text.set(input_value="this is urgent")
    route = ConditionalRouterComponent(_id="ConditionalRouter-rt002")
    route.set(input_text=text.text_response, operator="contains", match_text="urgent")
    urgent = ChatOutput(_id="ChatOutput-urgnt")
    urgent.set(input_value=route.true_response)
    normal = ChatOutput(_id="ChatOutput-norml")
    normal.set(input_value=route.false_response)
    graph = Graph()
    for component in (text, route, urgent, normal):
        graph.add_component(component)
    graph.prepare()
    return graph.dump(name="Urgent Router", description="Routes a text to one of two outputs.")


def _node(node_id: str, code_file: Path, **values: object) -> dict:
    """A node for a custom component's source, as Langflow's editor exports it (``values``: field values)."""
    from lfx.custom.utils import create_component_template

    template, _ = create_component_template({"code": code_file.read_text(), "output_types": []})
    for field, value in values.items():
        template["template"][field]["value"] = value
    node_type = node_id.split("-")[0]
    data = {"id": node_id, "type": node_type, "node": template}
    return {"id": node_id, "type": "genericNode", "data": data}


def _stock(component: object) -> dict:
    node = component.to_frontend_node()  # type: ignore[attr-defined]
    return {"id": node["id"], "type": "genericNode", "data": node["data"]}


def _edge(source: str, output: str, target: str, field: str) -> dict:
    sh = {"dataType": source.split("-")[0], "id": source, "name": output, "output_types": ["Message"]}
    th = {"fieldName": field, "id": target, "inputTypes": ["Message"], "type": "str"}
    return {"source": source, "target": target, "data": {"sourceHandle": sh, "targetHandle": th}}


def custom_flows() -> dict[str, dict]:
    """Flows of custom components from tests/fixtures/runtime: a secret probe, a flaky step, leaky ones."""
    fixtures = ROOT / "tests/fixtures/runtime"
    text = TextInputComponent(_id="TextInput-in001")
    text.set(input_value="some text")
    out = ChatOutput(_id="ChatOutput-out01")
    probe = {
        "name": "Secret Probe",
        "data": {
            "nodes": [_node("SecretProbe-sp001", fixtures / "secret_probe.py"), _stock(out)],
            "edges": [_edge("SecretProbe-sp001", "probe", "ChatOutput-out01", "input_value")],
        },
    }
    flaky = {
        "name": "Flaky",
        "data": {
            "nodes": [_stock(text), _node("Flaky-fl001", fixtures / "flaky.py"), _stock(out)],
            "edges": [
                _edge("TextInput-in001", "text", "Flaky-fl001", "input_value"),
                _edge("Flaky-fl001", "out", "ChatOutput-out01", "input_value"),
            ],
        },
    }
    # Two careless components: one returns its key, one raises with it (tests/security/test_leaks.py).
    leaky = {
        "name": "Leaky",
        "data": {
            "nodes": [
                _node("Leaky-ok001", fixtures / "leaky.py"),
                _node("Leaky-bad01", fixtures / "leaky.py", mode="raise"),
                _stock(out),
            ],
            "edges": [_edge("Leaky-ok001", "out", "ChatOutput-out01", "input_value")],
        },
    }
    return {"secret_probe": probe, "flaky": flaky, "leaky": leaky}


def main() -> None:
    for path, doc in (
        (ROOT / "flows/document_chunks.json", document_chunks()),
        (ROOT / "tests/flows/router.json", router()),
        *((ROOT / f"tests/flows/{name}.json", doc) for name, doc in custom_flows().items()),
    ):
        doc["last_tested_version"] = version("lfx")
        doc["data"]["edges"].sort(key=lambda e: (e["source"], e["target"]))  # lfx dumps edges in set order
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()

"""Flow -> FlowPlan: one step per component, a Loop and its body one step, wired edge by edge."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from ..flow import Flow, Node, topological_order
from ..flow.analysis import (
    file_fields,
    flow_inputs,
    flow_outputs,
    is_live,
    literal_credentials,
    loops,
    variables,
)
from ..flow.gcpause import gc_paused
from .model import Component, FlowEnd, FlowPlan, InnerEdge, Source, Step, StepInput, StepOutput, Variable
from .names import safe_name, unique_names

# First match wins: a vector store that embeds ("...MultiEmbedding") is a vector store.
_CATEGORY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("docling", re.compile(r"docling", re.I)),
    (
        "vector_store",
        re.compile(r"vectorstore|opensearch|astradb|chroma|pgvector|qdrant|faiss|milvus|weaviate", re.I),
    ),
    ("embeddings", re.compile(r"embedding", re.I)),
    ("llm", re.compile(r"languagemodel|agent|openaimodel|chatmodel|ollamamodel|anthropic|llm", re.I)),
)
_CATEGORY_BY_OUTPUT = {"Embeddings": "embeddings", "VectorStore": "vector_store", "LanguageModel": "llm"}
_CATEGORY_RANK = ("docling", "embeddings", "llm", "vector_store", "general")


def category(node: Node) -> str:
    """Where the component should run: by its type name, else by what its outputs produce."""
    for name, pattern in _CATEGORY_RULES:
        if pattern.search(node.type):
            return name
    for out in node.outputs:
        for t in out.types:
            if t in _CATEGORY_BY_OUTPUT:
                return _CATEGORY_BY_OUTPUT[t]
    return "general"


def job_name(flow: Flow) -> str:
    return safe_name(flow.name).lower()


@dataclass
class _Grouping:
    """Which step each node belongs to, and the Dagster name of each output that leaves a step."""

    mains: list[str]  # the main node of each step, in run order
    members: dict[str, list[str]]  # main node -> nodes of its step
    step_name: dict[str, str]  # node -> step name
    outputs: dict[tuple[str, str], StepOutput]  # (node, langflow output) -> step output
    node_outputs: dict[str, list[StepOutput]]  # node -> its step outputs, in order


@gc_paused
def plan_flow(flow: Flow, *, keep_credentials: bool = False) -> FlowPlan:
    """Convert a validated flow. Literal credentials become variable references unless `keep_credentials`."""
    grouping = _group(flow)
    steps = tuple(_step(flow, main, grouping, keep_credentials) for main in grouping.mains)
    inputs = []
    for end in flow_inputs(flow):
        fields = ["input_value"] if end.kind == "message" else file_fields(flow.nodes[end.node])
        inputs.append(FlowEnd(end.node, grouping.step_name[end.node], end.kind, fields[0] if fields else ""))
    outputs = []
    for end in flow_outputs(flow):
        produced = grouping.node_outputs.get(end.node, [])
        outputs.append(
            FlowEnd(end.node, grouping.step_name[end.node], "output", produced[0].name if produced else "")
        )
    return FlowPlan(
        flow=flow.name,
        name=job_name(flow),
        source=flow.source,
        langflow_version=flow.langflow_version,
        steps=steps,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        description=flow.description,
    )


def _group(flow: Flow) -> _Grouping:
    members: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for loop in loops(flow):
        members[loop.node] = [loop.node, *loop.body]
        for node_id in loop.body:
            owner[node_id] = loop.node
    mains = [n for n in topological_order(flow) if n not in owner]
    names = dict(zip(mains, unique_names(mains), strict=True))
    step_name = {n: names[owner.get(n, n)] for n in flow.nodes}
    outputs: dict[tuple[str, str], StepOutput] = {}
    for main in mains:
        group = members.setdefault(main, [main])
        specs = [
            (node_id, out) for node_id in group for out in _outputs_to_compute(flow, node_id, set(group))
        ]
        labels = [out if len(group) == 1 else f"{node_id}_{out}" for node_id, out in specs]
        for (node_id, out), out_name in zip(specs, unique_names(labels), strict=True):
            output = flow.nodes[node_id].output(out)
            assert output is not None  # validated by the parser
            outputs[(node_id, out)] = StepOutput(out_name, node_id, out, output.types, is_live(output.types))
    node_outputs: dict[str, list[StepOutput]] = {}
    for (node_id, _), step_output in outputs.items():
        node_outputs.setdefault(node_id, []).append(step_output)
    return _Grouping(mains, members, step_name, outputs, node_outputs)


def _outputs_to_compute(flow: Flow, node_id: str, members: set[str]) -> list[str]:
    """The outputs that edges leaving the step name; all of them for a node without outgoing edges."""
    node = flow.nodes[node_id]
    edges = flow.outgoing(node_id)
    if not edges:
        return [o.name for o in node.outputs]
    named = {e.source_output for e in edges if e.target not in members}
    return [o.name for o in node.outputs if o.name in named]


def _component(node: Node, keep_credentials: bool) -> tuple[Component, list[Variable]]:
    found = [Variable(use.variable, node.id, use.field) for use in variables(node)]
    data = dict(node.data)
    credentials = [] if keep_credentials else literal_credentials(node)
    if credentials:
        data = copy.deepcopy(data)
        for cred in credentials:
            spec = data["node"]["template"][cred.field]
            spec["value"], spec["load_from_db"] = cred.variable, True
            found.append(Variable(cred.variable, node.id, cred.field, origin="credential"))
    return Component(node.id, node.type, node.display_name, data), found


def _step(flow: Flow, main: str, grouping: _Grouping, keep_credentials: bool) -> Step:
    group = grouping.members[main]
    in_group = set(group)
    components, step_vars = [], []
    for node_id in group:
        component, found = _component(flow.nodes[node_id], keep_credentials)
        components.append(component)
        step_vars.extend(found)

    # Inputs: edges from other steps, grouped by (node, field) so that a list field takes several sources.
    sources: dict[tuple[str, str], list[Source]] = {}
    live: dict[tuple[str, str], bool] = {}
    inner = []
    for node_id in group:
        edges = flow.incoming(node_id) + flow.feedback(node_id)
        for edge in edges:
            if edge.source in in_group:
                inner.append(
                    InnerEdge(
                        edge.source,
                        edge.source_output,
                        edge.target,
                        edge.target_field,
                        edge.loop_feedback,
                        dict(edge.source_handle),
                        dict(edge.target_handle),
                    )
                )
                continue
            key = (node_id, edge.target_field)
            producer = grouping.outputs[(edge.source, edge.source_output)]
            sources.setdefault(key, []).append(Source(grouping.step_name[edge.source], producer.name))
            live[key] = live.get(key, False) or is_live(edge.output_types)
    labels = [field if len(group) == 1 else f"{node_id}_{field}" for node_id, field in sources]
    inputs = tuple(
        StepInput(
            name,
            node_id,
            field,
            tuple(srcs),
            flow.nodes[node_id].is_list_field(field),
            live[(node_id, field)],
        )
        for ((node_id, field), srcs), name in zip(sources.items(), unique_names(labels), strict=True)
    )
    head = flow.nodes[main]
    categories = {category(flow.nodes[n]) for n in group}
    return Step(
        name=grouping.step_name[main],
        node_id=main,
        component_type=head.type,
        display_name=head.display_name,
        # A loop step runs where its most demanding member must run.
        category=next(c for c in _CATEGORY_RANK if c in categories),
        components=tuple(components),
        inputs=inputs,
        outputs=tuple(o for node_id in group for o in grouping.node_outputs.get(node_id, ())),
        variables=tuple(step_vars),
        inner_edges=tuple(inner),
    )

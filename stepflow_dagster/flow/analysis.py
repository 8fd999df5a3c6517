"""What a person deploying a flow must know about it, derived from the flow model alone."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .model import Edge, Flow, Node

# Values of these types are live Python objects (clients, models): they cannot cross a process boundary.
LIVE_TYPES = frozenset(
    {
        "Embeddings",
        "LanguageModel",
        "BaseLanguageModel",
        "BaseChatModel",
        "VectorStore",
        "Tool",
        "Retriever",
        "BaseRetriever",
        "Memory",
        "BaseChatMemory",
        "BaseChatMessageHistory",
        "AgentExecutor",
        "Callable",
    }
)
INPUT_TYPES = frozenset({"ChatInput", "TextInput"})
OUTPUT_TYPES = frozenset({"ChatOutput", "TextOutput"})
_CREDENTIAL_NAME = re.compile(r"(^|_)(password|passwd|secret|token|api_?key|access_?key|credentials?)$", re.I)


@dataclass(frozen=True)
class VariableUse:
    variable: str
    node: str
    field: str


@dataclass(frozen=True)
class CredentialWarning:
    node: str
    field: str
    variable: str  # the variable `convert` puts in the value's place

    @property
    def message(self) -> str:
        return (
            f"node {self.node!r} field {self.field!r} holds a literal credential; "
            f"convert replaces it with variable {self.variable}"
        )


@dataclass(frozen=True)
class EmptyCredential:
    """A credential field the export leaves empty (no value, no variable, no edge): the run must fill it."""

    node: str
    field: str
    display_name: str  # the field's label in Langflow
    hidden: bool = False  # hidden in the export: its option (provider, auth mode) is not the one selected


@dataclass(frozen=True)
class CodeNeedingTrust:
    """A node whose code is not stock Langflow code: it runs only if the deployment file trusts it
    (runtime/trust.py decides; analyze fills this in)."""

    node: str
    display_name: str
    reason: str
    sha256: str
    trusted: bool  # by the deployment file beside the export


@dataclass(frozen=True)
class EdgeInfo:
    source: str
    output: str
    target: str
    field: str
    value_type: str
    live: bool
    loop_feedback: bool


@dataclass(frozen=True)
class Loop:
    node: str
    body: tuple[str, ...]


@dataclass(frozen=True)
class FlowIO:
    node: str
    type: str
    kind: str  # message | file | output


@dataclass
class Analysis:
    flow: str
    langflow_version: str | None
    node_count: int
    edge_count: int
    components: dict[str, int]
    edges: list[EdgeInfo]
    live_edges: list[EdgeInfo]
    loops: list[Loop]
    routers: list[str]
    variables: list[VariableUse]
    warnings: list[CredentialWarning]
    empty_credentials: list[EmptyCredential]
    inputs: list[FlowIO]
    outputs: list[FlowIO]
    code_policy: dict[str, str] = field(default_factory=dict)  # node -> what runs and why (--code-policy)
    # node -> why the export's code is kept although an installed version exists (--code-policy)
    code_warnings: dict[str, str] = field(default_factory=dict)
    # Nodes whose code is not stock (edited, custom, code-executing): the deployment must trust them.
    code_trust: list[CodeNeedingTrust] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["warnings"] = [{**asdict(w), "message": w.message} for w in self.warnings]
        return doc


def edge_value_type(edge: Edge) -> str:
    return " | ".join(edge.output_types) or "unknown"


def is_live(types: tuple[str, ...]) -> bool:
    return any(t in LIVE_TYPES for t in types)


def variables(node: Node) -> list[VariableUse]:
    """`load_from_db` fields: their value names a variable, resolved at run time."""
    found = []
    for name, spec in node.template.items():
        value = spec.get("value") if isinstance(spec, dict) and spec.get("load_from_db") else None
        if isinstance(value, str) and value.strip():
            found.append(VariableUse(value.strip(), node.id, name))
    return found


def credential_variable(node: Node, field_name: str) -> str:
    """A stable, readable variable name for a literal credential taken out of a flow."""
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{node.id}_{field_name}").strip("_").upper()


def _is_credential(name: str, spec: dict[str, Any]) -> bool:
    return bool(spec.get("password")) or bool(_CREDENTIAL_NAME.search(name) and spec.get("type") == "str")


def literal_credentials(node: Node) -> list[CredentialWarning]:
    found = []
    for name, spec in node.template.items():
        if not isinstance(spec, dict) or spec.get("load_from_db"):
            continue
        value = spec.get("value")
        if not isinstance(value, str) or not value.strip():
            continue
        if _is_credential(name, spec):
            found.append(CredentialWarning(node.id, name, credential_variable(node, name)))
    return found


def empty_credentials(flow: Flow, node: Node) -> list[EmptyCredential]:
    """Credential fields with no value, no variable and no edge feeding them."""
    fed = {e.target_field for e in flow.incoming(node.id)}
    found = []
    for name, spec in node.template.items():
        if not isinstance(spec, dict) or name in fed or not _is_credential(name, spec):
            continue
        value = spec.get("value")
        if value is None or (isinstance(value, str) and not value.strip()):
            label = str(spec.get("display_name") or name)
            found.append(EmptyCredential(node.id, name, label, hidden=spec.get("show") is False))
    return found


def is_router(node: Node) -> bool:
    """A router stops the branches it does not take (`self.stop(...)` in its code)."""
    return len(node.outputs) > 1 and "self.stop(" in (node.code or "")


def loops(flow: Flow) -> list[Loop]:
    """Each Loop component with its body: nodes on a path from the loop's outputs back to it."""
    found = []
    for node in flow.nodes.values():
        feedback = [e.source for e in flow.feedback(node.id)]
        if not feedback:
            continue
        downstream = _reach(flow, [node.id], forward=True)
        upstream = _reach(flow, feedback, forward=False)
        body = [n for n in flow.nodes if n in downstream and n in upstream and n != node.id]
        found.append(Loop(node.id, tuple(body)))
    return found


def _reach(flow: Flow, start: list[str], *, forward: bool) -> set[str]:
    seen = set(start)
    stack = list(start)
    while stack:
        node_id = stack.pop()
        edges = flow.outgoing(node_id) if forward else flow.incoming(node_id)
        for edge in edges:
            if edge.loop_feedback:
                continue
            nxt = edge.target if forward else edge.source
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def file_fields(node: Node) -> list[str]:
    return [n for n, s in node.template.items() if isinstance(s, dict) and s.get("type") == "file"]


def flow_inputs(flow: Flow) -> list[FlowIO]:
    found = []
    for node in flow.nodes.values():
        if node.type in INPUT_TYPES:
            found.append(FlowIO(node.id, node.type, "message"))
        elif file_fields(node):
            found.append(FlowIO(node.id, node.type, "file"))
    return found


def flow_outputs(flow: Flow) -> list[FlowIO]:
    chat = [n for n in flow.nodes.values() if n.type in OUTPUT_TYPES]
    nodes = chat or [n for n in flow.nodes.values() if not flow.outgoing(n.id)]
    return [FlowIO(n.id, n.type, "output") for n in nodes]


def analyze(flow: Flow) -> Analysis:
    edges = [
        EdgeInfo(
            source=e.source,
            output=e.source_output,
            target=e.target,
            field=e.target_field,
            value_type=edge_value_type(e),
            live=is_live(e.output_types),
            loop_feedback=e.loop_feedback,
        )
        for e in flow.edges
    ]
    nodes = list(flow.nodes.values())
    return Analysis(
        flow=flow.name,
        langflow_version=flow.langflow_version,
        node_count=len(nodes),
        edge_count=len(edges),
        components=dict(sorted(Counter(n.type for n in nodes).items())),
        edges=edges,
        live_edges=[e for e in edges if e.live],
        loops=loops(flow),
        routers=[n.id for n in nodes if is_router(n) and not any(o.allows_loop for o in n.outputs)],
        variables=[v for n in nodes for v in variables(n)],
        warnings=[w for n in nodes for w in literal_credentials(n)],
        empty_credentials=[c for n in nodes for c in empty_credentials(flow, n)],
        inputs=flow_inputs(flow),
        outputs=flow_outputs(flow),
    )

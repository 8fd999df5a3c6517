"""The flow model: what a Langflow export holds once notes are dropped and groups flattened."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Output:
    name: str  # the handle that edges name
    method: str | None
    types: tuple[str, ...]
    allows_loop: bool = False


@dataclass(frozen=True, eq=False)
class Node:
    id: str
    type: str  # the component class key (data.type)
    display_name: str
    outputs: tuple[Output, ...]
    # The node's raw `data` object: what lfx needs to build the component (template, code, outputs).
    data: Mapping[str, Any] = field(repr=False)

    @property
    def template(self) -> Mapping[str, Any]:
        template: Mapping[str, Any] = self.data["node"]["template"]
        return template

    @property
    def edited(self) -> bool:
        return bool(self.data["node"].get("edited"))

    @property
    def code(self) -> str | None:
        value = (
            self.template.get("code", {}).get("value")
            if isinstance(self.template.get("code"), dict)
            else None
        )
        if isinstance(value, list):  # newer exports store the source as a list of lines
            return "\n".join(value)
        return value if isinstance(value, str) else None

    def output(self, name: str) -> Output | None:
        return next((o for o in self.outputs if o.name == name), None)

    def field_spec(self, name: str) -> Mapping[str, Any] | None:
        spec = self.template.get(name)
        return spec if isinstance(spec, dict) else None

    def is_list_field(self, name: str) -> bool:
        spec = self.field_spec(name)
        return bool(spec and spec.get("list"))


@dataclass(frozen=True)
class Edge:
    source: str
    source_output: str
    output_types: tuple[str, ...]
    target: str
    # The target's field; for a loop's feedback edge, the target's output that takes the item back.
    target_field: str
    input_types: tuple[str, ...]
    loop_feedback: bool = False
    # The export's `data.sourceHandle` / `data.targetHandle` objects, kept whole: lfx checks them when it
    # builds a graph (a loop's sub-graph), and types rebuilt from the outputs would not match.
    source_handle: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    target_handle: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True, eq=False)
class Flow:
    name: str
    nodes: Mapping[str, Node]  # in file order
    edges: tuple[Edge, ...]
    langflow_version: str | None = None
    description: str = ""
    source: str = ""  # where the flow was read from

    def incoming(self, node_id: str) -> list[Edge]:
        """Edges that feed the node's fields (a loop's feedback edges excluded), in file order."""
        return self._index[0].get(node_id, [])

    def outgoing(self, node_id: str) -> list[Edge]:
        return self._index[1].get(node_id, [])

    def feedback(self, node_id: str) -> list[Edge]:
        """A Loop component's feedback edges: the item taken back from the loop's body."""
        return self._index[2].get(node_id, [])

    @cached_property
    def _index(self) -> tuple[dict[str, list[Edge]], dict[str, list[Edge]], dict[str, list[Edge]]]:
        incoming: dict[str, list[Edge]] = {}
        outgoing: dict[str, list[Edge]] = {}
        feedback: dict[str, list[Edge]] = {}
        for edge in self.edges:
            (feedback if edge.loop_feedback else incoming).setdefault(edge.target, []).append(edge)
            outgoing.setdefault(edge.source, []).append(edge)
        return incoming, outgoing, feedback

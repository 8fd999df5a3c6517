"""The plan: a flow converted into steps, one per component (a Loop and its body: one step).

Plain dataclasses, with `to_dict`/`from_dict` so that the YAML form loads back into an equal plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Source:
    step: str  # the producing step
    output: str  # that step's output name (a StepOutput.name)


@dataclass(frozen=True)
class StepInput:
    name: str  # Dagster input name
    node: str  # the node id whose field it feeds
    field: str  # the Langflow field name
    sources: tuple[Source, ...]
    is_list: bool = False
    live: bool = False  # carries a live object: the consumer rebuilds the producer


@dataclass(frozen=True)
class StepOutput:
    name: str  # Dagster output name
    node: str
    output: str  # the Langflow output name
    types: tuple[str, ...] = ()
    live: bool = False


@dataclass(frozen=True)
class Variable:
    name: str
    node: str
    field: str
    origin: str = "load_from_db"  # or "credential": a literal credential taken out of the flow


@dataclass(frozen=True, eq=True)
class Component:
    """One Langflow component inside a step, with the payload lfx builds it from."""

    node_id: str
    type: str
    display_name: str
    data: dict[str, Any] = field(repr=False, hash=False)


@dataclass(frozen=True)
class InnerEdge:
    """An edge between two components of the same step (loop steps only).

    `source_handle`/`target_handle` are the export's `data.sourceHandle`/`data.targetHandle` objects as
    they are: lfx rebuilds the loop's sub-graph from them and refuses handles whose types do not match.
    """

    source: str
    output: str
    target: str
    field: str
    loop_feedback: bool = False
    # `dataclasses.field`: the name `field` is this record's own attribute.
    source_handle: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    target_handle: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Step:
    name: str  # a valid Dagster identifier, unique in the plan
    node_id: str  # the main node (for a loop step: the Loop component)
    component_type: str
    display_name: str
    category: str  # placement hint: docling, embeddings, llm, vector_store, general
    components: tuple[Component, ...]
    inputs: tuple[StepInput, ...] = ()
    outputs: tuple[StepOutput, ...] = ()
    variables: tuple[Variable, ...] = ()
    inner_edges: tuple[InnerEdge, ...] = ()

    @property
    def is_loop(self) -> bool:
        return len(self.components) > 1

    @property
    def live_outputs(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs if o.live)

    def component(self, node_id: str) -> Component:
        return next(c for c in self.components if c.node_id == node_id)


@dataclass(frozen=True)
class FlowEnd:
    """A flow input (chat/text message, file paths) or output."""

    node: str
    step: str
    kind: str  # message | file | output
    field: str = ""  # the field a message or files go into, or the output read


@dataclass(frozen=True)
class FlowPlan:
    flow: str  # the flow's name
    name: str  # the job name
    source: str
    langflow_version: str | None
    steps: tuple[Step, ...]  # in run order
    inputs: tuple[FlowEnd, ...] = ()
    outputs: tuple[FlowEnd, ...] = ()
    description: str = ""
    version: int = 1  # the plan format

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def step_for_node(self, node_id: str) -> Step:
        return self._by_node[node_id]

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(v for s in self.steps for v in s.variables)

    @cached_property
    def _by_name(self) -> dict[str, Step]:
        return {s.name: s for s in self.steps}

    @cached_property
    def _by_node(self) -> dict[str, Step]:
        return {c.node_id: s for s in self.steps for c in s.components}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FlowPlan:
        steps = tuple(
            Step(
                name=s["name"],
                node_id=s["node_id"],
                component_type=s["component_type"],
                display_name=s["display_name"],
                category=s["category"],
                components=tuple(Component(**c) for c in s["components"]),
                inputs=tuple(
                    StepInput(**{**i, "sources": tuple(Source(**src) for src in i["sources"])})
                    for i in s["inputs"]
                ),
                outputs=tuple(StepOutput(**{**o, "types": tuple(o["types"])}) for o in s["outputs"]),
                variables=tuple(Variable(**v) for v in s["variables"]),
                inner_edges=tuple(_inner_edge(e) for e in s["inner_edges"]),
            )
            for s in doc["steps"]
        )
        return cls(
            flow=doc["flow"],
            name=doc["name"],
            source=doc["source"],
            langflow_version=doc["langflow_version"],
            steps=steps,
            inputs=tuple(FlowEnd(**e) for e in doc["inputs"]),
            outputs=tuple(FlowEnd(**e) for e in doc["outputs"]),
            description=doc.get("description", ""),
            version=doc.get("version", 1),
        )


_INNER_EDGE_FIELDS = frozenset(f.name for f in fields(InnerEdge))


def _inner_edge(doc: dict[str, Any]) -> InnerEdge:
    # Plans written before the handles were kept carry empty `output_types`/`input_types`: dropped.
    return InnerEdge(**{k: v for k, v in doc.items() if k in _INNER_EDGE_FIELDS})

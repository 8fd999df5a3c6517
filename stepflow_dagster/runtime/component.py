"""Build and run one Langflow component in this process with lfx.

The recipe (see DESIGN.md): a one-node lfx graph from the node's payload, upstream values put
into the vertex's raw params, the component instantiated, ``load_from_db`` fields resolved from
the run's variables then the environment, attributes set, and each requested output's method
called on the same instance, in order. Live inputs (Embeddings, VectorStore, ...) are rebuilt
here from their producer's own call, recursively.

lfx is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stepflow_dagster.runtime.code_policy import apply_code_policy
from stepflow_dagster.runtime.codec import Redacted, encode
from stepflow_dagster.runtime.errors import ComponentError

log = logging.getLogger(__name__)
T = TypeVar("T")

_MASK = "**********"


@dataclass(frozen=True)
class ComponentCall:
    """One component to build: its node payload, its input values and the outputs to compute."""

    node_id: str
    node_data: Mapping[str, Any]
    inputs: Mapping[str, Any]
    outputs: Sequence[str]


@dataclass(frozen=True)
class LiveInput:
    """A live object input: the consumer rebuilds ``call`` in its own process and feeds ``output``."""

    call: ComponentCall
    output: str


@dataclass
class RunContext:
    variables: Mapping[str, str]
    tweaks: Mapping[str, Any]
    flow_name: str
    # One policy for every node, or per node id / display name with "*" as the default.
    code_policy: str | Mapping[str, str]
    # Values resolved from variables/environment in this run: never returned, never logged.
    secrets: set[str] = field(default_factory=set)


_LOOP: asyncio.AbstractEventLoop | None = None


def run_until_complete(coro: Coroutine[Any, Any, T]) -> T:
    """Run on one event loop for the life of the process: clients that components cache (httpx, openai)
    are bound to the loop they were made on, and a loop per call would close theirs under them."""
    global _LOOP
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if _LOOP is None or _LOOP.is_closed():
            _LOOP = asyncio.new_event_loop()
        return _LOOP.run_until_complete(coro)
    from lfx.utils.async_helpers import run_until_complete as in_thread  # already inside a loop

    return in_thread(coro)


def policy_for(policy: str | Mapping[str, str], node_id: str, name: str) -> str:
    if isinstance(policy, str):
        return policy
    return policy.get(node_id) or policy.get(name) or policy.get("*") or "upgrade-stock"


def display_name(node_data: Mapping[str, Any]) -> str:
    return str((node_data.get("node") or {}).get("display_name") or node_data.get("type") or "")


def _is_secret_field(f: Mapping[str, Any]) -> bool:
    return bool(f.get("password")) or f.get("_input_type") == "SecretStrInput"


def variable_fields(node_data: Mapping[str, Any]) -> list[str]:
    """Fields whose value names a variable (``load_from_db``) rather than holding a value."""
    template = (node_data.get("node") or {}).get("template") or {}
    return [
        name
        for name, f in template.items()
        if isinstance(f, Mapping) and f.get("load_from_db") and f.get("value") not in (None, "")
    ]


def secret_fields(node_data: Mapping[str, Any]) -> list[str]:
    """Variable fields that are secrets (password / SecretStrInput).

    A serializable output of such a node, and of any node fed by it, may carry the resolved
    secret and comes back :class:`Redacted`: plan such edges as LiveInput so the consumer
    rebuilds the producer in-process. Plain variables (OpenRAG's FILENAME) are not secrets.
    """
    template = (node_data.get("node") or {}).get("template") or {}
    return [name for name in variable_fields(node_data) if _is_secret_field(template[name])]


def run_component(
    call: ComponentCall,
    *,
    variables: Mapping[str, str] | None = None,
    tweaks: Mapping[str, Mapping[str, Any]] | None = None,
    flow_name: str = "",
    code_policy: str | Mapping[str, str] = "upgrade-stock",
) -> dict[str, Any]:
    """Build ``call``'s component here and return ``{output name: value}``.

    Outputs that a router stopped (``stop(output)``) are left out of the result: the caller
    skips what hangs below them. An output that carries a resolved secret comes back as
    :class:`Redacted`. Failures raise :class:`ComponentError`.
    """
    ctx = RunContext(dict(variables or {}), dict(tweaks or {}), flow_name, code_policy)
    result: dict[str, Any] = run_until_complete(_compute(call, ctx, redact=True))
    return result


def component_error(
    ctx: RunContext, call: ComponentCall, exc: BaseException | str, field: str = ""
) -> ComponentError:
    if isinstance(exc, ComponentError):
        return exc
    message = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    for secret in sorted(ctx.secrets, key=len, reverse=True):
        message = message.replace(secret, _MASK)
    return ComponentError(
        message,
        flow_name=ctx.flow_name,
        node_id=call.node_id,
        display_name=display_name(call.node_data),
        field=field,
    )


async def _compute(call: ComponentCall, ctx: RunContext, *, redact: bool) -> dict[str, Any]:
    try:
        inputs = await resolve_inputs(call, ctx)
        with local_file_access():
            component, stopped = await _instantiate(call, inputs, ctx)
            results: dict[str, Any] = {}
            for name in call.outputs:
                results[name] = await compute_output(component, call, name)
    except ComponentError:
        raise
    except Exception as exc:
        raise component_error(ctx, call, exc) from exc
    out: dict[str, Any] = {}
    for name, value in results.items():
        if stopped.get(name):
            continue
        out[name] = redact_output(call, name, value, ctx) if redact else value
    return out


async def resolve_inputs(call: ComponentCall, ctx: RunContext) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for name, value in call.inputs.items():
        if isinstance(value, list):
            resolved[name] = [await _resolve_value(call, name, v, ctx) for v in value]
        else:
            resolved[name] = await _resolve_value(call, name, value, ctx)
    return resolved


async def _resolve_value(call: ComponentCall, field_name: str, value: Any, ctx: RunContext) -> Any:
    if isinstance(value, LiveInput):
        produced = await _compute(value.call, ctx, redact=False)
        if value.output not in produced:
            msg = (
                f"live input {field_name!r}: producer {value.call.node_id!r} stopped output {value.output!r}"
            )
            raise component_error(ctx, call, msg, field_name)
        return produced[value.output]
    if isinstance(value, Redacted):
        msg = (
            f"input {field_name!r} comes from {value.node_id!r}.{value.output}, which carries a secret; "
            "feed it as a LiveInput so it is rebuilt in this process"
        )
        raise component_error(ctx, call, msg, field_name)
    return value


def payload_node(call: ComponentCall, ctx: RunContext) -> dict[str, Any]:
    node_data = copy.deepcopy(dict(call.node_data))
    node_data["id"] = call.node_id
    decision = apply_code_policy(
        node_data, policy_for(ctx.code_policy, call.node_id, display_name(node_data))
    )
    log.debug("node %s code: %s", call.node_id, decision.description)
    if decision.warning:
        log.warning("node %s %s", call.node_id, decision.warning)
    node = {"id": call.node_id, "type": "genericNode", "data": node_data}
    tweaks = _tweaks_for(node_data, call.node_id, ctx.tweaks)
    if tweaks:
        from lfx.processing.process import process_tweaks

        process_tweaks({"nodes": [node]}, tweaks)
    return node


def _tweaks_for(node_data: Mapping[str, Any], node_id: str, tweaks: Mapping[str, Any]) -> dict[str, Any]:
    """The tweaks that reach this node: keyed by its id or display name, or flow-wide scalars."""
    name = (node_data.get("node") or {}).get("display_name")
    selected: dict[str, Any] = {}
    for key, value in tweaks.items():
        if isinstance(value, Mapping):
            if key in (node_id, name):
                selected[node_id] = {**selected.get(node_id, {}), **dict(value)}
        else:
            selected[key] = value
    return selected


async def _instantiate(
    call: ComponentCall, inputs: Mapping[str, Any], ctx: RunContext
) -> tuple[Any, dict[str, bool]]:
    from lfx.graph.graph.base import Graph

    node = payload_node(call, ctx)
    graph = Graph.from_payload(
        {"nodes": [node], "edges": []}, flow_name=ctx.flow_name or None, instantiate_components=False
    )
    return build_vertex_component(graph, call.node_id, inputs, ctx)


def build_vertex_component(
    graph: Any, node_id: str, inputs: Mapping[str, Any], ctx: RunContext
) -> tuple[Any, dict[str, bool]]:
    """Instantiate the component of one vertex of ``graph`` with ``inputs`` as its raw params."""
    from lfx.interface.initialize.loading import instantiate_class

    vertex = graph.get_vertex(node_id)
    if inputs:
        vertex.update_raw_params(dict(inputs), overwrite=True)
    component, params = instantiate_class(vertex)
    vertex.custom_component = component
    _resolve_variables(vertex, params, ctx)
    component.set_attributes(params)
    ctx.secrets.update(s for s in getattr(component, "_secret_values", set()) if isinstance(s, str) and s)
    stopped = _record_stops(graph, node_id)
    # What Component._build_results does before computing outputs.
    for step in ("_ensure_code_execution_policy", "_pre_run_setup_if_needed", "_handle_tool_mode"):
        if hasattr(component, step):
            getattr(component, step)()
    return component, stopped


def _resolve_variables(vertex: Any, params: dict[str, Any], ctx: RunContext) -> None:
    """Resolve ``load_from_db`` fields: the run's variables first, then the environment.

    Done here instead of by lfx: its fallback refuses some names and would look in a database.
    Only variable names are logged, never values. Values of secret fields are remembered so
    that no output carrying them is returned.
    """
    template = (vertex.data.get("node") or {}).get("template") or {}
    for name in list(getattr(vertex, "load_from_db_fields", []) or []):
        if name.startswith("table:"):
            log.warning("table field %s has load_from_db columns; they are not resolved", name[6:])
            continue
        variable = params.get(name)
        if not variable or not isinstance(variable, str):
            continue
        value = ctx.variables.get(variable)
        if value is None:
            value = os.environ.get(variable)
        if value is None:
            log.warning("variable %s for field %s is not set", variable, name)
        elif _is_secret_field(template.get(name) or {}):
            ctx.secrets.add(value)
        params[name] = value


def _record_stops(graph: Any, node_id: str) -> dict[str, bool]:
    """Record ``stop(output)``/``start(output)`` calls; the one-node graph has no branch to mark."""
    stopped: dict[str, bool] = {}

    def mark_branch(vertex_id: str, state: str, output_name: str | None = None) -> None:
        if vertex_id == node_id and output_name:
            stopped[output_name] = str(getattr(state, "value", state)).upper() == "INACTIVE"

    def exclude_branch_conditionally(vertex_id: str, output_name: str | None = None) -> None:
        if vertex_id == node_id and output_name:
            stopped[output_name] = True

    graph.mark_branch = mark_branch
    graph.exclude_branch_conditionally = exclude_branch_conditionally
    return stopped


async def compute_output(component: Any, call: ComponentCall, name: str) -> Any:
    output = component._outputs_map.get(name)
    if output is None:
        # Outputs added at edit time (File's per-type outputs) live only in the node payload.
        declared = next(
            (o for o in (call.node_data.get("node") or {}).get("outputs") or [] if o.get("name") == name),
            None,
        )
        if declared is None or not declared.get("method") or not hasattr(component, declared["method"]):
            known = ", ".join(component._outputs_map) or "none"
            msg = f"component has no output {name!r} (outputs: {known})"
            raise ValueError(msg)
        from lfx.template.field.base import Output

        output = Output(name=name, method=declared["method"], types=declared.get("types") or [])
        component._outputs_map[name] = output
    component._current_output = name
    return await component._get_output_result(output)


def redact_output(call: ComponentCall, name: str, value: Any, ctx: RunContext) -> Any:
    """Replace an output that carries a resolved secret by :class:`Redacted`."""
    if not ctx.secrets:
        return value
    try:
        text = json.dumps(encode(value))
    except TypeError:
        return value  # a live object: never encoded, so it cannot leak through IO storage
    if any(secret in text or json.dumps(secret)[1:-1] in text for secret in ctx.secrets):
        return Redacted(node_id=call.node_id, output=name)
    return value


@contextlib.contextmanager
def local_file_access() -> Iterator[None]:
    """Let a node read the absolute paths a run gives it (file fields, a Directory's path, ...).

    lfx 1.13 confines local files to its storage dir unless restrict_local_file_access is off: that
    guards a multi-user Langflow server; here the paths come from the run's config or the flow. We turn
    it off only while the node builds, and put it back afterwards.
    """
    from lfx.services.deps import get_settings_service

    service = get_settings_service()
    if service is None:  # lfx could not start its settings: nothing to relax
        yield
        return
    settings = service.settings
    previous = settings.restrict_local_file_access
    settings.restrict_local_file_access = False
    try:
        yield
    finally:
        settings.restrict_local_file_access = previous

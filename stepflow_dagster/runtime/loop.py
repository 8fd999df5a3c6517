"""Run a Loop component together with its body as one in-process lfx sub-graph.

lfx 1.13's Loop runs its body itself: on ``done`` it cuts the body vertices out of its own
graph and executes them once per item. So the loop cannot be split across ops; instead the
op holding the loop builds a graph of the loop and its body (with the feedback edge) and asks
the Loop vertex for its outputs. Values entering the sub-graph from outside arrive as inputs,
values leaving it are the requested outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stepflow_dagster.runtime import variables
from stepflow_dagster.runtime.component import (
    BUILD_LOCK,
    ComponentCall,
    RunContext,
    build_vertex_component,
    component_error,
    compute_output,
    is_secret_field,
    local_file_access,
    payload_node,
    redact_output,
    resolve_inputs,
)
from stepflow_dagster.runtime.errors import ComponentError
from stepflow_dagster.runtime.masking import masking


def run_subgraph(
    node_datas: Mapping[str, Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    inputs: Mapping[str, Mapping[str, Any]],
    outputs: Mapping[str, Sequence[str]],
    *,
    variables: Mapping[str, str] | None = None,
    tweaks: Mapping[str, Mapping[str, Any]] | None = None,
    flow_name: str = "",
    code_policy: str | Mapping[str, str] = "upgrade-stock",
) -> dict[str, dict[str, Any]]:
    """Run the nodes ``node_datas`` (node id -> node ``data``) joined by ``edges`` in this process.

    ``inputs``: node id -> {field: value or LiveInput} for edges entering the sub-graph.
    ``outputs``: node id -> output names to return, for edges leaving it (a loop's ``done``).
    Edges naming a node outside ``node_datas`` are ignored. Returns node id -> {output: value},
    stopped outputs left out and secret-carrying ones :class:`Redacted`, like ``run_component``.
    """
    from stepflow_dagster.runtime.component import run_until_complete

    ctx = RunContext(dict(variables or {}), dict(tweaks or {}), flow_name, code_policy)
    result: dict[str, dict[str, Any]] = run_until_complete(
        _arun_subgraph(node_datas, edges, inputs, outputs, ctx)
    )
    return result


async def _arun_subgraph(
    node_datas: Mapping[str, Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    inputs: Mapping[str, Mapping[str, Any]],
    outputs: Mapping[str, Sequence[str]],
    ctx: RunContext,
) -> dict[str, dict[str, Any]]:
    from lfx.graph.graph.base import Graph

    calls = {
        node_id: ComponentCall(node_id, data, inputs.get(node_id, {}), list(outputs.get(node_id, ())))
        for node_id, data in node_datas.items()
    }
    unknown = (set(inputs) | set(outputs)) - set(calls)
    if unknown:
        msg = f"inputs/outputs name nodes outside the sub-graph: {sorted(unknown)}"
        raise ValueError(msg)
    first = next(iter(calls.values()))
    current = first
    error: ComponentError | None = None
    try:
        resolved: dict[str, dict[str, Any]] = {}
        nodes = []
        for node_id, call in calls.items():
            current = call
            resolved[node_id] = await resolve_inputs(call, ctx)
            with BUILD_LOCK:
                node = payload_node(call, ctx)
            # The Loop re-creates its body from these payloads each iteration, so external
            # values must sit in the template too, not only in the vertex's raw params.
            template = node["data"]["node"]["template"]
            for field, value in resolved[node_id].items():
                if isinstance(template.get(field), dict):
                    template[field]["value"] = value
            nodes.append(node)
        inner_edges = [dict(e) for e in edges if e.get("source") in calls and e.get("target") in calls]
        request: dict[str, str] = {}
        for call, node in zip(calls.values(), nodes, strict=True):
            current = call
            request.update(_body_variables(node["data"], ctx))
        current = first
        with BUILD_LOCK:
            graph = Graph.from_payload(
                {"nodes": nodes, "edges": inner_edges},
                flow_name=ctx.flow_name or None,
                # lfx builds the body itself each iteration: hand it every value we resolved (secrets
                # recorded, deny-list applied), and no fallback of its own to the environment.
                context={"request_variables": request, "no_env_fallback": True},
                instantiate_components=False,
            )
        results: dict[str, dict[str, Any]] = {}
        for node_id, names in outputs.items():
            current = calls[node_id]
            with local_file_access(ctx.tweaks), masking():
                with BUILD_LOCK:
                    component, stopped = build_vertex_component(graph, node_id, resolved[node_id], ctx)
                values = {name: await compute_output(component, current, name) for name in names}
            results[node_id] = {
                name: redact_output(current, name, value, ctx)
                for name, value in values.items()
                if not stopped.get(name)
            }
    except Exception as exc:
        error = component_error(ctx, current, exc)
    if error is not None:
        raise error  # outside the except block: no __context__ to carry the original (unmasked) error
    return results


def _body_variables(node_data: Mapping[str, Any], ctx: RunContext) -> dict[str, str]:
    """The values of the variables a sub-graph node names (tweaks applied), as we resolve them."""
    template = (node_data.get("node") or {}).get("template") or {}
    values: dict[str, str] = dict(ctx.variables)
    for field, name in variables.named_variables(node_data):
        value = variables.resolve(field, name, ctx.variables)
        if value is None:
            continue
        if is_secret_field(template.get(field) or {}):
            ctx.remember(value)
        values[name] = value
    for spec in template.values():  # literal values of secret fields (see _resolve_variables)
        if isinstance(spec, Mapping) and is_secret_field(spec) and not spec.get("load_from_db"):
            ctx.remember(spec.get("value"))
    return values

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
import functools
import hashlib
import json
import logging
import os
import threading
import traceback
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stepflow_dagster.runtime import file_access, secrets, variables
from stepflow_dagster.runtime.code_policy import apply_code_policy
from stepflow_dagster.runtime.codec import Redacted, encode
from stepflow_dagster.runtime.errors import TRACEBACK_NOTE, ComponentError
from stepflow_dagster.runtime.masking import masking

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    # Secret values resolved from variables/environment in this run: never returned, never logged.
    # Each is also in the process's registry (runtime/secrets.py), which masks logs, prints and spans.
    secrets: set[str] = field(default_factory=set)
    # Live inputs already rebuilt in this process, shared by the documents of a batch (see live_key).
    live_cache: dict[str, Any] | None = None

    def remember(self, value: object) -> None:
        if isinstance(value, str) and value:
            self.secrets.add(value)
            secrets.remember(value)


_LOOPS = threading.local()


def run_until_complete(coro: Coroutine[Any, Any, T]) -> T:
    """Run on one event loop per thread for the life of the process: clients that components cache
    (httpx, openai) are bound to the loop they were made on, and a loop per call would close theirs under
    them. Per thread, so that a batch can build the documents of one step side by side."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if not running:  # not inside the except block: an error of ``coro`` would get it as __context__
        loop = getattr(_LOOPS, "loop", None)
        if loop is None or loop.is_closed():
            loop = _LOOPS.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)
    from lfx.utils.async_helpers import run_until_complete as in_thread  # already inside a loop

    return in_thread(coro)


def policy_for(policy: str | Mapping[str, str], node_id: str, name: str) -> str:
    if isinstance(policy, str):
        return policy
    return policy.get(node_id) or policy.get(name) or policy.get("*") or "upgrade-stock"


def display_name(node_data: Mapping[str, Any]) -> str:
    return str((node_data.get("node") or {}).get("display_name") or node_data.get("type") or "")


def is_secret_field(f: Mapping[str, Any]) -> bool:
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
    return [name for name in variable_fields(node_data) if is_secret_field(template[name])]


def run_component(
    call: ComponentCall,
    *,
    variables: Mapping[str, str] | None = None,
    tweaks: Mapping[str, Mapping[str, Any]] | None = None,
    flow_name: str = "",
    code_policy: str | Mapping[str, str] = "upgrade-stock",
    live_cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build ``call``'s component here and return ``{output name: value}``.

    Outputs that a router stopped (``stop(output)``) are left out of the result: the caller
    skips what hangs below them. An output that carries a resolved secret comes back as
    :class:`Redacted`. Failures raise :class:`ComponentError`. Calls that pass the same
    ``live_cache`` rebuild an identical live input (same producer, inputs, tweaks and variables) once.
    """
    ctx = RunContext(dict(variables or {}), dict(tweaks or {}), flow_name, code_policy, live_cache=live_cache)
    result: dict[str, Any] = run_until_complete(_compute(call, ctx, redact=True))
    return result


def build_component(
    call: ComponentCall,
    *,
    variables: Mapping[str, str] | None = None,
    tweaks: Mapping[str, Mapping[str, Any]] | None = None,
    flow_name: str = "",
    code_policy: str | Mapping[str, str] = "upgrade-stock",
) -> Any:
    """The component instance of ``call``, built and configured as for a run, without computing outputs.

    For code beside a component that must talk to the same service the same way (a vector store's
    client, with the same URL, authentication and SSL settings); the instance never leaves the process.
    """
    ctx = RunContext(dict(variables or {}), dict(tweaks or {}), flow_name, code_policy)

    async def build() -> Any:
        error: ComponentError | None = None
        try:
            with local_file_access(ctx.tweaks), masking():
                component, _ = await _instantiate(call, await resolve_inputs(call, ctx), ctx)
        except Exception as exc:
            error = component_error(ctx, call, exc)
        if error is not None:
            raise error  # out here, so that it has no __context__ (see component_error)
        return component

    return run_until_complete(build())


def live_key(call: ComponentCall, output: str, ctx: RunContext) -> str | None:
    """What makes two rebuilt live objects the same: producer, output, inputs, its tweaks and variables.

    None when an input has no JSON form (then it is rebuilt every time)."""
    variables = {
        name: ctx.variables.get(str(spec.get("value")), os.environ.get(str(spec.get("value"))))
        for name, spec in ((call.node_data.get("node") or {}).get("template") or {}).items()
        if isinstance(spec, Mapping) and spec.get("load_from_db")
    }
    try:
        inputs = {k: encode(v) for k, v in call.inputs.items()}
        tweaks = _tweaks_for(call.node_data, call.node_id, ctx.tweaks)
        text = json.dumps([call.node_id, output, inputs, tweaks, variables], sort_keys=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def component_error(
    ctx: RunContext, call: ComponentCall, exc: BaseException | str, field: str = ""
) -> ComponentError:
    """A :class:`ComponentError` for ``exc`` that holds no resolved secret and no link to ``exc``.

    Dagster stores an error's whole chain (message and stack of its cause and context), so the
    error must be raised outside of the ``except`` block, or ``from None``: the original traceback
    (its chain included) travels only as a masked note, which Dagster shows with the message.
    """
    if isinstance(exc, ComponentError):
        error = ComponentError(
            secrets.mask(exc.message, ctx.secrets),
            flow_name=exc.flow_name,
            node_id=exc.node_id,
            display_name=exc.display_name,
            field=exc.field,
        )
        for note in getattr(exc, "__notes__", ()):
            error.add_note(secrets.mask(note, ctx.secrets))
        return error
    message = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    error = ComponentError(
        secrets.mask(message, ctx.secrets),
        flow_name=ctx.flow_name,
        node_id=call.node_id,
        display_name=display_name(call.node_data),
        field=field,
    )
    if isinstance(exc, BaseException):
        original = "".join(traceback.format_exception(exc)).rstrip()
        error.add_note(f"{TRACEBACK_NOTE}\n" + secrets.mask(original, ctx.secrets))
    return error


async def _compute(call: ComponentCall, ctx: RunContext, *, redact: bool) -> dict[str, Any]:
    error: ComponentError | None = None
    try:
        inputs = await resolve_inputs(call, ctx)
        with local_file_access(ctx.tweaks), masking():
            component, stopped = await _instantiate(call, inputs, ctx)
            results: dict[str, Any] = {}
            for name in call.outputs:
                results[name] = await compute_output(component, call, name)
    except Exception as exc:
        error = component_error(ctx, call, exc)
    if error is not None:
        raise error  # out here, so that it has no __context__ (see component_error)
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
            items: list[Any] = []
            for v in value:
                got = await _resolve_value(call, name, v, ctx)
                # A live source of a list field that gives a list (a component as tools gives its tools)
                # adds its items, as lfx does: the Agent's `tools` takes tools, not lists of them.
                if isinstance(v, LiveInput) and isinstance(got, list):
                    items.extend(got)
                else:
                    items.append(got)
            resolved[name] = items
        else:
            resolved[name] = await _resolve_value(call, name, value, ctx)
    return resolved


async def _resolve_value(call: ComponentCall, field_name: str, value: Any, ctx: RunContext) -> Any:
    if isinstance(value, LiveInput):
        key = live_key(value.call, value.output, ctx) if ctx.live_cache is not None else None
        if ctx.live_cache is not None and key is not None and key in ctx.live_cache:
            cached, secrets = ctx.live_cache[key]
            ctx.secrets.update(secrets)  # what building it resolved still counts as this run's secrets
            return cached
        produced = await _compute(value.call, ctx, redact=False)
        if value.output not in produced:
            msg = (
                f"live input {field_name!r}: producer {value.call.node_id!r} stopped output {value.output!r}"
            )
            raise component_error(ctx, call, msg, field_name)
        if ctx.live_cache is not None and key is not None:
            ctx.live_cache[key] = (produced[value.output], set(ctx.secrets))
        return produced[value.output]
    if isinstance(value, Redacted):
        msg = (
            f"input {field_name!r} comes from {value.node_id!r}.{value.output}, which carries a secret; "
            "feed it as a LiveInput so it is rebuilt in this process"
        )
        raise component_error(ctx, call, msg, field_name)
    return value


# (node payload digest, policy) -> the code value the node runs: deciding parses the installed code,
# which costs tenths of a second a build, and a batch builds the same node once per document.
_CODE: dict[tuple[str, str], Any] = {}


def _apply_code_policy_cached(node_data: dict[str, Any], policy: str) -> None:
    key = (hashlib.sha256(json.dumps(node_data, sort_keys=True, default=str).encode()).hexdigest(), policy)
    code_field = node_data.get("node", {}).get("template", {}).get("code")
    if key not in _CODE:
        decision = apply_code_policy(node_data, policy)
        log.debug("node %s code: %s", node_data.get("id"), decision.description)
        if decision.warning:  # once per process and node, not once per document
            log.warning("node %s %s", node_data.get("id"), decision.warning)
        _CODE[key] = code_field.get("value") if isinstance(code_field, dict) else None
    elif isinstance(code_field, dict):
        code_field["value"] = _CODE[key]


def payload_node(call: ComponentCall, ctx: RunContext) -> dict[str, Any]:
    node_data = copy.deepcopy(dict(call.node_data))
    node_data["id"] = call.node_id
    _apply_code_policy_cached(node_data, policy_for(ctx.code_policy, call.node_id, display_name(node_data)))
    template = node_data.get("node", {}).get("template", {})
    for name in call.inputs:
        spec = template.get(name)
        if isinstance(spec, dict) and (spec.get("type") == "file" or spec.get("_input_type") == "FileInput"):
            # Fed by an upstream value: the export's stored path (an upload on its Langflow server) is
            # not used, and lfx's file restriction would refuse it before the input replaces it.
            spec["file_path"] = [] if spec.get("list") else ""
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


@functools.cache
def _cache_component_classes() -> None:
    """Build each component class once per process, not once per build.

    lfx compiles the node's code into a class on every instantiation (tens of milliseconds); a batch
    builds the same node once per document. Instances stay per build; only the class is shared.
    """
    from lfx.interface.initialize import loading

    loading.eval_custom_component_code = functools.lru_cache(maxsize=256)(loading.eval_custom_component_code)


async def _instantiate(
    call: ComponentCall, inputs: Mapping[str, Any], ctx: RunContext
) -> tuple[Any, dict[str, bool]]:
    from lfx.graph.graph.base import Graph

    _cache_component_classes()

    with BUILD_LOCK:
        node = payload_node(call, ctx)
        graph = Graph.from_payload(
            {"nodes": [node], "edges": []}, flow_name=ctx.flow_name or None, instantiate_components=False
        )
        graph.set_run_id()  # as a run of lfx's own sets one: agents read it ("Run ID not set")
        return build_vertex_component(graph, call.node_id, inputs, ctx)


# Builds parse and compile component code; CPython 3.11's compiler is not safe to run from two threads at
# once ("AST constructor recursion depth mismatch"), so builds take turns; computing outputs does not.
BUILD_LOCK = threading.RLock()


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
    for value in getattr(component, "_secret_values", set()):
        ctx.remember(value)
    stopped = _record_stops(graph, node_id)
    # What Component._build_results does before computing outputs.
    for step in ("_ensure_code_execution_policy", "_pre_run_setup_if_needed", "_handle_tool_mode"):
        if hasattr(component, step):
            getattr(component, step)()
    return component, stopped


def _resolve_variables(vertex: Any, params: dict[str, Any], ctx: RunContext) -> None:
    """Resolve ``load_from_db`` fields: the run's variables first, then the environment.

    Done here instead of by lfx: its fallback would look in a database, and resolves a deny-listed
    name to None where we refuse it (runtime/variables.py). Only variable names are logged, never
    values. Values of secret fields are remembered so that no output carrying them is returned and
    no text carries them.
    """
    template = (vertex.data.get("node") or {}).get("template") or {}
    for name in list(getattr(vertex, "load_from_db_fields", []) or []):
        if name.startswith("table:"):
            log.warning("table field %s has load_from_db columns; they are not resolved", name[6:])
            continue
        variable = params.get(name)
        if not variable or not isinstance(variable, str):
            continue
        value = variables.resolve(name, variable, ctx.variables)
        if value is None:
            log.warning("variable %s for field %s is not set", variable, name)
        elif is_secret_field(template.get(name) or {}):
            ctx.remember(value)
        params[name] = value
    # A secret field's literal value is a secret too: a deployment tweak "${NAME}" expanded from the
    # environment, or a credential kept in the export (--keep-credentials).
    for name, spec in template.items():
        if isinstance(spec, Mapping) and is_secret_field(spec):
            ctx.remember(params.get(name))


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
    """Replace an output that carries a secret resolved in this run (or process) by :class:`Redacted`."""
    if not ctx.secrets and not secrets.resolved():
        return value
    try:
        text = json.dumps(encode(value))
    except TypeError:
        return value  # a live object: never encoded, so it cannot leak through IO storage
    carried = any(secret in text or json.dumps(secret)[1:-1] in text for secret in ctx.secrets)
    if carried or secrets.contains_secret(text):
        return Redacted(node_id=call.node_id, output=name)
    return value


@contextlib.contextmanager
def local_file_access(tweaks: Mapping[str, Any] | None = None) -> Iterator[None]:
    """While a node builds, lfx's restriction of local files stands, with the roots the run granted
    (runtime/file_access.py: drop location, the run's files, storage) and the paths the run's own tweaks
    give to path fields; nothing is lifted."""
    file_access.install()
    with file_access.allowed_files(file_access.tweak_paths(tweaks or {})):
        yield

"""One Dagster op per plan step. The op runs the step's component with the runtime, in its own process.

The runtime (and so lfx) is imported only inside the op's body: loading definitions stays cheap, in every
process that reloads them.

Values cross to downstream ops as JSON. A live object (Embeddings, a vector store, a tool, ...) or a value
carrying a secret never does: the op stores a *reference* instead, `{"$ref": {step, output, inputs}}`, with
the producer's own inputs, and the consumer rebuilds the producer in its own process.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from .. import telemetry
from ..plan import FlowPlan, InnerEdge, Step, StepInput
from .deployment import FlowDeployment, expand_env
from .documents import count_rows, document_path, document_variables
from .io_manager import default_storage
from .resources import LangflowRun
from .translator import LangflowTranslator

if TYPE_CHECKING:
    from ..sinks import DocumentChunks

REF = "$ref"
PREVIEW_CHARS = 2000


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and REF in value


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """What a person wants to see of a component's output: a message's text, a table's rows, else JSON."""
    import json

    text = getattr(value, "text", None)
    if isinstance(text, str):
        return text[:limit]
    if hasattr(value, "to_csv"):  # a DataFrame
        return str(value.to_csv(index=False))[:limit]
    data = getattr(value, "data", value)
    if isinstance(data, str):
        return data[:limit]
    return json.dumps(data, ensure_ascii=False, default=str)[:limit]


@dataclass(frozen=True)
class StepSettings:
    """What one step of one run uses: the deployment's defaults, overridden by the run's config."""

    tweaks: dict[str, dict[str, Any]]
    variables: dict[str, str]
    code_policies: dict[str, str]
    document: str | None = None  # the partition's document, for an ingestion run
    # Local paths the run's components may reach (runtime/file_access.py), beside lfx's storage dir.
    file_roots: tuple[str, ...] = ()


def checked_code_policies(plan: FlowPlan, run: LangflowRun, deployment: FlowDeployment) -> dict[str, str]:
    """The run's code policies, once the run is known to be allowed: no secret in its config, no code
    the deployment does not trust. Every op checks the whole flow: the first to start refuses, before
    any component's code runs."""
    from ..runtime.trust import refuse_untrusted

    run.refuse_secrets(plan, deployment)  # secrets: environment only, never run config
    code_policies = {**run.code_policies(), **deployment.run.code_policy, **run.code_policy}
    refuse_untrusted(plan, deployment.run.trust.policy(), code_policies)
    return code_policies


def step_settings(
    plan: FlowPlan,
    run: LangflowRun,
    deployment: FlowDeployment,
    partition_key: str | None,
    code_policies: dict[str, str] | None = None,
) -> StepSettings:
    """What a step needs to run for one document (or none); `code_policies` from
    `checked_code_policies` when the caller checked the run already (a batch: once, not per document)."""
    from ..runtime import file_access

    if code_policies is None:
        code_policies = checked_code_policies(plan, run, deployment)
    tweaks: dict[str, dict[str, Any]] = {k: dict(v) for k, v in deployment.run.tweaks.items()}
    for key, fields in run.all_tweaks(plan).items():
        tweaks.setdefault(key, {}).update(fields)
    variables = {**deployment.run.variables, **run.variables}
    document = None
    docs = deployment.documents
    if docs and partition_key is not None:
        path = document_path(docs.resolved_location(), partition_key)
        document = str(path)
        variables = {**document_variables(path, partition_key, docs.variables), **variables}
        if not run.files:
            for end in plan.inputs:
                if end.kind == "file" and end.field:
                    tweaks.setdefault(end.node, {})[end.field] = [document]
    tweaks = expand_env(tweaks)
    roots = [*run.files, *file_access.tweak_paths(tweaks), *([document] if document else [])]
    for location in (docs.resolved_location() if docs else None, default_storage()):
        if location and file_access.is_local(location):
            roots.append(file_access.local_path(location))
    return StepSettings(
        tweaks=tweaks,
        variables=expand_env(variables),
        code_policies=code_policies,
        document=document,
        file_roots=tuple(roots),
    )


def step_op(
    plan: FlowPlan, step: Step, translator: LangflowTranslator, deployment: FlowDeployment | None = None
) -> dg.OpDefinition:
    deployment = deployment or FlowDeployment()
    flow_outputs = {(e.step, e.field) for e in plan.outputs}
    ins = {
        i.name: dg.In(dg.Any, description=f"{i.node}.{i.field}" + (" (live object)" if i.live else ""))
        for i in step.inputs
    }
    # Outputs are optional: a router's branch not taken yields nothing, and Dagster skips what follows.
    outs = {
        o.name: dg.Out(
            dg.Any,
            is_required=False,
            description=f"{o.node}.{o.output}: {' | '.join(o.types)}"
            + (" (live: by reference)" if o.live else ""),
        )
        for o in step.outputs
    }

    def compute(context: dg.OpExecutionContext, inputs: dict[str, Any]) -> Iterator[dg.Output[Any]]:
        run: LangflowRun = context.resources.langflow
        attributes = {
            "stepflow.flow": plan.flow,
            "stepflow.node_id": step.node_id,
            "stepflow.component_type": step.component_type,
            "stepflow.display_name": step.display_name,
            "stepflow.category": step.category,
            "dagster.step_key": context.get_step_execution_context().step.key,
            "dagster.attempt": context.retry_number + 1,
        }
        if deployment.documents is not None and (
            context.has_partition_key or context.has_partition_key_range
        ):
            # An ingestion asset's run: every document of the run's partition range, in this one process.
            with telemetry.step_span(context.run_id, attributes):
                key = translator.get_asset_spec(plan, deployment.documents).key
                yield from batch_op(context, plan, step, deployment, inputs, key)
            return
        settings = step_settings(plan, run, deployment, None)
        metadata: dict[str, Any] = {"node_id": step.node_id}
        with telemetry.step_span(context.run_id, attributes):
            stored, previews = run_step(plan, step, inputs, settings)
        selected = context.selected_output_names  # an asset maps only the sink's first output
        for out in step.outputs:
            if out.name not in selected:
                continue
            if out.name not in stored:
                context.log.info(f"{step.node_id}: output {out.output!r} was not produced (branch not taken)")
                continue
            value = stored[out.name]
            out_metadata = dict(metadata)
            if is_ref(value):
                out_metadata["value"] = "by reference: rebuilt by each consumer in its own process"
            elif (step.name, out.name) in flow_outputs:
                out_metadata["flow_output"] = dg.MetadataValue.text(previews[out.name])
            yield dg.Output(value, out.name, metadata=out_metadata)

    # OpDefinition directly, as Dagster offers it for generated ops: `@dg.op` inspects the function's
    # signature a dozen times per op, two thirds of loading a code location of 100 flows.
    return dg.OpDefinition(
        compute_fn=compute,
        name=translator.get_op_name(plan, step),
        description=translator.get_op_description(plan, step),
        ins=ins,
        outs=outs,
        tags=dict(translator.get_op_tags(plan, step)),
        required_resource_keys={"langflow"},
    )


def open_sink(
    plan: FlowPlan, run: LangflowRun, deployment: FlowDeployment, document: str | None
) -> "DocumentChunks | None":
    """The chunks, by document, of the store the flow's sink writes to: through the sink component's own
    client, built as a run of ``document`` builds it (its tweaks, variables and code)."""
    from ..runtime import ComponentCall, build_component, file_access
    from ..sinks import open_chunks

    assert deployment.documents is not None and plan.outputs
    step = plan.step(plan.outputs[0].step)
    settings = step_settings(plan, run, deployment, document)
    component = step.components[0]
    with file_access.allowed_files(settings.file_roots):
        instance = build_component(
            ComponentCall(component.node_id, component.data, {}, []),
            variables=settings.variables,
            tweaks=settings.tweaks,
            flow_name=plan.flow,
            code_policy=settings.code_policies,
        )
    return open_chunks(step.component_type, instance, deployment.documents.document_field)


def batch_op(
    context: dg.OpExecutionContext,
    plan: FlowPlan,
    step: Step,
    deployment: FlowDeployment,
    inputs: Mapping[str, Any],
    key: dg.AssetKey,
) -> Iterator[Any]:
    """One step of a batch run: its component for each document; the sink replaces each document's chunks
    and reports each document as a materialization of its partition, or as failed."""
    from .batch import describe_failure, run_batch

    run: LangflowRun = context.resources.langflow
    docs = deployment.documents
    assert docs is not None
    documents = list(context.partition_keys)
    sink = bool(plan.outputs) and step.name == plan.outputs[0].step
    chunks, old = None, {}
    kept: dict[str, tuple[str, dg.AssetMaterialization]] = {}
    if sink and context.run.parent_run_id:
        # Re-executed (from failure): a document already ingested with this very content, by the run
        # this one re-executes, is not written again; its materialization is reported again.
        kept = _already_ingested(context, key, inputs, documents)
        documents = [d for d in documents if d not in kept]
    if sink and documents:
        chunks = open_sink(plan, run, deployment, documents[0])
        if chunks is not None:
            chunks.ensure_index(docs.index_body)
            old = chunks.ids(documents)  # deleted once a document's new chunks are written
    result = run_batch(plan, step, inputs, run, deployment, documents, concurrency=docs.concurrency)
    if chunks is not None:
        chunks.delete([i for d in result.done for i in old.get(d, [])])
    for document, f in result.failures.items():
        if f["$failed"]["step"] == step.name:
            context.log.warning(f"document failed: {describe_failure(document, f)}")
    if not sink:
        for name in context.selected_output_names:
            if name in result.outputs:
                yield dg.Output(result.outputs[name], name, metadata={"documents": len(result.done)})
        return
    for document, (run_id, mat) in kept.items():
        yield dg.AssetMaterialization(
            asset_key=key,
            partition=document,
            description=f"already ingested with this content by run {run_id}",
            metadata=mat.metadata,
            tags=mat.tags,
        )
    for document in result.done:
        sha256, size, mtime = result.versions[document]
        metadata: dict[str, Any] = {
            "dagster/row_count": _chunks(step, result.values[document]),
            "document": document,
            "node_id": step.node_id,
            "replaced_chunks": len(old.get(document, [])),
            "stepflow/size": size,
            "stepflow/mtime": mtime,
        }
        if chunks is not None:
            metadata["index"] = chunks.index
        yield dg.AssetMaterialization(
            asset_key=key, partition=document, metadata=metadata, tags={DATA_VERSION_TAG: sha256}
        )
    if result.failures:
        lines = [describe_failure(d, f) for d, f in sorted(result.failures.items())]
        raise dg.Failure(
            description=f"{len(lines)} of {len(documents)} documents failed:\n" + "\n".join(lines),
            metadata={"failed_documents": sorted(result.failures)},
            allow_retries=False,
        )


def _already_ingested(
    context: dg.OpExecutionContext, key: dg.AssetKey, inputs: Mapping[str, Any], documents: list[str]
) -> dict[str, tuple[str, dg.AssetMaterialization]]:
    """Documents whose latest materialization came from the run lineage being re-executed, with the
    content hash this run holds for them: document -> that materialization (with its run id)."""
    from .batch import VERSIONS, is_batch

    versions: dict[str, Any] = {}
    for value in inputs.values():
        for v in value if isinstance(value, list) else [value]:
            if is_batch(v):
                versions.update(v.get(VERSIONS, {}))
    lineage = {context.run.parent_run_id, context.run.root_run_id}
    ids = context.instance.event_log_storage.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(documents)
    )
    if not ids:
        return {}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    kept: dict[str, tuple[str, dg.AssetMaterialization]] = {}
    for record in records:
        mat = record.asset_materialization
        if mat is None or mat.partition not in versions or record.run_id not in lineage:
            continue
        if (mat.tags or {}).get(DATA_VERSION_TAG) == versions[mat.partition][0]:
            kept[mat.partition] = (record.run_id, mat)
    return kept


def _chunks(step: Step, inputs: Mapping[str, Any]) -> int:
    from ..runtime import decode

    fed = [decode(inputs[i.name]) for i in step.inputs if i.field == "ingest_data" and i.name in inputs]
    return count_rows(fed)


def run_step(
    plan: FlowPlan,
    step: Step,
    inputs: Mapping[str, Any],
    settings: StepSettings,
    live_cache: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run a step's component here: its outputs by Dagster output name, ready to store, and previews."""
    from ..runtime import file_access

    with file_access.allowed_files(settings.file_roots):
        return _run_step(plan, step, inputs, settings, live_cache)


def _run_step(
    plan: FlowPlan,
    step: Step,
    inputs: Mapping[str, Any],
    settings: StepSettings,
    live_cache: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    from ..runtime import ComponentCall, Redacted, encode, run_component

    if not step.is_loop and step.outputs and all(o.live for o in step.outputs):
        # Only a reference crosses to the consumer, which rebuilds the component in its own process:
        # building it here too would cost a full build (and the service calls it makes) for nothing.
        ref = {"step": step.name, "inputs": dict(inputs)}
        return {o.name: {REF: {**ref, "output": o.output}} for o in step.outputs}, {}
    values = {i.name: _resolve(plan, i, inputs.get(i.name)) for i in step.inputs}
    call_inputs = _by_field(step, values)
    variables, tweaks = settings.variables, settings.tweaks
    if step.is_loop:
        from ..runtime import run_subgraph

        by_node = run_subgraph(
            {c.node_id: c.data for c in step.components},
            [_raw_edge(step, e) for e in step.inner_edges],
            call_inputs,
            {o.node: [x.output for x in step.outputs if x.node == o.node] for o in step.outputs},
            variables=variables,
            tweaks=tweaks,
            flow_name=plan.flow,
            code_policy=settings.code_policies,
        )
        results = {
            o.name: by_node[o.node][o.output] for o in step.outputs if o.output in by_node.get(o.node, {})
        }
    else:
        component = step.components[0]
        call = ComponentCall(
            node_id=component.node_id,
            node_data=component.data,
            inputs=call_inputs.get(component.node_id, {}),
            outputs=[o.output for o in step.outputs],
        )
        values = run_component(
            call,
            variables=variables,
            tweaks=tweaks,
            flow_name=plan.flow,
            code_policy=settings.code_policies,
            live_cache=live_cache,
        )
        results = {o.name: values[o.output] for o in step.outputs if o.output in values}
    stored: dict[str, Any] = {}
    previews: dict[str, str] = {}
    for out in step.outputs:
        if out.name not in results:
            continue  # stopped by a router: Dagster skips what follows
        value = results[out.name]
        if out.live or isinstance(value, Redacted):
            # Keep the producer's own stored inputs, so a consumer can rebuild it exactly.
            stored[out.name] = {REF: {"step": step.name, "output": out.output, "inputs": dict(inputs)}}
        else:
            stored[out.name] = encode(value)
            previews[out.name] = preview(value)
    return stored, previews


def _raw_edge(step: Step, edge: InnerEdge) -> dict[str, Any]:
    """An edge inside a loop step, as the export wrote it (lfx builds the sub-graph from these and checks
    each handle's types against the nodes: rebuilt types that differ fail with "invalid handles")."""
    import copy

    source, target = copy.deepcopy(edge.source_handle), copy.deepcopy(edge.target_handle)
    if not source or not target:  # a plan written before the handles were kept: rebuild from the nodes
        source_data, target_data = step.component(edge.source).data, step.component(edge.target).data
        out = next(o for o in source_data["node"]["outputs"] if o["name"] == edge.output)
        source = {
            "dataType": source_data["type"],
            "id": edge.source,
            "name": edge.output,
            "output_types": list(out.get("types") or []),
        }
        if edge.loop_feedback:  # the item goes back into the Loop's output that accepts it
            back = next(o for o in target_data["node"]["outputs"] if o["name"] == edge.field)
            target = {
                "dataType": target_data["type"],
                "id": edge.target,
                "name": edge.field,
                "output_types": list(dict.fromkeys([*back.get("types", []), *back.get("loop_types", [])])),
            }
        else:
            spec = target_data["node"]["template"].get(edge.field, {})
            target = {
                "fieldName": edge.field,
                "id": edge.target,
                "inputTypes": list(spec.get("input_types") or []),
                "type": spec.get("type", "str"),
            }
    return {
        "source": edge.source,
        "target": edge.target,
        "data": {"sourceHandle": source, "targetHandle": target},
    }


def _resolve(plan: FlowPlan, step_input: StepInput, value: Any) -> Any:
    """Stored JSON -> runtime values; references -> the producer's call, rebuilt by the runtime."""
    from ..runtime import decode

    if step_input.is_list and not isinstance(value, list):
        value = [] if value is None else [value]
    if isinstance(value, list) and (step_input.is_list or len(step_input.sources) > 1):
        return [_resolve_one(plan, v, decode) for v in value]
    return _resolve_one(plan, value, decode)


def _resolve_one(plan: FlowPlan, value: Any, decode: Any) -> Any:
    from ..runtime import ComponentCall, LiveInput

    if not is_ref(value):
        return decode(value)
    ref = value[REF]
    producer = plan.step(ref["step"])
    stored_inputs = ref["inputs"]
    values = {i.name: _resolve(plan, i, stored_inputs.get(i.name)) for i in producer.inputs}
    component = producer.components[0]
    call = ComponentCall(
        node_id=component.node_id,
        node_data=component.data,
        inputs=_by_field(producer, values).get(component.node_id, {}),
        outputs=[ref["output"]],
    )
    return LiveInput(call=call, output=ref["output"])


def _by_field(step: Step, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Input values by node id, then by Langflow field name."""
    out: dict[str, dict[str, Any]] = {}
    for i in step.inputs:
        out.setdefault(i.node, {})[i.field] = values[i.name]
    return out

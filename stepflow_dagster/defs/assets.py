"""Ingestion flows as assets: the flow's sink is a graph-backed asset with one partition per document, a
sensor turns a drop location's new, changed and removed documents into batch runs, and a removal job
deletes the chunks of documents that are gone.

What the sensor knows lives in the instance, not in its cursor: a document's latest materialization
carries its content hash as the data version (and the size and mtime it was hashed at), runs in flight
name their partition ranges in their tags. The cursor keeps where the pass stopped and the attempts of
documents that failed, so it stays small however many documents the location holds.
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from upath import UPath

from ..plan import FlowPlan
from .batch import content_version
from .deployment import DocumentsConfig, FlowDeployment
from .resources import LangflowRun
from .translator import LangflowTranslator

REMOVED = "removed"  # the data version of a document whose chunks were removed


def documents_partitions(plan: FlowPlan, translator: LangflowTranslator) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=translator.get_partitions_name(plan))


def sink_asset(
    plan: FlowPlan,
    graph: dg.GraphDefinition,
    docs: DocumentsConfig,
    partitions: dg.PartitionsDefinition,
    translator: LangflowTranslator,
) -> dg.AssetsDefinition:
    spec = translator.get_asset_spec(plan, docs)
    return dg.AssetsDefinition.from_graph(
        graph,
        keys_by_output_name={"result": spec.key},
        partitions_def=partitions,
        group_name=spec.group_name,
        descriptions_by_output_name={"result": spec.description} if spec.description else None,
        metadata_by_output_name={"result": dict(spec.metadata)},
        tags_by_output_name={"result": dict(spec.tags)},  # kinds too: `dagster/kind/<kind>` tags
        owners_by_output_name={"result": list(spec.owners)} if spec.owners else None,
        code_versions_by_output_name={"result": spec.code_version} if spec.code_version else None,
        automation_conditions_by_output_name={"result": spec.automation_condition}
        if spec.automation_condition
        else None,
        # A backfill of many documents (from the UI) runs them in batches: each op once per batch.
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=docs.max_documents_per_run),
    )


def list_documents(location: str) -> list[tuple[str, UPath]]:
    """The documents of a drop location: (path relative to it, path), sorted; hidden files left out."""
    root = UPath(location)
    if not root.exists():
        return []
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if not any(part.startswith(".") for part in rel.split("/")) and path.is_file():
            found.append((rel, path))
    return sorted(found, key=lambda item: item[0])


def _stamp(path: UPath) -> list[Any]:
    info = path.stat()
    return [info.st_size, getattr(info, "st_mtime", None)]


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, documents: Sequence[str]
) -> dict[str, dg.AssetMaterialization]:
    """Per document: its latest materialization (two queries, whatever the number of documents)."""
    if not documents:
        return {}
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(documents)
    )
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    return {
        mat.partition: mat
        for mat in (r.asset_materialization for r in records)
        if mat is not None and mat.partition is not None
    }


def latest_versions(
    instance: dg.DagsterInstance, key: dg.AssetKey, documents: Sequence[str]
) -> dict[str, tuple[str, list[Any]]]:
    """Per document: the data version and [size, mtime] of its latest materialization."""
    found: dict[str, tuple[str, list[Any]]] = {}
    for document, mat in latest_materializations(instance, key, documents).items():
        stamp = [getattr(mat.metadata.get(k), "value", None) for k in ("stepflow/size", "stepflow/mtime")]
        found[document] = ((mat.tags or {}).get(DATA_VERSION_TAG, ""), stamp)
    return found


def runs_in_flight(instance: dg.DagsterInstance, job_names: Iterable[str], partitions: str) -> set[str]:
    """Documents that a queued or running run of these jobs will ingest or remove."""
    statuses = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    order: list[str] | None = None
    busy: set[str] = set()
    for job in job_names:
        for run in instance.get_runs(dg.RunsFilter(job_name=job, statuses=statuses)):
            tags = run.tags
            if "stepflow/removing" in tags:
                busy.update(json.loads(tags["stepflow/removing"]))
            elif "dagster/partition" in tags:
                busy.add(tags["dagster/partition"])
            elif ASSET_PARTITION_RANGE_START_TAG in tags:
                order = order if order is not None else list(instance.get_dynamic_partitions(partitions))
                start, end = tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]
                busy.update({start, end})
                if start in order and end in order:
                    busy.update(order[order.index(start) : order.index(end) + 1])
    return busy


def _batches(needed: set[str], order: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive partitions (a run targets a range) that all need a run, at most ``size`` each."""
    batches: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in needed and len(current) < size:
            current.append(key)
            continue
        if current:
            batches.append(current)
        current = [key] if key in needed else []
    if current:
        batches.append(current)
    return batches


def document_sensor(
    plan: FlowPlan,
    job: "dg.UnresolvedAssetJobDefinition",
    removal: dg.JobDefinition,
    docs: DocumentsConfig,
    partitions_name: str,
    translator: LangflowTranslator,
) -> dg.SensorDefinition:
    key = translator.get_asset_spec(plan, docs).key
    remove_op = translator.get_removal_op_name(plan)

    @dg.sensor(
        name=translator.get_sensor_name(plan),
        jobs=[job, removal],
        minimum_interval_seconds=docs.minimum_interval_seconds,
        # Watching the drop location is what an ingestion deployment is for: on unless stopped in the UI.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=translator.get_sensor_description(plan, docs),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        after: str = cursor.get("after", "")
        attempts: dict[str, list[Any]] = cursor.get("attempts", {})
        instance = context.instance
        listing = list_documents(docs.resolved_location())
        page = [(rel, path) for rel, path in listing if rel > after][: docs.page_size]
        done = len(page) < docs.page_size
        upto = None if done else page[-1][0]
        known = list(instance.get_dynamic_partitions(partitions_name))
        known_set = set(known)
        busy = runs_in_flight(instance, [job.name, removal.name], partitions_name)
        latest = latest_versions(instance, key, [rel for rel, _ in page if rel in known_set])
        # Documents whose latest run planned them and did not materialize them (a run in flight is busy).
        failed = set(
            instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(
                key
            )
        )
        needed: dict[str, str] = {}  # document -> content hash
        for rel, path in page:
            if rel in busy:
                continue  # never two versions of one document at once: it is looked at again next pass
            version, stamp = latest.get(rel, ("", []))
            if version and version != REMOVED and stamp == _stamp(path):
                attempts.pop(rel, None)
                continue  # unchanged since it was hashed and ingested
            digest = content_version(path)[0]
            if digest == version:
                attempts.pop(rel, None)
                continue  # touched, same content
            if rel in failed:  # its last run did not ingest it: retried, a bounded number of times
                tried = attempts.get(rel)
                runs = tried[1] if tried and tried[0] == digest else 1
                attempts[rel] = [digest, runs + 1]
                if runs >= docs.max_attempts:
                    attempts[rel] = [digest, runs]
                    continue  # failed max_attempts times on this content: waits for a new version
            else:
                attempts.pop(rel, None)
            needed[rel] = digest
        new = [rel for rel, _ in page if rel in needed and rel not in known_set]
        order = known + new
        requests = []
        for batch in _batches(set(needed), order, docs.max_documents_per_run):
            digest = hashlib.sha256(json.dumps([[d, needed[d]] for d in batch]).encode()).hexdigest()
            requests.append(
                dg.RunRequest(
                    job_name=job.name,
                    # A tick evaluated twice (a daemon restarted mid-tick) requests each batch once.
                    run_key=f"ingest:{digest}",
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: batch[0],
                        ASSET_PARTITION_RANGE_END_TAG: batch[-1],
                        "stepflow/documents": str(len(batch)),
                    },
                )
            )
        if docs.remove_missing:
            present = {rel for rel, _ in page}
            gone = [
                k
                for k in known
                if k > after and (upto is None or k <= upto) and k not in present and k not in busy
            ]
            for start in range(0, len(gone), 500):
                chunk = gone[start : start + 500]
                digest = hashlib.sha256(json.dumps(chunk).encode()).hexdigest()
                requests.append(
                    dg.RunRequest(
                        job_name=removal.name,
                        run_key=f"remove:{digest}:{cursor.get('passes', 0)}",
                        run_config={"ops": {remove_op: {"config": {"documents": chunk}}}},
                        tags={"stepflow/removing": json.dumps(chunk)},
                    )
                )
                for k in chunk:
                    attempts.pop(k, None)
        next_cursor = {
            "after": "" if done else (upto or ""),
            "passes": cursor.get("passes", 0) + done,
            "attempts": attempts,
        }
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(partitions_name, new)] if new else [],
            cursor=json.dumps(next_cursor, separators=(",", ":")),
        )

    return _sensor


def removal_job(
    plan: FlowPlan,
    deployment: FlowDeployment,
    partitions_name: str,
    executor: dg.ExecutorDefinition,
    translator: LangflowTranslator,
) -> dg.JobDefinition:
    """Delete the chunks of documents removed from the drop location, then their partitions."""
    docs = deployment.documents
    assert docs is not None
    name = translator.get_removal_job_name(plan)
    sink = plan.step(plan.outputs[0].step)
    key = translator.get_asset_spec(plan, docs).key

    @dg.op(
        name=translator.get_removal_op_name(plan),
        out={},  # it reports through materializations, hands nothing on
        required_resource_keys={"langflow"},
        tags=dict(translator.get_removal_op_tags(plan)),
        config_schema={"documents": dg.Field([str], description="Document paths in the drop location.")},
    )
    def _remove(context: dg.OpExecutionContext) -> Iterable[dg.AssetMaterialization]:
        from .ops import open_sink

        run: LangflowRun = context.resources.langflow
        chunks = open_sink(plan, run, deployment, None)
        if chunks is None:
            raise dg.Failure(f"no known vector store behind {sink.node_id} ({sink.component_type})")
        found = chunks.ids(context.op_config["documents"])
        chunks.delete([i for ids in found.values() for i in ids])
        for document in context.op_config["documents"]:
            yield dg.AssetMaterialization(
                asset_key=key,
                partition=document,
                description="removed from the drop location: its chunks are deleted",
                metadata={"dagster/row_count": 0, "removed_chunks": len(found[document])},
                tags={DATA_VERSION_TAG: REMOVED},
            )
            context.instance.delete_dynamic_partition(partitions_name, document)

    return dg.JobDefinition(
        name=name,
        graph_def=dg.GraphDefinition(name=name, node_defs=[_remove]),
        executor_def=executor,
        description=translator.get_removal_job_description(plan, docs),
    )


def chunks_check(
    plan: FlowPlan,
    deployment: FlowDeployment,
    partitions: dg.DynamicPartitionsDefinition,
    translator: LangflowTranslator,
) -> dg.AssetChecksDefinition:
    """Every document's chunks are in the index: as many as its latest materialization wrote.

    One check over all documents, naming those that fail: Dagster 1.13 cannot yet build a job for a
    partitioned check ("no PartitionsDefinition shared by all the provided assets")."""
    docs = deployment.documents
    assert docs is not None
    key = translator.get_asset_spec(plan, docs).key

    @dg.asset_check(
        asset=key,
        name=translator.get_check_name(plan),
        required_resource_keys={"langflow"},
        description=translator.get_check_description(plan),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from .ops import open_sink

        chunks = open_sink(plan, context.resources.langflow, deployment, None)
        if chunks is None:
            return dg.AssetCheckResult(passed=False, description="no known vector store behind the sink")
        documents = list(context.instance.get_dynamic_partitions(partitions.name))
        latest = latest_materializations(context.instance, key, documents)
        written = {
            d: getattr(m.metadata.get("dagster/row_count"), "value", None)
            for d, m in latest.items()
            if (m.tags or {}).get(DATA_VERSION_TAG) != REMOVED
        }
        found = chunks.counts(sorted(written))
        wrong = {d: {"written": n, "in_index": found[d]} for d, n in sorted(written.items()) if found[d] != n}
        return dg.AssetCheckResult(
            passed=not wrong,
            description=f"{len(wrong)} of {len(written)} documents differ" if wrong else None,
            metadata={
                "documents": len(written),
                "index": chunks.index,
                "differ": dg.MetadataValue.json(wrong),
            },
        )

    return _check

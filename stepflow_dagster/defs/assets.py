"""Ingestion flows as assets: the flow's sink is a graph-backed asset partitioned by document, and a sensor
turns a drop location's new or changed documents into partitions and runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dagster as dg
from upath import UPath

from ..plan import FlowPlan
from .deployment import DocumentsConfig


def documents_partitions(plan: FlowPlan) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{plan.name}_documents")


def sink_asset(
    plan: FlowPlan, graph: dg.GraphDefinition, docs: DocumentsConfig, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    key = dg.AssetKey(docs.asset_key or [plan.name])
    return dg.AssetsDefinition.from_graph(
        graph,
        keys_by_output_name={"result": key},
        partitions_def=partitions,
        group_name="stepflow",
        descriptions_by_output_name={
            "result": f"Documents ingested by the Langflow flow {plan.flow!r}, one partition per document."
        },
    )


def _listing(location: str) -> list[tuple[str, UPath]]:
    root = UPath(location)
    if not root.exists():
        return []
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            found.append((rel, path))
    return sorted(found, key=lambda item: item[0])


def _digest(path: UPath) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def scan_documents(
    location: str, cursor: dict[str, Any], batch_size: int
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """One page of a pass over the location: (document, content hash) that are new or changed, and the
    next cursor. A pass spans ticks (`after` is where it stopped); every pass re-checks every document, so
    a missed event is caught on the next pass. Unchanged size and mtime skip the hash."""
    seen: dict[str, list[Any]] = cursor.get("seen", {})
    after: str = cursor.get("after", "")
    page = [(rel, path) for rel, path in _listing(location) if rel > after][:batch_size]
    changed = []
    for rel, path in page:
        info = path.stat()
        stamp = [info.st_size, getattr(info, "st_mtime", None)]
        known = seen.get(rel)
        if known and known[:2] == stamp:
            continue
        digest = _digest(path)
        if not known or known[2] != digest:
            changed.append((rel, digest))
        seen[rel] = [*stamp, digest]
    done = len(page) < batch_size
    return changed, {
        "seen": seen,
        "after": "" if done else page[-1][0],
        "passes": cursor.get("passes", 0) + done,
    }


def document_sensor(
    plan: FlowPlan, job: dg.UnresolvedAssetJobDefinition, docs: DocumentsConfig, partitions_name: str
) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{plan.name}_document_drop",
        job=job,
        minimum_interval_seconds=docs.minimum_interval_seconds,
        # Watching the drop location is what an ingestion deployment is for: on unless stopped in the UI.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New or changed documents in {docs.location} -> a partition and a run of {plan.flow!r}.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        changed, cursor = scan_documents(docs.resolved_location(), cursor, docs.batch_size)
        known = set(context.instance.get_dynamic_partitions(partitions_name))
        new = sorted({rel for rel, _ in changed} - known)
        return dg.SensorResult(
            # run_key: a document dropped twice with the same content runs once; changed content runs again.
            run_requests=[
                dg.RunRequest(
                    run_key=f"{rel}:{digest}",
                    partition_key=rel,
                    tags={"stepflow/document": rel, "stepflow/content_sha256": digest},
                )
                for rel, digest in changed
            ],
            dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(partitions_name, new)] if new else [],
            cursor=json.dumps(cursor),
        )

    return _sensor

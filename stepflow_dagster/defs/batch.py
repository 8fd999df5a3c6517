"""A step over a batch of documents: the op runs its component once per document, in one process.

A run of an ingestion asset targets a range of document partitions. Every op of the run processes every
document of the range, so what a step costs once (a process or a pod, imports, code, clients, a live
input such as the embeddings model) is paid once per batch. Values cross ops as one JSON envelope per
output: the value for each document, or the failure that stopped it, and each document's content hash.

A document that fails (Docling cannot convert it, any component raises) fails alone: its failure travels
on in place of its value, the steps below skip it, and the sink reports it by name, node and error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..plan import FlowPlan, Step
from .deployment import FlowDeployment
from .documents import document_path
from .resources import LangflowRun

DOCS = "$documents"  # {document: stored value | failure}
VERSIONS = "$versions"  # {document: [sha256, size, mtime] of the content the file step read}
FAILED = "$failed"  # {step, node_id, display_name, error}


def is_batch(value: Any) -> bool:
    return isinstance(value, dict) and DOCS in value


def is_failure(value: Any) -> bool:
    return isinstance(value, dict) and FAILED in value


def failure(step: Step, error: BaseException) -> dict[str, Any]:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return {
        FAILED: {
            "step": step.name,
            "node_id": getattr(error, "node_id", "") or step.node_id,
            "display_name": getattr(error, "display_name", "") or step.display_name,
            "error": str(message),
        }
    }


def describe_failure(document: str, value: Mapping[str, Any]) -> str:
    f = value[FAILED]
    return f"{document}: node {f['node_id']} ({f['display_name']}): {f['error']}"


def content_version(path: Any) -> list[Any]:
    """[sha256, size, mtime]: the stamp is taken with the hash, so a later change shows as a new stamp."""
    info = path.stat()
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return [sha.hexdigest(), info.st_size, getattr(info, "st_mtime", None)]


@dataclass
class BatchResult:
    outputs: dict[str, dict[str, Any]]  # Dagster output name -> envelope
    versions: dict[str, list[Any]]
    failures: dict[str, dict[str, Any]]  # document -> failure
    done: list[str] = field(default_factory=list)  # documents this step ran successfully
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # document -> its step inputs


def _document_inputs(step: Step, inputs: Mapping[str, Any], document: str) -> dict[str, Any]:
    """One document's slice of the step's batch inputs (a list field: one slice per source)."""

    def pick(value: Any) -> Any:
        return value[DOCS].get(document) if is_batch(value) else value

    picked: dict[str, Any] = {}
    for i in step.inputs:
        value = inputs.get(i.name)
        picked[i.name] = [pick(v) for v in value] if isinstance(value, list) else pick(value)
    return picked


def _upstream(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for value in inputs.values():
        for v in value if isinstance(value, list) and not is_batch(value) else [value]:
            if is_batch(v):
                found.append(v)
    return found


def run_batch(
    plan: FlowPlan,
    step: Step,
    inputs: Mapping[str, Any],
    run: LangflowRun,
    deployment: FlowDeployment,
    documents: Sequence[str],
    concurrency: int = 4,
) -> BatchResult:
    """Run ``step`` for each document, ``concurrency`` documents at a time."""
    from .ops import checked_code_policies, run_step, step_settings

    versions: dict[str, list[Any]] = {}
    for envelope in _upstream(inputs):
        versions.update(envelope.get(VERSIONS, {}))
    docs = deployment.documents
    reads_file = any(end.kind == "file" and end.step == step.name for end in plan.inputs)
    live_cache: dict[str, Any] = {}
    code_policies = checked_code_policies(plan, run, deployment)  # the run's checks hold for every document
    outputs: dict[str, dict[str, Any]] = {o.name: {} for o in step.outputs}
    failures: dict[str, dict[str, Any]] = {}
    result = BatchResult(outputs={}, versions=versions, failures=failures)

    def one(document: str) -> tuple[str, Any]:
        """("done", stored) | ("failed", failure) | ("skipped", None) for one document."""
        doc_inputs = _document_inputs(step, inputs, document)
        if any(i.name in doc_inputs and doc_inputs[i.name] is None and not i.is_list for i in step.inputs):
            return "skipped", None  # a router upstream sent this document another way
        flat = [v for vs in doc_inputs.values() for v in (vs if isinstance(vs, list) else [vs])]
        upstream_failure = next((v for v in flat if is_failure(v)), None)
        if upstream_failure is not None:
            return "failed", upstream_failure
        try:
            if docs is not None and (reads_file or document not in versions):
                # Hashed where the file is read: the data version is the content this run ingested.
                versions[document] = content_version(document_path(docs.resolved_location(), document))
            settings = step_settings(plan, run, deployment, document, code_policies)
            stored, _ = run_step(plan, step, doc_inputs, settings, live_cache=live_cache)
        except Exception as exc:  # one document's fault, whatever raised it: it fails alone
            return "failed", failure(step, exc)
        result.values[document] = doc_inputs
        return "done", stored

    # Documents side by side in threads: a step's work per document is mostly waiting on a service
    # (Docling's conversion, the embeddings endpoint, the vector store).
    # A Loop builds its body while it computes, outside the build lock: its documents go one by one.
    workers = 1 if step.is_loop else min(concurrency, len(documents)) or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stepflow-doc") as pool:
        outcomes = list(pool.map(one, documents))
    for document, (status, value) in zip(documents, outcomes, strict=True):
        if status == "failed":
            failures[document] = value
        elif status == "done":
            for name, stored_value in value.items():
                outputs[name][document] = stored_value
            result.done.append(document)
    for name, values in outputs.items():
        merged: dict[str, Any] = {**values, **failures}
        # A router's output not taken by any document is not produced: Dagster skips what follows.
        if any(not is_failure(v) for v in merged.values()) or (failures and not values):
            result.outputs[name] = {DOCS: merged, VERSIONS: versions}
    return result

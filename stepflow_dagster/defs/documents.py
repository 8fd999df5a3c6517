"""Documents as partitions of an ingestion flow: their variables, and replacing their chunks on re-ingest."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from upath import UPath

from ..plan import Step

PAGE = 1000  # ids per delete request


def document_path(location: str, partition_key: str) -> UPath:
    return UPath(location) / partition_key


def document_variables(path: UPath, attributes: Mapping[str, str]) -> dict[str, str]:
    """Variables that describe the document (as OpenRAG's backend sets FILENAME, FILESIZE, MIMETYPE)."""
    values: dict[str, Any] = {
        "name": lambda: path.name,
        "size": lambda: str(path.stat().st_size),
        "mimetype": lambda: mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        "sha256": lambda: hashlib.sha256(path.read_bytes()).hexdigest(),
        "url": lambda: str(path),
    }
    return {variable: values[attribute]() for variable, attribute in attributes.items()}


def field_value(step: Step, tweaks: Mapping[str, Mapping[str, Any]], field: str) -> Any:
    """A component field as the run sees it: a tweak (by node id or display name), else the export's value."""
    for key in (step.node_id, step.display_name):
        if field in tweaks.get(key, {}):
            return tweaks[key][field]
    spec = step.components[0].data["node"]["template"].get(field)
    return spec.get("value") if isinstance(spec, dict) else None


def count_rows(value: Any) -> int:
    """Chunks fed to a vector store: rows of a table, items of a list."""
    if isinstance(value, list):
        return sum(count_rows(v) for v in value)
    return len(value) if hasattr(value, "to_dict") and hasattr(value, "columns") else 1


def _opensearch(step: Step, tweaks: Mapping[str, Mapping[str, Any]]) -> Any:
    from opensearchpy import OpenSearch

    url = field_value(step, tweaks, "opensearch_url")
    user, password = field_value(step, tweaks, "username"), field_value(step, tweaks, "password")
    auth = (
        (user, password) if field_value(step, tweaks, "auth_mode") == "basic" and user and password else None
    )
    return OpenSearch(
        hosts=[url], http_auth=auth, verify_certs=bool(field_value(step, tweaks, "verify_certs"))
    )


@contextmanager
def replacing_chunks(
    step: Step,
    tweaks: Mapping[str, Mapping[str, Any]],
    field: str,
    filename: str,
    index_body: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Re-ingesting a document replaces its chunks: the ids it had before are deleted once the new ones
    are written. A failed ingest deletes nothing; a re-execution after a crash cleans up both versions."""
    if field_value(step, tweaks, "opensearch_url") is None:
        yield
        return
    client = _opensearch(step, tweaks)
    index = field_value(step, tweaks, "index_name")
    old: list[str] = []
    if client.indices.exists(index=index):
        from opensearchpy.helpers import scan

        query = {"query": {"term": {field: filename}}, "_source": False}
        old = [hit["_id"] for hit in scan(client, index=index, query=query)]
    else:
        # The flow's search output runs before its ingest (lfx's output order): it needs the index.
        client.indices.create(index=index, body=dict(index_body or {"settings": {"index": {"knn": True}}}))
    yield
    for start in range(0, len(old), PAGE):
        client.delete_by_query(index=index, body={"query": {"ids": {"values": old[start : start + PAGE]}}})
    client.indices.refresh(index=index)

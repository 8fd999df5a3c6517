"""Documents as partitions of an ingestion flow: a document is its path relative to the drop location."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Mapping
from typing import Any

from upath import UPath


def document_path(location: str, partition_key: str) -> UPath:
    return UPath(location) / partition_key


def document_variables(path: UPath, key: str, attributes: Mapping[str, str]) -> dict[str, str]:
    """Variables that describe the document (as OpenRAG's backend sets FILENAME, FILESIZE, MIMETYPE)."""
    values: dict[str, Any] = {
        "path": lambda: key,
        "name": lambda: path.name,
        "size": lambda: str(path.stat().st_size),
        "mimetype": lambda: mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        "sha256": lambda: hashlib.sha256(path.read_bytes()).hexdigest(),
        "url": lambda: str(path),
    }
    return {variable: values[attribute]() for variable, attribute in attributes.items()}


def count_rows(value: Any) -> int:
    """Chunks fed to a vector store: rows of a table, items of a list."""
    if isinstance(value, list):
        return sum(count_rows(v) for v in value)
    return len(value) if hasattr(value, "to_dict") and hasattr(value, "columns") else 1

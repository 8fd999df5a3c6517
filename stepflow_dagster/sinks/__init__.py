"""What an ingestion needs from the vector store behind a flow's sink component: find, count and delete
one document's chunks. Specific to each store, so it lives here, beside the store, not in the Dagster layer.

A sink is opened from the flow's own component instance (built by the runtime with the run's tweaks and
variables), so it reaches the store with the same URL, authentication and SSL settings as the component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class DocumentChunks(Protocol):
    """One index's chunks, grouped by the document they came from (a field of each chunk)."""

    index: str

    def ensure_index(self, body: Mapping[str, Any] | None) -> None:
        """Create the index when it is missing (the flow's search output needs it before its ingest)."""

    def ids(self, documents: Sequence[str]) -> dict[str, list[str]]:
        """Chunk ids per document, for every document given (an empty list when it has none)."""

    def delete(self, ids: Sequence[str]) -> None:
        """Delete these chunks and make the deletion visible to searches."""

    def counts(self, documents: Sequence[str]) -> dict[str, int]:
        """Chunks per document."""


def open_chunks(component_type: str, component: Any, document_field: str) -> DocumentChunks | None:
    """The chunks of the store that ``component`` (an instance of the flow's sink) writes to, if known."""
    if "OpenSearch" in component_type:
        from .opensearch import OpenSearchChunks

        return OpenSearchChunks.from_component(component, document_field)
    return None

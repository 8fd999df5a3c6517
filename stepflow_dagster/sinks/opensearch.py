"""Chunks of one OpenSearch index by document, through the client the flow's OpenSearch component builds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PAGE = 1000  # ids per delete request, documents per terms query


@dataclass
class OpenSearchChunks:
    client: Any  # opensearchpy.OpenSearch
    index: str
    field: str  # the chunk field that holds the document's path

    @classmethod
    def from_component(cls, component: Any, field: str) -> OpenSearchChunks:
        # The component's own build_client: its auth mode (basic or JWT), SSL and certificate settings,
        # with its variables already resolved and its booleans parsed by lfx.
        return cls(component.build_client(), str(component.index_name), field)

    def ensure_index(self, body: Mapping[str, Any] | None) -> None:
        from opensearchpy.exceptions import RequestError

        if self.client.indices.exists(index=self.index):
            return
        try:
            self.client.indices.create(
                index=self.index, body=dict(body or {"settings": {"index": {"knn": True}}})
            )
        except RequestError as e:
            # Two batch runs reach a new index at once (their sink pods on Kubernetes): one creates it.
            if e.error != "resource_already_exists_exception":
                raise

    def ids(self, documents: Sequence[str]) -> dict[str, list[str]]:
        from opensearchpy.helpers import scan

        found: dict[str, list[str]] = {doc: [] for doc in documents}
        if not documents or not self.client.indices.exists(index=self.index):
            return found
        for start in range(0, len(documents), PAGE):
            query = {
                "query": {"terms": {self.field: list(documents[start : start + PAGE])}},
                "_source": [self.field],
            }
            for hit in scan(self.client, index=self.index, query=query):
                doc = hit["_source"].get(self.field)
                if doc in found:
                    found[doc].append(hit["_id"])
        return found

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), PAGE):
            self.client.delete_by_query(
                index=self.index,
                body={"query": {"ids": {"values": list(ids[start : start + PAGE])}}},
                params={"refresh": "true", "conflicts": "proceed"},
            )
        self.client.indices.refresh(index=self.index)

    def counts(self, documents: Sequence[str]) -> dict[str, int]:
        return {doc: len(ids) for doc, ids in self.ids(documents).items()}

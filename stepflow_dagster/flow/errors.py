"""The one error type of the flow stage: it always names the flow, and where it can the node and field."""

from __future__ import annotations


class FlowError(ValueError):
    """A Langflow export that cannot be used, with where the problem is."""

    def __init__(self, flow: str, message: str, *, node: str | None = None, field: str | None = None):
        self.flow = flow
        self.node = node
        self.field = field
        self.reason = message
        where = f"flow {flow!r}"
        if node is not None:
            where += f", node {node!r}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")

"""Errors of the component runtime."""

from __future__ import annotations

# Heads the note that carries a failed component's own traceback, masked (see component_error).
TRACEBACK_NOTE = "The component's error (secrets masked):"


class ComponentError(RuntimeError):
    """A component failed to build or run; names the flow, the node and carries its message."""

    def __init__(
        self,
        message: str,
        *,
        flow_name: str = "",
        node_id: str = "",
        display_name: str = "",
        field: str = "",
    ) -> None:
        self.message = message
        self.flow_name = flow_name
        self.node_id = node_id
        self.display_name = display_name
        self.field = field  # the field being resolved, when the runtime knows it
        where = f"node {node_id!r}" + (f" ({display_name})" if display_name else "")
        if field:  # `stepflow-dagster run` reads it back from this text (run_report.py)
            where += f", field {field!r}"
        if flow_name:
            where = f"flow {flow_name!r}, {where}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields: the default reduce would lose them when Dagster pickles the error.
        return (_rebuild, (self.message, self.flow_name, self.node_id, self.display_name, self.field))


def _rebuild(
    message: str, flow_name: str, node_id: str, display_name: str, field: str = ""
) -> ComponentError:
    return ComponentError(
        message, flow_name=flow_name, node_id=node_id, display_name=display_name, field=field
    )

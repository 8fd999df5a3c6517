"""Resolving the variables that ``load_from_db`` fields name: run variables, then the environment.

The names come from the export, which its author controls: a flow must not read the server's own
configuration (``LANGFLOW_SECRET_KEY``, ``DATABASE_URL``, cloud credentials, ...). lfx keeps that
deny-list (``lfx.utils.env_var_security``); we use it as is and refuse such a name with an error,
where lfx silently resolves it to None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any


class DeniedVariable(ValueError):
    """A ``load_from_db`` field names a variable that flows may not read."""

    def __init__(self, field: str, variable: str) -> None:
        self.field = field
        self.variable = variable
        super().__init__(
            f"field {field!r} names variable {variable!r}, which flows may not read (lfx's deny-list of "
            "server environment variables: LANGFLOW_*, LFX_*, DATABASE_URL, cloud and CI credentials, ...); "
            "give the value another name"
        )


def is_denied(name: str) -> bool:
    from lfx.utils.env_var_security import is_protected_env_var

    return bool(is_protected_env_var(name))


def resolve(field: str, variable: str, variables: Mapping[str, str]) -> str | None:
    """The value of ``variable`` for ``field``: the run's variables, then the environment."""
    if is_denied(variable):
        raise DeniedVariable(field, variable)
    value = variables.get(variable)
    return os.environ.get(variable) if value is None else value


def named_variables(node_data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, variable name) of a node's ``load_from_db`` fields."""
    template = (node_data.get("node") or {}).get("template") or {}
    return [
        (name, f["value"])
        for name, f in template.items()
        if isinstance(f, Mapping) and f.get("load_from_db") and isinstance(f.get("value"), str) and f["value"]
    ]


def denied_uses(nodes: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str, str]]:
    """(node id, field, variable) for every deny-listed variable that these nodes name."""
    return [
        (node_id, field, variable)
        for node_id, data in nodes
        for field, variable in named_variables(data)
        if is_denied(variable)
    ]

"""stepflow-dagster: Langflow flows as Dagster jobs, one op per Langflow component.

The top import stays cheap (the CLI starts from it): `LangflowFlows`, the Dagster component a `dg`
project's defs.yaml names as `stepflow_dagster.LangflowFlows`, is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .component import LangflowFlows

__all__ = ["LangflowFlows"]


def __getattr__(name: str) -> Any:
    if name == "LangflowFlows":
        from .component import LangflowFlows

        return LangflowFlows
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # `dg list components` finds a registry module's component types through dir(): list the lazy one.
    return sorted({*globals(), *__all__})

"""Dagster definitions built from plans: ops, jobs, IO manager, resources.

The names below are imported on first use, so that a module of this package that needs no Dagster (the
deployment file, the forkserver's start) can be imported without it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .definitions import StepflowSettings, build_definitions, load_plans
    from .io_manager import JsonIOManager
    from .jobs import flow_graph, flow_job
    from .resources import LangflowRun
    from .translator import LangflowTranslator

_MODULES = {
    "JsonIOManager": "io_manager",
    "LangflowRun": "resources",
    "LangflowTranslator": "translator",
    "StepflowSettings": "definitions",
    "build_definitions": "definitions",
    "flow_graph": "jobs",
    "flow_job": "jobs",
    "load_plans": "definitions",
}
__all__ = [
    "JsonIOManager",
    "LangflowRun",
    "LangflowTranslator",
    "StepflowSettings",
    "build_definitions",
    "flow_graph",
    "flow_job",
    "load_plans",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)

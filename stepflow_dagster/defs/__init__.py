"""Dagster definitions built from plans: ops, jobs, IO manager, resources."""

from .definitions import StepflowSettings, build_definitions, load_plans
from .io_manager import JsonIOManager
from .jobs import flow_graph, flow_job
from .resources import LangflowRun
from .translator import LangflowTranslator

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

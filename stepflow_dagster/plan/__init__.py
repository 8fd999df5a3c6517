"""The plan stage: a flow converted into Dagster-shaped steps, and its YAML form."""

from .build import category, job_name, plan_flow
from .model import Component, FlowEnd, FlowPlan, InnerEdge, Source, Step, StepInput, StepOutput, Variable
from .serialize import dump_plan, load_plan

__all__ = [
    "Component",
    "FlowEnd",
    "FlowPlan",
    "InnerEdge",
    "Source",
    "Step",
    "StepInput",
    "StepOutput",
    "Variable",
    "category",
    "dump_plan",
    "job_name",
    "load_plan",
    "plan_flow",
]

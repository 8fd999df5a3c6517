"""A plan's steps wired into a Dagster graph and job, edge by edge."""

from __future__ import annotations

import dagster as dg

from ..plan import FlowPlan
from .deployment import FlowDeployment
from .ops import step_op
from .translator import LangflowTranslator


def flow_graph(
    plan: FlowPlan, translator: LangflowTranslator, deployment: FlowDeployment | None = None
) -> dg.GraphDefinition:
    """The flow's op graph; its output `result` is the flow's first output (the sink, for an asset)."""
    ops = {step.name: step_op(plan, step, translator, deployment) for step in plan.steps}
    node_name = {step.name: translator.get_node_name(plan, step) for step in plan.steps}
    deps: dict[dg.NodeInvocation, dict[str, dg.IDependencyDefinition]] = {}
    for step in plan.steps:
        wiring: dict[str, dg.IDependencyDefinition] = {}
        for inp in step.inputs:
            sources = [dg.DependencyDefinition(node_name[s.step], s.output) for s in inp.sources]
            # A list field takes every source in edge order; a single field its one source.
            wiring[inp.name] = dg.MultiDependencyDefinition(sources) if len(sources) > 1 else sources[0]
        op_name = translator.get_op_name(plan, step)
        deps[dg.NodeInvocation(op_name, alias=node_name[step.name])] = wiring
    outputs = []
    if plan.outputs and plan.outputs[0].field:
        end = plan.outputs[0]
        outputs.append(dg.OutputMapping("result", node_name[end.step], end.field))
    return dg.GraphDefinition(
        name=translator.get_job_name(plan),
        description=translator.get_job_description(plan),
        node_defs=list(ops.values()),
        dependencies=deps,
        output_mappings=outputs,
    )


def flow_job(
    plan: FlowPlan,
    translator: LangflowTranslator,
    executor: dg.ExecutorDefinition | None = None,
    resources: dict[str, object] | None = None,
    graph: dg.GraphDefinition | None = None,
) -> dg.JobDefinition:
    return (graph or flow_graph(plan, translator)).to_job(
        name=translator.get_job_name(plan),
        description=translator.get_job_description(plan),
        tags=dict(translator.get_job_tags(plan)),
        executor_def=executor,
        resource_defs=resources,
    )

"""How a plan's steps become Dagster names, descriptions and tags (dagster-dbt's translator pattern).

Subclass and override a method to change one aspect, then pass the instance to `build_definitions`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..plan import FlowPlan, Step

TAG_PREFIX = "stepflow"


class LangflowTranslator:
    def get_job_name(self, plan: FlowPlan) -> str:
        return plan.name

    def get_job_description(self, plan: FlowPlan) -> str:
        parts = [f"Langflow flow {plan.flow!r}"]
        if plan.langflow_version:
            parts.append(f"exported with Langflow {plan.langflow_version}")
        text = ", ".join(parts) + f"; {len(plan.steps)} components."
        return f"{text}\n\n{plan.description}".strip() if plan.description else text

    def get_node_name(self, plan: FlowPlan, step: Step) -> str:
        """The op's name in the job's graph (what the UI and run config show)."""
        return step.name

    def get_op_name(self, plan: FlowPlan, step: Step) -> str:
        # Op definitions share one namespace per code location, and flows reuse node ids: prefix the job.
        return f"{self.get_job_name(plan)}__{step.name}"

    def get_op_description(self, plan: FlowPlan, step: Step) -> str:
        lines = [f"{step.display_name} ({step.component_type}), node {step.node_id}"]
        if step.is_loop:
            body = ", ".join(f"{c.display_name} ({c.node_id})" for c in step.components[1:])
            lines.append(f"Loop, run with its body in one process: {body}")
        if step.variables:
            lines.append("Variables: " + ", ".join(sorted({v.name for v in step.variables})))
        return "\n".join(lines)

    def get_op_tags(self, plan: FlowPlan, step: Step) -> Mapping[str, str]:
        return {
            f"{TAG_PREFIX}/flow": plan.flow,
            f"{TAG_PREFIX}/node_id": step.node_id,
            f"{TAG_PREFIX}/component_type": step.component_type,
            f"{TAG_PREFIX}/display_name": step.display_name,
            f"{TAG_PREFIX}/category": step.category,
            # The flow file: the default executor's forkserver builds the run's components from it once.
            f"{TAG_PREFIX}/source": plan.source,
        }

    def get_job_tags(self, plan: FlowPlan) -> Mapping[str, str]:
        return {f"{TAG_PREFIX}/flow": plan.flow}

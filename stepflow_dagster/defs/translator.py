"""How a plan becomes Dagster names, keys, descriptions, metadata and tags (dagster-dbt's translator
pattern): every name the definitions carry comes from one method here.

Subclass and override a method to change one aspect everywhere it shows (the job, its asset, sensor,
check and removal job follow a renamed job), then pass the instance to `build_definitions` or return it
from `LangflowFlows.get_translator()` (the Dagster component).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg

from ..plan import FlowPlan, Step

if TYPE_CHECKING:
    from .deployment import DocumentsConfig

TAG_PREFIX = "stepflow"


class LangflowTranslator:
    # --- the flow's job and its ops -------------------------------------------------------------------

    def get_job_name(self, plan: FlowPlan) -> str:
        return plan.name

    def get_job_description(self, plan: FlowPlan) -> str:
        parts = [f"Langflow flow {plan.flow!r}"]
        if plan.langflow_version:
            parts.append(f"exported with Langflow {plan.langflow_version}")
        text = ", ".join(parts) + f"; {len(plan.steps)} components."
        return f"{text}\n\n{plan.description}".strip() if plan.description else text

    def get_job_tags(self, plan: FlowPlan) -> Mapping[str, str]:
        # The flow tag is how the default executor finds the flow of a job (defs/executor.py).
        return {f"{TAG_PREFIX}/flow": plan.flow}

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

    # --- an ingestion flow's asset (a deployment with `documents:`) ---------------------------------

    def get_asset_spec(self, plan: FlowPlan, docs: DocumentsConfig) -> dg.AssetSpec:
        """The sink asset, from the methods below: override one of them, or this whole. Its key is the
        one the asset's check, sensor, removal job and materializations use."""
        return dg.AssetSpec(
            key=self.get_asset_key(plan, docs),
            group_name=self.get_group_name(plan),
            description=self.get_asset_description(plan, docs),
            metadata=self.get_asset_metadata(plan, docs),
            kinds=set(self.get_asset_kinds(plan, docs)),
            tags=self.get_asset_tags(plan, docs),
        )

    def get_asset_key(self, plan: FlowPlan, docs: DocumentsConfig) -> dg.AssetKey:
        return dg.AssetKey(docs.asset_key or [self.get_job_name(plan)])

    def get_group_name(self, plan: FlowPlan) -> str:
        return "stepflow"

    def get_asset_description(self, plan: FlowPlan, docs: DocumentsConfig) -> str:
        return f"Documents ingested by the Langflow flow {plan.flow!r}, one partition per document."

    def get_asset_metadata(self, plan: FlowPlan, docs: DocumentsConfig) -> Mapping[str, Any]:
        sink = plan.step(plan.outputs[0].step) if plan.outputs else None
        return {
            f"{TAG_PREFIX}/flow": plan.flow,
            f"{TAG_PREFIX}/source": plan.source,
            f"{TAG_PREFIX}/drop_location": docs.location,
            **({f"{TAG_PREFIX}/sink_node_id": sink.node_id} if sink else {}),
        }

    def get_asset_kinds(self, plan: FlowPlan, docs: DocumentsConfig) -> Sequence[str]:
        return ["langflow"]

    def get_asset_tags(self, plan: FlowPlan, docs: DocumentsConfig) -> Mapping[str, str]:
        return {}

    def get_partitions_name(self, plan: FlowPlan) -> str:
        return f"{self.get_job_name(plan)}_documents"

    def get_asset_job_name(self, plan: FlowPlan) -> str:
        return f"{self.get_job_name(plan)}_documents"

    def get_check_name(self, plan: FlowPlan) -> str:
        return "chunks_in_index"

    def get_check_description(self, plan: FlowPlan) -> str:
        return "Each document's chunks are in the index: as many as its latest run wrote."

    def get_check_job_name(self, plan: FlowPlan) -> str:
        return f"{self.get_job_name(plan)}_documents_check"

    def get_removal_job_name(self, plan: FlowPlan) -> str:
        return f"{self.get_job_name(plan)}_removal"

    def get_removal_job_description(self, plan: FlowPlan, docs: DocumentsConfig) -> str:
        return f"Removes documents that left {docs.location} from the index of {plan.flow!r}."

    def get_removal_op_name(self, plan: FlowPlan) -> str:
        return f"{self.get_removal_job_name(plan)}__remove"

    def get_removal_op_tags(self, plan: FlowPlan) -> Mapping[str, str]:
        return {f"{TAG_PREFIX}/flow": plan.flow}

    def get_sensor_name(self, plan: FlowPlan) -> str:
        return f"{self.get_job_name(plan)}_document_drop"

    def get_sensor_description(self, plan: FlowPlan, docs: DocumentsConfig) -> str:
        return f"New, changed or removed documents in {docs.location} -> batch runs of {plan.flow!r}."


T = TypeVar("T", bound=LangflowTranslator)


def with_mixin(translator: LangflowTranslator, mixin: type[T], **state: Any) -> T:
    """`translator` with `mixin`'s methods in front of its own class's, keeping its state: how a code
    location adds what it needs (k8s placement, a defs.yaml `translation`) to a user's translator
    without the user subclassing our classes. `mixin` calls `super()` to reach the user's methods."""
    if isinstance(translator, mixin):
        combined: T = translator
    else:
        base = type(translator)
        cls = (
            mixin
            if base is LangflowTranslator
            else type(f"{mixin.__name__}{base.__name__}", (mixin, base), {})
        )
        combined = object.__new__(cls)
        combined.__dict__.update(vars(translator))
    combined.__dict__.update(state)
    return combined

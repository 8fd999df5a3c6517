"""A translator that also places each op on its node pool (the `dagster-k8s/config` op tag)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..defs.translator import TAG_PREFIX, LangflowTranslator, with_mixin
from ..plan import FlowPlan, Step
from .placement import PlacementConfig, load_placement

K8S_CONFIG_TAG = "dagster-k8s/config"  # what dagster-k8s's step handler reads per op


class K8sTranslator(LangflowTranslator):
    def __init__(self, placement: PlacementConfig | None = None) -> None:
        self.placement = placement or load_placement()

    def get_op_tags(self, plan: FlowPlan, step: Step) -> Mapping[str, str]:
        pool = self.placement.pool_for(plan, step)
        return {
            **super().get_op_tags(plan, step),
            f"{TAG_PREFIX}/pool": pool.name,  # also a key for the executor's tag_concurrency_limits
            K8S_CONFIG_TAG: json.dumps(pool.k8s_config(), sort_keys=True),
        }

    def get_job_tags(self, plan: FlowPlan) -> Mapping[str, str]:
        # One run tag per pool the flow uses, so that the run queue can limit runs per pool.
        pools = {self.placement.pool_for(plan, s).name for s in plan.steps}
        return {**super().get_job_tags(plan), **{f"{TAG_PREFIX}/uses-{p}": "true" for p in sorted(pools)}}


def with_placement(translator: LangflowTranslator, placement: PlacementConfig) -> K8sTranslator:
    """`translator` (any subclass of LangflowTranslator) that also places each op on its pool."""
    return with_mixin(translator, K8sTranslator, placement=placement)

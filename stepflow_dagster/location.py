"""A code location's definitions, with the executor its settings name: the one place that picks the
Kubernetes pieces (pods per component on node pools) for `executor: k8s`.

It sits above stepflow_dagster.defs and stepflow_dagster.k8s, so that defs never imports k8s (k8s
builds on defs): the root definitions.py and the `LangflowFlows` component both build through here.
"""

from __future__ import annotations

import dagster as dg

from .defs import LangflowTranslator, StepflowSettings, build_definitions


def build_location(
    settings: StepflowSettings, translator: LangflowTranslator | None = None
) -> dg.Definitions:
    translator = translator or LangflowTranslator()
    if settings.executor != "k8s":
        return build_definitions(settings, translator)
    # Imported only here: dagster-k8s and the placement rules are a k8s location's business.
    from .k8s import load_placement, stepflow_k8s_executor
    from .k8s.translator import with_placement

    placed = with_placement(translator, load_placement(settings.placement))
    return build_definitions(settings, translator=placed, executor=stepflow_k8s_executor)

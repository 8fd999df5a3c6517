"""Run-scoped co-location: the run tag `stepflow/colocate` = `node|zone|none[:required|:preferred]`.

Two mechanisms, both scoped to the run AND the pool (a term matching every pod of a run would pull a
CPU step towards the run's Docling node, which its node selector forbids: it would never schedule):

- pod affinity with `matchLabelKeys: [dagster/run-id, stepflow.io/pool]`, for steps that run at the
  same time (the API server fills in this pod's values when the pod is created);
- node affinity pinning to where the run's earlier pods of that pool went: the scheduler only sees
  pods that are not finished, so for a chain of steps, where each pod starts after the previous one
  has exited, pod affinity alone matches nothing and places every step anew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .placement import POOL_LABEL

COLOCATE_TAG = "stepflow/colocate"
RUN_ID_LABEL = "dagster/run-id"
STEP_POD_LABEL, STEP_POD_COMPONENT = "app.kubernetes.io/component", "step_worker"
TOPOLOGY_KEYS = {"node": "kubernetes.io/hostname", "zone": "topology.kubernetes.io/zone"}
PREFERRED_WEIGHT = 100


@dataclass(frozen=True)
class Colocation:
    scope: str = "none"  # node | zone | none
    required: bool = True

    @classmethod
    def parse(cls, value: str | None, default: Colocation | None = None) -> Colocation:
        if not value or not value.strip():
            return default or cls()
        scope, _, mode = value.strip().lower().partition(":")
        if scope not in (*TOPOLOGY_KEYS, "none") or mode not in ("", "required", "preferred"):
            raise ValueError(
                f"{COLOCATE_TAG} must be node|zone|none, optionally :required or :preferred; got {value!r}"
            )
        return cls(scope, mode != "preferred")

    @property
    def topology_key(self) -> str | None:
        return TOPOLOGY_KEYS.get(self.scope)

    def __str__(self) -> str:
        return (
            "none" if self.scope == "none" else f"{self.scope}:{'required' if self.required else 'preferred'}"
        )


def pod_affinity(colocation: Colocation) -> dict[str, Any]:
    """`affinity.podAffinity` (snake_case, as dagster-k8s's pod_spec_config takes it), or {}."""
    key = colocation.topology_key
    if key is None:
        return {}
    term = {
        # matchLabelKeys needs a selector to merge into, without its keys (the API server refuses
        # a key in both): keep it to dagster-k8s's step pods.
        "label_selector": {"match_labels": {STEP_POD_LABEL: STEP_POD_COMPONENT}},
        "match_label_keys": [RUN_ID_LABEL, POOL_LABEL],
        "topology_key": key,
    }
    if colocation.required:
        return {"pod_affinity": {"required_during_scheduling_ignored_during_execution": [term]}}
    return {
        "pod_affinity": {
            "preferred_during_scheduling_ignored_during_execution": [
                {"weight": PREFERRED_WEIGHT, "pod_affinity_term": term}
            ]
        }
    }


def node_pinning(colocation: Colocation, values: Sequence[str]) -> dict[str, Any]:
    """`affinity.nodeAffinity` to the topology domains (nodes or zones) of the run's earlier pods."""
    key = colocation.topology_key
    if key is None or not values:
        return {}
    selector_term = {"match_expressions": [{"key": key, "operator": "In", "values": sorted(set(values))}]}
    if colocation.required:
        return {
            "node_affinity": {
                "required_during_scheduling_ignored_during_execution": {
                    "node_selector_terms": [selector_term]
                }
            }
        }
    return {
        "node_affinity": {
            "preferred_during_scheduling_ignored_during_execution": [
                {"weight": PREFERRED_WEIGHT, "preference": selector_term}
            ]
        }
    }


def affinity(colocation: Colocation, pinned_to: Sequence[str] = ()) -> dict[str, Any]:
    return {**pod_affinity(colocation), **node_pinning(colocation, pinned_to)}


def colocation_for_run(tags: Mapping[str, str], default: Colocation) -> Colocation:
    return Colocation.parse(tags.get(COLOCATE_TAG), default)

"""Kubernetes: node pools per component, run-scoped co-location, and the k8s step executor.

The code location (definitions.py) passes K8sTranslator and stepflow_k8s_executor to `build_definitions`
when STEPFLOW_EXECUTOR=k8s. This package depends on stepflow_dagster.defs, never the other way.
"""

from .colocate import COLOCATE_TAG, Colocation
from .executor import stepflow_k8s_executor
from .placement import POOL_LABEL, PlacementConfig, Pool, load_placement
from .translator import K8sTranslator

__all__ = [
    "COLOCATE_TAG",
    "POOL_LABEL",
    "Colocation",
    "K8sTranslator",
    "PlacementConfig",
    "Pool",
    "load_placement",
    "stepflow_k8s_executor",
]

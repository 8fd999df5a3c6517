"""Kubernetes: node pools per component, run-scoped co-location, and the k8s step executor.

`build_definitions` uses this package when STEPFLOW_EXECUTOR=k8s (K8sTranslator + stepflow_k8s_executor).
"""

from .colocate import COLOCATE_TAG, Colocation
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
]

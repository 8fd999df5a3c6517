"""The Dagster code location: one job per Langflow flow in `flows/` (see stepflow_dagster.defs).

With STEPFLOW_EXECUTOR=k8s the location picks the Kubernetes pieces (a pod per component on its node
pool) and passes them in: stepflow_dagster.defs never imports stepflow_dagster.k8s.
"""

from pathlib import Path

from stepflow_dagster.defs import StepflowSettings, build_definitions

settings = StepflowSettings.from_env(Path(__file__).resolve().parent)
if settings.executor == "k8s":
    from stepflow_dagster.k8s import K8sTranslator, stepflow_k8s_executor

    defs = build_definitions(settings, translator=K8sTranslator(), executor=stepflow_k8s_executor)
else:
    defs = build_definitions(settings)

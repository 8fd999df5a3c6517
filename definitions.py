"""The Dagster code location: one job per Langflow flow in `flows/` (see stepflow_dagster.defs).

Settings come from the environment (STEPFLOW_FLOWS_DIR, STEPFLOW_EXECUTOR, ...); with
STEPFLOW_EXECUTOR=k8s the location runs a pod per component on its node pool. A `dg` project builds the
same definitions from a defs.yaml instead (the `stepflow_dagster.LangflowFlows` component).
"""

from pathlib import Path

from stepflow_dagster.defs import StepflowSettings
from stepflow_dagster.location import build_location

defs = build_location(StepflowSettings.from_env(Path(__file__).resolve().parent))

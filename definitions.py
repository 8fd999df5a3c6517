"""The Dagster code location: one job per Langflow flow in `flows/` (see stepflow_dagster.defs)."""

from pathlib import Path

from stepflow_dagster.defs import StepflowSettings, build_definitions

defs = build_definitions(StepflowSettings.from_env(Path(__file__).resolve().parent))

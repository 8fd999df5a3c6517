"""Dagster sensors for telemetry: each finished run's span, emitted by the daemon (see `telemetry`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from .. import telemetry


def run_span_sensors(minimum_interval_seconds: int = 5) -> list[Any]:
    """Run-status sensors (success, failure, canceled) that emit each finished run's span, once.

    For the daemon: runs launched from the UI, GraphQL, schedules and sensors get their run span without
    any process of the run knowing who else takes part. Running by default; a no-op when telemetry is off.
    """

    def make(status: Any) -> Any:
        @dg.run_status_sensor(
            run_status=status,
            name=f"stepflow_otel_run_span_{status.value.lower()}",
            minimum_interval_seconds=minimum_interval_seconds,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Emits the OpenTelemetry span of each finished run (trace id = run id).",
        )
        def _sensor(context: Any) -> None:  # not dg.RunStatusSensorContext: a string annotation here
            telemetry.emit_run_span_for(context.instance, context.dagster_run.run_id)

        return _sensor

    return [
        make(s)
        for s in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    ]

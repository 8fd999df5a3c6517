"""OpenTelemetry for runs: one trace per run (trace id = run id), one span per component step.

Placeholder until the telemetry work lands: `step_span` is a no-op context manager.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def step_span(run_id: str, attributes: dict[str, Any]) -> Iterator[None]:
    yield

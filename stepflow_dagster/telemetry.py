"""OpenTelemetry for runs: one trace per Dagster run, one span per component step, under one run span.

- The trace id IS the run id: a Dagster run id is a UUID (128 bits), so
  `trace_id = int(run_id.replace("-", ""), 16)`; a trace is found in any backend by the run id.
- The run span's span id is derived from the run id (`run_span_id`), so every step process, on any
  machine or pod, parents its step span on the run span without talking to anyone. The run span itself is
  emitted once, after the run ends, from the run's record (start and end time, status): by the
  run-status sensors in `defs.telemetry_sensors` (the daemon, for runs launched from the UI, GraphQL,
  schedules and sensors), or by `emit_run_span_for(instance, run_id)` from a process that ran the run
  itself (the CLI, tests). Emitting it from its id after the fact is what lets step spans from separate
  processes and the run span land in one tree.
- A step span carries the `stepflow.*` and `dagster.*` attributes the op passes (flow, node id, component
  type, display name, category, step key, attempt); a failure sets status ERROR and records the exception
  as an event. The secret values the runtime resolved in this process (its registry,
  `stepflow_dagster/runtime/secrets.py`) and the values of secret-looking environment variables (`*KEY*`,
  `*SECRET*`, `*TOKEN*`, `*PASSWORD*`, ...) are masked in every attribute, status and exception text.
- Metrics: `stepflow.component.duration` (histogram, seconds) and `stepflow.component.failures` (counter),
  by component type, flow and category.
- Logs: Python log records made while a step span is current carry `trace_id` and `span_id` (and
  `otelTraceID` / `otelSpanID`, the names OpenTelemetry's logging instrumentation uses), for a format such
  as `%(trace_id)s`; the step also writes its trace and span id to the Dagster event log.

Export follows the standard environment: OTLP over HTTP/protobuf when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
per-signal `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`) is set or `OTEL_TRACES_EXPORTER` /
`OTEL_METRICS_EXPORTER` say `otlp`; `console` prints; `none`, `OTEL_SDK_DISABLED=true`, or nothing set:
nothing is recorded and a step costs nothing extra. Spans and metrics are flushed when a step ends, before
its process may exit. Tests install in-memory exporters with `configure(...)`.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Only the (light) API at import time: every step process loads this module with the definitions; the
# SDK and the exporters are imported when telemetry is switched on.
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SCOPE = "stepflow_dagster"
SERVICE_NAME = "stepflow-dagster"
DURATION = "stepflow.component.duration"
FAILURES = "stepflow.component.failures"
FLUSH_TIMEOUT_MS = 5000
_METRIC_KEYS = ("stepflow.flow", "stepflow.component_type", "stepflow.category")
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_MASK = "[redacted]"

logger = logging.getLogger(__name__)


# -- ids -------------------------------------------------------------------------------------------


def trace_id_for(run_id: str) -> int:
    """The trace id of a run: its UUID as a 128-bit integer."""
    value = int(run_id.replace("-", ""), 16)
    if not 0 < value < 1 << 128:
        raise ValueError(f"run id {run_id!r} is not a 128-bit id")
    return value


def run_span_id(run_id: str) -> int:
    """The span id of a run's span: 64 bits of a hash of the run id (never 0, the invalid span id)."""
    digest = hashlib.sha256(f"stepflow-dagster/run-span/{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def run_span_context(run_id: str) -> SpanContext:
    return SpanContext(
        trace_id=trace_id_for(run_id),
        span_id=run_span_id(run_id),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "stepflow_forced_ids", default=None
)


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunIdGenerator(RandomIdGenerator):
        """Random ids, except for the run span, whose trace and span id come from the run id."""

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced else super().generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced else super().generate_trace_id()

    return RunIdGenerator()


# -- providers -------------------------------------------------------------------------------------


@dataclass
class _Telemetry:
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    duration: Histogram | None = None
    failures: Counter | None = None

    @property
    def tracer(self) -> trace.Tracer | None:
        return self.tracer_provider.get_tracer(SCOPE) if self.tracer_provider else None

    def flush(self) -> None:
        # Bounded: an unreachable collector delays a step by at most this, never fails it.
        if self.tracer_provider:
            self.tracer_provider.force_flush(FLUSH_TIMEOUT_MS)
        if self.meter_provider:
            self.meter_provider.force_flush(FLUSH_TIMEOUT_MS)

    def shutdown(self) -> None:
        if self.tracer_provider:
            self.tracer_provider.shutdown()
        if self.meter_provider:
            self.meter_provider.shutdown()


_lock = threading.Lock()
_state: _Telemetry | None = None
_pid: int | None = None


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _wanted(signal: str) -> str | None:
    """'otlp', 'console' or None for a signal ('traces', 'metrics'), by the standard OTEL_* variables."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return None
    chosen = _env(f"OTEL_{signal.upper()}_EXPORTER").lower().split(",")[0].strip()
    if chosen == "none":
        return None
    if chosen in ("otlp", "console"):
        return chosen
    if chosen:
        logger.warning("OTEL_%s_EXPORTER=%s is not supported here: use otlp or console", signal, chosen)
        return None
    endpoint = _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return "otlp" if endpoint else None


def _resource() -> Resource:
    from opentelemetry.sdk.resources import Resource

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is the default name.
    attributes: dict[str, Any] = {}
    if not _env("OTEL_SERVICE_NAME") and "service.name=" not in _env("OTEL_RESOURCE_ATTRIBUTES"):
        attributes["service.name"] = SERVICE_NAME
    return Resource.create(attributes)


def _from_env() -> _Telemetry:
    traces, metrics = _wanted("traces"), _wanted("metrics")
    protocol = _env("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf" and "otlp" in (traces, metrics):
        logger.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: this build exports OTLP over http/protobuf", protocol)
    span_exporter: SpanExporter | None = None
    if traces == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    elif traces == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    reader: MetricReader | None = None
    if metrics == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    elif metrics == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        reader = PeriodicExportingMetricReader(ConsoleMetricExporter())
    return _build(BatchSpanProcessor(span_exporter) if span_exporter else None, reader)


def _build(processor: SpanProcessor | None, reader: MetricReader | None) -> _Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    state = _Telemetry()
    if processor is None and reader is None:
        return state
    resource = _resource()
    if processor is not None:
        state.tracer_provider = TracerProvider(resource=resource, id_generator=_id_generator())
        state.tracer_provider.add_span_processor(processor)
    if reader is not None:
        state.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = state.meter_provider.get_meter(SCOPE)
        state.duration = meter.create_histogram(
            DURATION, unit="s", description="Time a Langflow component's step took, by component type."
        )
        state.failures = meter.create_counter(
            FAILURES, unit="1", description="Failed component steps, by component type."
        )
    if state.tracer_provider is not None:
        install_log_correlation()
    return state


def _current() -> _Telemetry:
    global _state, _pid
    with _lock:
        if _state is None or _pid != os.getpid():  # a forked process builds its own exporters
            _state, _pid = _from_env(), os.getpid()
        return _state


def configure(span_processor: SpanProcessor | None = None, metric_reader: MetricReader | None = None) -> None:
    """Use these instead of the environment's exporters (tests: in-memory exporter and reader)."""
    global _state, _pid
    with _lock:
        if _state is not None:
            _state.shutdown()
        _state, _pid = _build(span_processor, metric_reader), os.getpid()


def reset() -> None:
    """Forget the configuration: the next step reads the environment again."""
    global _state
    with _lock:
        if _state is not None:
            _state.shutdown()
        _state = None


def enabled() -> bool:
    return _current().tracer_provider is not None


def flush() -> None:
    _current().flush()


# -- secrets ---------------------------------------------------------------------------------------


_REGISTRY = "stepflow_dagster.runtime.secrets"


def _secret_values() -> list[str]:
    """What to mask: the values the runtime resolved here, and secret-looking environment variables.

    The registry is read only if the runtime is loaded (a process that never built a component has
    resolved nothing), so telemetry imports no runtime module.
    """
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}
    registry = sys.modules.get(_REGISTRY)
    if registry is not None:
        resolved = [v for v in registry.resolved() if len(v) >= registry.MIN_LENGTH]
        values.update(f for v in resolved for f in registry.spellings(v))
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    for secret in _secret_values() if secrets is None else secrets:
        text = text.replace(secret, _MASK)
    return text


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as OpenTelemetry takes them (str, bool, int, float), secret values masked."""
    secrets = _secret_values()
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if not isinstance(value, str | bool | int | float):
            value = str(value)
        out[key] = redact(value, secrets) if isinstance(value, str) else value
    return out


def _record_error(span: trace.Span, exc: BaseException) -> None:
    secrets = _secret_values()
    message = redact(str(exc), secrets)
    stack = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), secrets)
    span.record_exception(
        exc,
        attributes={"exception.message": message, "exception.stacktrace": stack},
        escaped=True,
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:1000]))


# -- logs ------------------------------------------------------------------------------------------

_factory_installed = False


def install_log_correlation() -> None:
    """Give every log record `trace_id`/`span_id` (hex, '0' * n outside a span) and the otel* aliases."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ctx = trace.get_current_span().get_span_context()
        _stamp(record, ctx)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def _stamp(record: logging.LogRecord, ctx: SpanContext) -> None:
    trace_hex, span_hex = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    for key, value in (("trace_id", trace_hex), ("span_id", span_hex)):
        setattr(record, key, value)
        setattr(record, "otel" + key.title().replace("_", "").replace("Id", "ID"), value)
    record.__dict__["otelTraceSampled"] = ctx.trace_flags.sampled


class TraceContextFilter(logging.Filter):
    """For a handler whose format names %(trace_id)s / %(span_id)s, when the factory is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record, trace.get_current_span().get_span_context())
        return True


def _dagster_log(message: str) -> None:
    """Write to the current op's Dagster log, when there is one (no import of dagster from here)."""
    dagster = sys.modules.get("dagster")
    if dagster is None:
        return
    try:
        dagster.OpExecutionContext.get().log.info(message)
    except Exception:  # not inside an op: nothing to write to
        return


# -- spans -----------------------------------------------------------------------------------------


def _metric_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: str(attributes[k]) for k in _METRIC_KEYS if attributes.get(k) is not None}


@contextmanager
def step_span(run_id: str, attributes: dict[str, Any]) -> Iterator[trace.Span | None]:
    """A span for one component step of run `run_id`, child of the run span; no-op when disabled.

    Records duration and failures, marks errors, and flushes before returning (the step's process may
    exit right after).
    """
    state = _current()
    tracer = state.tracer
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        if tracer is None:
            yield None
            return
        parent = trace.set_span_in_context(NonRecordingSpan(run_span_context(run_id)))
        label = attributes.get("stepflow.display_name") or attributes.get("stepflow.node_id") or "step"
        span = tracer.start_span(
            redact(f"component {label}"),
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=_clean(attributes),
        )
        span.set_attribute("dagster.run_id", run_id)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            ctx = span.get_span_context()
            _dagster_log(f"OpenTelemetry trace_id={ctx.trace_id:032x} span_id={ctx.span_id:016x}")
            logger.debug("step %s started", attributes.get("dagster.step_key"))
            yield span
        except BaseException as exc:
            _record_error(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()
    except BaseException as exc:
        error = exc
        raise
    finally:
        if state.duration is not None and state.failures is not None:
            metric_attrs = _metric_attributes(attributes)
            outcome = "failure" if error is not None else "success"
            state.duration.record(time.perf_counter() - started, {**metric_attrs, "outcome": outcome})
            if error is not None:
                state.failures.add(1, {**metric_attrs, "error.type": type(error).__name__})
        state.flush()


def emit_run_span(
    run_id: str,
    *,
    name: str,
    start_time: float,
    end_time: float,
    status: str,
    attributes: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Emit the span of a finished run (times in seconds since the epoch) with its id-derived ids.

    Returns False when telemetry is off. Emitting twice gives two spans with the same id: call once.
    """
    state = _current()
    tracer = state.tracer
    if tracer is None:
        return False
    attrs = {"dagster.run_id": run_id, "dagster.run_status": status, **(attributes or {})}
    token = _forced_ids.set((trace_id_for(run_id), run_span_id(run_id)))
    try:
        span = tracer.start_span(
            f"run {name}",
            context=otel_context.Context(),  # a root span: no parent, whatever is current here
            kind=SpanKind.INTERNAL,
            attributes=_clean(attrs),
            start_time=int(start_time * 1e9),
        )
    finally:
        _forced_ids.reset(token)
    if status in ("FAILURE", "CANCELED"):
        span.set_status(Status(StatusCode.ERROR, redact(error or f"run {status.lower()}")[:1000]))
    elif status == "SUCCESS":
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=int(end_time * 1e9))
    state.flush()
    return True


def emit_run_span_for(instance: Any, run_id: str) -> bool:
    """Emit a finished run's span from its record in a Dagster instance (the CLI, tests, the sensors)."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"no run {run_id} in this Dagster instance")
    run = record.dagster_run
    start = record.start_time or record.create_timestamp.timestamp()
    end = record.end_time or time.time()
    flow = run.tags.get("stepflow/flow")
    attributes = {"dagster.job": run.job_name, "stepflow.flow": flow}
    if run.parent_run_id:
        attributes["dagster.parent_run_id"] = run.parent_run_id
    return emit_run_span(
        run_id,
        name=run.job_name,
        start_time=start,
        end_time=max(end, start),
        status=run.status.value,
        attributes=attributes,
    )

"""Spans, metrics and log correlation of real runs (real lfx components), read from in-memory exporters."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stepflow_dagster import telemetry
from stepflow_dagster.defs.single import reconstructable_job
from stepflow_dagster.defs.telemetry_sensors import run_span_sensors
from tests.conftest import ROOT

TEST_FLOWS = ROOT / "tests" / "flows"
pytestmark = pytest.mark.slow


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.configure(SimpleSpanProcessor(exporter), None)
    yield exporter
    telemetry.reset()


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as inst:
        yield inst


def run(flow: Path, instance: dg.DagsterInstance, tmp_path: Path, config: dict[str, Any]) -> str:
    with dg.execute_job(
        reconstructable_job(str(flow), "in_process", str(tmp_path / "io")),
        instance=instance,
        run_config={"resources": {"langflow": {"config": config}}},
        raise_on_error=False,
    ) as result:
        return result.run_id


def test_ids_come_from_the_run_id() -> None:
    run_id = str(uuid.uuid4())
    assert telemetry.trace_id_for(run_id) == uuid.UUID(run_id).int
    assert telemetry.run_span_id(run_id) == telemetry.run_span_id(run_id) != 0
    assert telemetry.run_span_id(run_id) != telemetry.run_span_id(str(uuid.uuid4()))
    ctx = telemetry.run_span_context(run_id)
    assert ctx.is_valid and ctx.trace_flags.sampled


def test_one_trace_per_run_a_span_per_step_under_the_run_span(
    spans: InMemorySpanExporter, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    flow = ROOT / "flows" / "hello_world.json"
    run_id = run(flow, instance, tmp_path, {"input_value": "traced"})
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
    steps = spans.get_finished_spans()
    assert telemetry.emit_run_span_for(instance, run_id)
    run_span = spans.get_finished_spans()[-1]

    trace_id = uuid.UUID(run_id).int
    assert run_span.name == "run hello_world"
    assert run_span.context is not None and run_span.parent is None
    assert (run_span.context.trace_id, run_span.context.span_id) == (
        trace_id,
        telemetry.run_span_id(run_id),
    )
    assert run_span.status.status_code == StatusCode.OK
    assert run_span.attributes is not None and run_span.attributes["dagster.run_id"] == run_id
    assert run_span.end_time and run_span.start_time and run_span.end_time >= run_span.start_time

    by_node = {s.attributes["stepflow.node_id"]: s for s in steps if s.attributes}
    assert set(by_node) == {"TextInput-J1CQK", "ChatOutput-boh63"}  # one span per component
    for node_id, span in by_node.items():
        assert span.context is not None and span.context.trace_id == trace_id
        assert span.parent is not None and span.parent.span_id == telemetry.run_span_id(run_id)
        attrs = dict(span.attributes or {})
        assert attrs["stepflow.flow"] and attrs["stepflow.component_type"]
        assert attrs["stepflow.display_name"] and attrs["stepflow.category"]
        assert attrs["dagster.attempt"] == 1 and attrs["dagster.run_id"] == run_id
        assert span.name == f"component {attrs['stepflow.display_name']}"
        assert span.status.status_code == StatusCode.UNSET, node_id
        # Each step span sits inside the run span's time.
        assert span.start_time and span.end_time and run_span.start_time and run_span.end_time
        assert run_span.start_time <= span.start_time <= span.end_time <= run_span.end_time


def test_a_failing_step_has_an_error_status_and_an_exception_event(
    spans: InMemorySpanExporter,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEPFLOW_TEST_MARKER", str(tmp_path / "absent"))
    run_id = run(TEST_FLOWS / "flaky.json", instance, tmp_path, {"input_value": "doc-1"})
    assert telemetry.emit_run_span_for(instance, run_id)
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    flaky = [s for s in finished if s.attributes and s.attributes.get("stepflow.node_id") == "Flaky-fl001"]
    assert len(flaky) == 1
    span = flaky[0]
    assert span.status.status_code == StatusCode.ERROR
    assert "the service is down" in (span.status.description or "")
    events = [e for e in span.events if e.name == "exception"]
    assert events and events[0].attributes is not None
    assert "the service is down (no absent)" in str(events[0].attributes["exception.message"])
    assert "Traceback" in str(events[0].attributes["exception.stacktrace"])
    run_span = finished[-1]
    assert run_span.parent is None and run_span.status.status_code == StatusCode.ERROR
    assert run_span.attributes is not None and run_span.attributes["dagster.run_status"] == "FAILURE"
    # The step after the failure never ran: no span for it.
    assert not [
        s for s in finished if s.attributes and s.attributes.get("stepflow.node_id") == "ChatOutput-out01"
    ]


def test_secrets_appear_in_no_span(
    spans: InMemorySpanExporter, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-7c0ffee-DO-NOT-LEAK-91"
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", secret)
    run_id = run(TEST_FLOWS / "secret_probe.json", instance, tmp_path, {})
    assert telemetry.emit_run_span_for(instance, run_id)
    finished = spans.get_finished_spans()
    assert len(finished) == 3
    dumped = "\n".join(s.to_json() for s in finished)
    assert secret not in dumped
    # And when a component's error message carries it, it is masked in the exception event and status.
    exporter_spans = _fail_with_secret(secret)
    text = "\n".join(s.to_json() for s in exporter_spans)
    assert secret not in text and "[redacted]" in text


def _fail_with_secret(secret: str) -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    telemetry.configure(SimpleSpanProcessor(exporter), None)
    with (
        pytest.raises(RuntimeError),
        telemetry.step_span(str(uuid.uuid4()), {"stepflow.node_id": f"x-{secret}"}),
    ):
        raise RuntimeError(f"bad key {secret}")
    return exporter.get_finished_spans()


def test_duration_and_failure_metrics_by_component_type(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    telemetry.configure(SimpleSpanProcessor(exporter), reader)
    try:
        monkeypatch.setenv("STEPFLOW_TEST_MARKER", str(tmp_path / "absent"))
        run(TEST_FLOWS / "flaky.json", instance, tmp_path, {"input_value": "doc-1"})
        data = json.loads(reader.get_metrics_data().to_json())  # type: ignore[union-attr]
    finally:
        telemetry.reset()
    metrics = {
        m["name"]: m["data"]["data_points"]
        for rm in data["resource_metrics"]
        for sm in rm["scope_metrics"]
        for m in sm["metrics"]
    }
    durations = {p["attributes"]["stepflow.component_type"]: p for p in metrics[telemetry.DURATION]}
    assert set(durations) == {"TextInput", "Flaky"}, durations
    assert durations["Flaky"]["attributes"]["outcome"] == "failure" and durations["Flaky"]["count"] == 1
    assert durations["TextInput"]["attributes"]["outcome"] == "success"
    failures = metrics[telemetry.FAILURES]
    assert [(p["attributes"]["stepflow.component_type"], p["value"]) for p in failures] == [("Flaky", 1)]


def test_step_logs_carry_the_trace_id(
    spans: InMemorySpanExporter, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        run_id = run(ROOT / "flows" / "hello_world.json", instance, tmp_path, {"input_value": "logs"})
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    trace_hex = uuid.UUID(run_id).hex
    step_spans = {format(s.context.span_id, "016x") for s in spans.get_finished_spans() if s.context}
    in_steps = [r for r in records if getattr(r, "trace_id", None) == trace_hex]
    assert in_steps, "no log record made inside a step carries the run's trace id"
    assert {r.span_id for r in in_steps} <= step_spans  # type: ignore[attr-defined]
    assert logging.Formatter("%(trace_id)s %(span_id)s %(message)s").format(in_steps[0]).startswith(trace_hex)
    # The Dagster event log of each step names its trace and span.
    messages = [
        r.user_message for r in instance.all_logs(run_id) if "OpenTelemetry trace_id=" in r.user_message
    ]
    assert len(messages) == 2 and all(f"trace_id={trace_hex}" in m for m in messages)


def test_nothing_is_recorded_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    telemetry.reset()
    assert not telemetry.enabled()
    with telemetry.step_span(str(uuid.uuid4()), {"stepflow.node_id": "n"}) as span:
        assert span is None
    assert not telemetry.emit_run_span(
        str(uuid.uuid4()), name="j", start_time=1, end_time=2, status="SUCCESS"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    telemetry.reset()
    assert telemetry.enabled()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    telemetry.reset()
    assert not telemetry.enabled()
    telemetry.reset()


def test_the_run_status_sensor_emits_the_run_span_once(
    spans: InMemorySpanExporter, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    sensors = {s.name: s for s in run_span_sensors()}
    assert set(sensors) == {
        "stepflow_otel_run_span_success",
        "stepflow_otel_run_span_failure",
        "stepflow_otel_run_span_canceled",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    # The sensors load beside the flows' jobs (as build_definitions would add them).
    dg.Definitions(sensors=list(sensors.values())).get_repository_def()
    run_id = run(ROOT / "flows" / "hello_world.json", instance, tmp_path, {"input_value": "sensed"})
    dagster_run = instance.get_run_by_id(run_id)
    assert dagster_run is not None
    event = next(
        r.dagster_event
        for r in instance.all_logs(run_id)
        if r.dagster_event and r.dagster_event.event_type_value == "PIPELINE_SUCCESS"
    )
    before = len(spans.get_finished_spans())
    sensor = sensors["stepflow_otel_run_span_success"]
    sensor(
        dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=dagster_run
        )
    )
    emitted = spans.get_finished_spans()[before:]
    assert len(emitted) == 1 and emitted[0].name == "run hello_world"
    assert emitted[0].context is not None and emitted[0].context.span_id == telemetry.run_span_id(run_id)
    assert emitted[0].attributes is not None and emitted[0].attributes["stepflow.flow"]


def test_values_the_runtime_resolved_are_masked_whatever_their_variable_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepflow_dagster.runtime import secrets as registry

    value = "opaque-value-4f2e9a71"
    monkeypatch.setenv("STEPFLOW_TEST_MODEL_CONFIG", value)  # not a secret-looking name
    assert value in "\n".join(s.to_json() for s in _fail_with_secret(value))  # unknown: not masked
    registry.remember(value)  # what the runtime does when a secret field resolves to it
    try:
        text = "\n".join(s.to_json() for s in _fail_with_secret(value))
    finally:
        registry.forget()
        telemetry.reset()
    assert value not in text and "[redacted]" in text

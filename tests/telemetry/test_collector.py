"""Traces and metrics of a real multiprocess run, exported by OTLP/HTTP to a real OpenTelemetry Collector.

The collector is built from its Go modules by services/otel/build.sh (cached under .cache/otel) and
listens on loopback; its file exporter writes what it received as OTLP JSON lines, where the test finds
the run's trace by the run id.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from stepflow_dagster import telemetry
from stepflow_dagster.defs.single import reconstructable_job
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  file/traces:
    path: {out}/traces.jsonl
    flush_interval: 100ms
  file/metrics:
    path: {out}/metrics.jsonl
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def collector_binary() -> Path:
    if shutil.which("go") is None and not (ROOT / ".cache" / "otel" / "stepflow-otelcol").exists():
        pytest.skip("go is not installed: cannot build the OpenTelemetry Collector")
    res = subprocess.run(
        ["bash", str(ROOT / "services" / "otel" / "build.sh")], capture_output=True, text=True, timeout=1200
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = collector_binary()
    port = free_port()
    out = tmp_path / "otel"
    out.mkdir()
    config = tmp_path / "collector.yaml"
    config.write_text(CONFIG.format(port=port, out=out))
    log = (tmp_path / "collector.log").open("w")
    proc = subprocess.Popen([str(binary), "--config", f"file:{config}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "collector.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the collector did not listen in 30 s"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", out
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def spans_of(path: Path, trace_hex: str) -> list[dict[str, Any]]:
    found = []
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", []):
            service = {a["key"]: a["value"] for a in rs["resource"].get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    if span["traceId"] == trace_hex:
                        span["service"] = service.get("service.name", {}).get("stringValue")
                        found.append(span)
    return found


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}


def test_a_multiprocess_run_reaches_a_real_collector_as_one_trace(
    collector: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, out = collector
    # The standard variables only: the step processes (spawned by the multiprocess executor) inherit them.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "stepflow-test")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # only the flush at the end of a step
    telemetry.reset()
    (tmp_path / "home").mkdir()
    try:
        with (
            dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance,
            dg.execute_job(
                reconstructable_job(
                    str(ROOT / "flows" / "hello_world.json"), "multiprocess", str(tmp_path / "io")
                ),
                instance=instance,
                run_config={"resources": {"langflow": {"config": {"input_value": "to the collector"}}}},
            ) as result,
        ):
            assert result.success
            run_id = result.run_id
            pids = {
                e.pid for e in result.all_events if e.event_type_value == "STEP_START" and e.pid is not None
            }
            assert len(pids) == 2 and os.getpid() not in pids  # each step ran in its own process
            # What the daemon's run-status sensor does for runs it sees finish.
            assert telemetry.emit_run_span_for(instance, run_id)
    finally:
        telemetry.reset()

    trace_hex = uuid.UUID(run_id).hex
    deadline = time.monotonic() + 20
    while len(spans := spans_of(out / "traces.jsonl", trace_hex)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(spans) == 3, spans
    run_span = next(s for s in spans if s["name"] == "run hello_world")
    assert run_span["spanId"] == format(telemetry.run_span_id(run_id), "016x")
    assert not run_span.get("parentSpanId")
    assert attrs(run_span)["dagster.run_id"] == run_id
    steps = [s for s in spans if s is not run_span]
    assert {attrs(s)["stepflow.node_id"] for s in steps} == {"TextInput-J1CQK", "ChatOutput-boh63"}
    for span in steps:
        assert span["parentSpanId"] == run_span["spanId"]
        assert span["service"] == "stepflow-test"
        assert attrs(span)["stepflow.flow"] and attrs(span)["stepflow.component_type"]

    deadline = time.monotonic() + 20
    metrics: dict[str, list[dict[str, Any]]] = {}
    while telemetry.DURATION not in metrics and time.monotonic() < deadline:
        time.sleep(0.2)
        metrics = {}
        path = out / "metrics.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            for rm in json.loads(line).get("resourceMetrics", []):
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        metrics.setdefault(m["name"], []).extend(m.get("histogram", {}).get("dataPoints", []))
    points = metrics[telemetry.DURATION]
    assert {attrs(p)["stepflow.component_type"] for p in points} == {"TextInput", "ChatOutput"}

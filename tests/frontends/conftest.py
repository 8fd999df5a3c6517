"""A real Dagster deployment on loopback: dagster-webserver and dagster-daemon over a temp DAGSTER_HOME
(SQLite, QueuedRunCoordinator, telemetry off) serving the project's workspace.yaml."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_flow

BIN = Path(sys.executable).parent
INSTANCE_YAML = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
telemetry:
  enabled: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dagster_env(home: Path, flows: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    if flows is not None:
        env["STEPFLOW_FLOWS_DIR"] = str(flows)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        env.pop(name, None)
    return env


def make_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(INSTANCE_YAML)
    return path


@dataclass
class Stack:
    url: str
    home: Path
    flows: Path
    logs: Path

    def storage(self, run_id: str, step: str, output: str) -> Path:
        return self.home / "storage" / run_id / step / f"{output}.json"


def _wait_http(url: str, procs: list[subprocess.Popen[bytes]], logs: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited: see {logs}")
        try:
            with urllib.request.urlopen(url, timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout} s: see {logs}")
        time.sleep(0.5)


def _graphql(url: str, query: str) -> dict[str, object]:
    req = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return dict(json.loads(res.read()))


@pytest.fixture(scope="session")
def dagster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("dagster-stack")
    home = make_home(base / "home")
    flows = base / "flows"
    flows.mkdir()
    shutil.copy(ROOT / "flows" / "hello_world.json", flows)
    shutil.copy(shared_flow("openrag__ingestion_flow.json"), flows)
    logs = base / "logs"
    logs.mkdir()
    env = dagster_env(home, flows)
    port = free_port()
    workspace = str(ROOT / "workspace.yaml")
    procs: list[subprocess.Popen[bytes]] = []
    files = []
    try:
        for name, args in (
            (
                "webserver",
                [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            ),
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
        ):
            out = (logs / f"{name}.log").open("wb")
            files.append(out)
            procs.append(
                subprocess.Popen(
                    args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/server_info", procs, logs)
        # The code location has loaded (the webserver answers before it has).
        deadline = time.monotonic() + 180
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        while True:
            data = _graphql(url, query)
            entries = data["data"]["workspaceOrError"]["locationEntries"]  # type: ignore[index]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                break
            assert time.monotonic() < deadline, f"code location not loaded: {entries}"
            time.sleep(0.5)
        yield Stack(url=url, home=home, flows=flows, logs=logs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in files:
            f.close()

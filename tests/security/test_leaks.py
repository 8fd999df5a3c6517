"""The leak corpus: careless components and careless run configs, run through Dagster, then every place
a secret could land is scanned for it: every file of the instance (SQLite, compute logs), the IO storage,
the captured stdout/stderr and the exported spans.

tests/flows/leaky.json: Leaky-ok001 logs and prints its key and returns it (to a Chat Output); Leaky-bad01
logs and prints it and raises "Incorrect API key provided: <key>" from a cause that carries it too (a
custom component: tests/flows/leaky.yaml trusts it). Runs: in-process; a loop whose body node uses the
key; the CLI with `--var` and the default executor (a process per step); one launched by GraphQL through
dagster-webserver and dagster-daemon. Refused before the run: the key in run config variables, in a tweak
(in-process and by the CLI, which creates no run at all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepflow_dagster import telemetry
from stepflow_dagster.defs.single import job_for_flow
from stepflow_dagster.runtime import secrets as registry
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

FLOW = ROOT / "tests" / "flows" / "leaky.json"
SECRET = "sk-leak-corpus-Q9v27xLm"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.forget()  # the process's registry: what an earlier test resolved must not mask for this one
    yield
    registry.forget()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.configure(SimpleSpanProcessor(exporter), None)
    yield exporter
    telemetry.reset()


def occurrences(text: str) -> int:
    return sum(text.count(form) for form in registry.spellings(SECRET))


def files_holding_the_secret(*folders: Path) -> dict[str, int]:
    found = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                count = occurrences(path.read_bytes().decode("utf-8", errors="replace"))
                if count:
                    found[str(path.relative_to(folder))] = count
    return found


def compute_logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in home.rglob("compute_logs/*") if p.is_file())


def execute(
    tmp_path: Path, config: dict[str, Any]
) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance, Path, Path]:
    home, storage = tmp_path / "home", tmp_path / "io"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))
    job = job_for_flow(str(FLOW), "in_process", str(storage))
    result = job.execute_in_process(
        run_config={"resources": {"langflow": {"config": config}}}, instance=instance, raise_on_error=False
    )
    return result, instance, home, storage


def test_in_process_run_of_careless_components_leaks_nowhere(
    tmp_path: Path,
    spans: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", SECRET)
    result, instance, home, storage = execute(tmp_path, {})
    with instance:
        assert telemetry.emit_run_span_for(instance, result.run_id)
    out, err = capfd.readouterr()
    err += caplog.text  # pytest takes log records from the root logger's handlers

    # The run did what it should: the raising component failed with its message masked, the other
    # two succeeded and stored their outputs (which carry the key) by reference.
    failed = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failed] == ["Leaky_bad01"]
    error = failed[0].event_specific_data.error
    assert "Incorrect API key provided: **********" in error.to_string()
    assert "ConnectionError: HTTP 401 for key=**********" in error.to_string()  # the cause, masked
    succeeded = {e.step_key for e in result.all_events if e.is_step_success}
    assert succeeded == {"Leaky_ok001", "ChatOutput_out01"}
    stored = json.loads((storage / result.run_id / "ChatOutput_out01" / "message.json").read_text())
    assert "$ref" in stored
    # What the components logged and printed reached the compute logs, masked.
    logs = compute_logs(home)
    assert "stdout: key **********" in logs and "stderr: key **********" in logs
    assert "calling the service with key **********" in out + err + logs
    assert len(spans.get_finished_spans()) == 4  # three steps and the run

    assert files_holding_the_secret(home, storage) == {}
    assert occurrences(out + err) == 0
    assert occurrences("\n".join(s.to_json() for s in spans.get_finished_spans())) == 0


@pytest.mark.parametrize(
    "config",
    [
        {"variables": {"STEPFLOW_TEST_SECRET": SECRET}},
        {"tweaks": {"Leaky-ok001": {"api_key": SECRET}}},
    ],
    ids=["run-variable", "tweak"],
)
def test_a_secret_in_run_config_is_refused_before_any_component_runs(
    tmp_path: Path,
    spans: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
    config: dict[str, Any],
) -> None:
    result, instance, home, storage = execute(tmp_path, config)
    out, err = capfd.readouterr()
    assert not result.success
    failed = [e for e in result.all_events if e.is_step_failure]
    assert failed and all(
        "set the environment variable STEPFLOW_TEST_SECRET of the step processes"
        in e.event_specific_data.error.to_string()
        for e in failed
    )
    assert "stdout: key" not in out + compute_logs(home)  # no component ran
    assert not storage.exists() or not any(storage.rglob("*.json"))
    assert occurrences(out + err) == 0
    assert occurrences("\n".join(s.to_json() for s in spans.get_finished_spans())) == 0
    # Dagster wrote the run's config, with the value, before any of our code ran: only there.
    with instance:
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and occurrences(json.dumps(run.run_config)) == 1
        records = instance.all_logs(run.run_id)
        events = "\n".join(str(r.dagster_event) + (r.user_message or "") for r in records)
    assert occurrences(events) == 0
    assert set(files_holding_the_secret(home)) == {"history/runs.db"}


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("STEPFLOW_TEST_SECRET", "STEPFLOW_EXECUTOR")}
    environ |= {"DAGSTER_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stepflow_dagster.cli", "run", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=600,
    )


def test_cli_run_with_var_and_the_default_executor_leaks_nowhere(tmp_path: Path) -> None:
    """`--var` (through the environment), the default executor (forkserver: a process per step), spans
    printed by the console exporter of every step process."""
    from stepflow_dagster.defs import StepflowSettings

    assert StepflowSettings.executor == "forkserver"
    home = tmp_path / "home"
    home.mkdir()
    res = cli(
        home,
        str(FLOW),
        "--var",
        f"STEPFLOW_TEST_SECRET={SECRET}",
        env={"OTEL_TRACES_EXPORTER": "console"},
    )
    assert res.returncode == 1
    assert "error: step Leaky_bad01 (node Leaky-bad01, Leaky)" in res.stderr
    assert "Incorrect API key provided: **********" in res.stderr
    logs = compute_logs(home)
    assert "stdout: key **********" in logs and '"name": "component Leaky"' in logs + res.stdout
    assert occurrences(res.stdout + res.stderr) == 0
    assert files_holding_the_secret(home) == {}  # instance and IO storage ($DAGSTER_HOME/storage)


def test_cli_refuses_a_secret_tweak_before_launching(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tweaks = json.dumps({"Leaky": {"api_key": SECRET}})
    res = cli(home, str(FLOW), "--in-process", "--tweaks", tweaks)
    assert res.returncode == 2
    assert "sets secret field 'api_key'" in res.stderr
    assert "set the environment variable STEPFLOW_TEST_SECRET" in res.stderr
    assert occurrences(res.stdout + res.stderr) == 0
    assert files_holding_the_secret(home) == {}
    assert not (home / "history").exists()  # no run was created


def leaky_loop_flow(folder: Path) -> Path:
    """The loop fixture (Rows -> Loop -> Shout -> back) whose body node uses a key: prints and logs it,
    and raises with it on the item "beta"."""
    from tests.defs.test_loop_runs import _fed_loop_fixture
    from tests.runtime.test_secrets import _loop_with_leaky_body

    path = _fed_loop_fixture(folder)
    doc = json.loads(path.read_text())
    nodes, _, _ = _loop_with_leaky_body()
    for node in doc["data"]["nodes"]:
        if node["id"] == "Shout-loop1":
            node["data"] = nodes["Shout-loop1"]
    path.write_text(json.dumps(doc))
    return path  # beside it, its deployment file trusts its custom code


def test_a_loop_body_using_a_key_leaks_nowhere(
    tmp_path: Path,
    spans: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", SECRET)
    flow = leaky_loop_flow(tmp_path)
    home, storage = tmp_path / "home", tmp_path / "io"
    home.mkdir()
    job = job_for_flow(str(flow), "in_process", str(storage))
    config = {"tweaks": {"Rows-feed1": {"titles": "alpha, beta"}}}
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        result = job.execute_in_process(
            run_config={"resources": {"langflow": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )
        assert telemetry.emit_run_span_for(instance, result.run_id)
    out, err = capfd.readouterr()
    err += caplog.text
    failed = [e for e in result.all_events if e.is_step_failure]
    assert len(failed) == 1
    assert "Incorrect API key provided: **********" in failed[0].event_specific_data.error.to_string()
    assert "body uses **********" in out + compute_logs(home)
    assert files_holding_the_secret(home, storage) == {}
    assert occurrences(out + err) == 0
    assert occurrences("\n".join(s.to_json() for s in spans.get_finished_spans())) == 0


def test_a_run_launched_by_graphql_through_webserver_and_daemon_leaks_nowhere(tmp_path: Path) -> None:
    """The deployment path: dagster-webserver and dagster-daemon (QueuedRunCoordinator) on a SQLite
    instance, the run launched by GraphQL and run by the daemon's run worker with the default executor
    (a process per step); spans printed by the console exporter of every process. Then every file of the
    instance (runs, event log, compute logs, IO storage) and both services' output are scanned."""
    import shutil

    from stepflow_dagster.submit import client_for, job_name, wait
    from tests.frontends.conftest import BIN, _graphql, _wait_http, dagster_env, free_port, make_home

    home = make_home(tmp_path / "home")
    flows, logs = tmp_path / "flows", tmp_path / "logs"
    flows.mkdir()
    logs.mkdir()
    for name in ("leaky.json", "leaky.yaml"):
        shutil.copy(FLOW.parent / name, flows / name)
    env = dagster_env(home, flows) | {"STEPFLOW_TEST_SECRET": SECRET, "OTEL_TRACES_EXPORTER": "console"}
    env.pop("STEPFLOW_EXECUTOR", None)
    port = free_port()
    workspace = str(ROOT / "workspace.yaml")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in (
            (
                "webserver",
                [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            ),
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
        ):
            with (logs / f"{name}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/server_info", procs, logs)
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        for _ in range(360):
            entries = _graphql(url, query)["data"]["workspaceOrError"]["locationEntries"]  # type: ignore[index]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                break
            time.sleep(0.5)
        client = client_for(url)
        run_id = client.submit_job_execution(job_name(str(flows / "leaky.json")), run_config={})
        assert wait(client, run_id, timeout=420) == "FAILURE"  # Leaky-bad01 raises with its key
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.all_logs(run_id)
            failures = [r for r in records if r.dagster_event and r.dagster_event.is_step_failure]
            succeeded = {r.step_key for r in records if r.dagster_event and r.dagster_event.is_step_success}
        assert [r.step_key for r in failures] == ["Leaky_bad01"]
        assert "Incorrect API key provided: **********" in str(failures[0].dagster_event)
        assert succeeded == {"Leaky_ok001", "ChatOutput_out01"}
    finally:
        import signal

        for p in procs:  # each in its own session: the webserver's code server goes with it
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    captured = compute_logs(home) + "\n".join(p.read_text(errors="replace") for p in logs.iterdir())
    assert "stdout: key **********" in captured and '"name": "component Leaky"' in captured  # spans too
    assert files_holding_the_secret(home, logs) == {}

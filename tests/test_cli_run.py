"""`stepflow-dagster run` as a user runs it: a real process, a temporary Dagster instance, real lfx."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stepflow_dagster.defs.ops import PREVIEW_CHARS
from tests.conftest import ROOT, SHARED_FLOWS

pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "stepflow_dagster.cli", "run", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=600,
    )


def test_router_prints_only_the_branch_taken() -> None:
    res = run(str(ROOT / "tests/flows/router.json"), "--input", "urgent: the server is down", "--json")
    assert res.returncode == 0, res.stderr
    assert (
        res.stdout.strip().startswith("{")
        and '"ChatOutput-urgnt": "urgent: the server is down"' in res.stdout
    )
    assert "ChatOutput-norml" not in res.stdout


def test_a_failing_component_exits_1_naming_its_node(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = run(
        str(ROOT / "tests/flows/flaky.json"),
        "--in-process",
        env={"STEPFLOW_TEST_MARKER": str(tmp_path / "x")},
    )
    assert res.returncode == 1
    assert (
        "error: step Flaky_fl001 (node Flaky-fl001, Flaky)" in res.stderr
        and "the service is down" in res.stderr
    )


def test_a_failure_is_a_few_lines_on_a_fresh_dagster_home(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Step processes (multiprocess executor), a DAGSTER_HOME never used: no banner, no event log."""
    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "x"
    res = run(
        str(ROOT / "tests/flows/flaky.json"),
        env={"STEPFLOW_TEST_MARKER": str(marker), "DAGSTER_HOME": str(home)},
    )
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run ") and line.endswith(": FAILURE"))
    assert lines[start + 1 :] == [
        "error: step Flaky_fl001 (node Flaky-fl001, Flaky) failed",
        "  flow:  Flaky",
        f"  cause: ConnectionError: the service is down (no {marker.name})",
        "  not run: ChatOutput_out01",
        "  (Dagster's event log and the full traceback: run again with -v)",
    ]
    # before it, at most Dagster's one-line note that the new home has no dagster.yaml
    assert [line for line in lines[:start] if "No dagster instance configuration file" not in line] == []
    assert "Welcome to Dagster" not in res.stderr and not (home / ".telemetry").exists()


def test_verbose_failure_shows_the_event_log_and_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = run(
        str(ROOT / "tests/flows/flaky.json"),
        "--in-process",
        "-v",
        env={"STEPFLOW_TEST_MARKER": str(tmp_path / "x")},
    )
    assert res.returncode == 1
    assert "STEP_FAILURE" in res.stderr and "Stack Trace:" in res.stderr
    assert "  cause: ConnectionError: the service is down" in res.stderr


@pytest.mark.parametrize("executor", [["--in-process"], []], ids=["in-process", "default executor"])
def test_var_reaches_the_component_and_not_the_output(executor: list[str]) -> None:
    secret = "sk-cli-var-0123456789abcdef"
    res = run(
        str(ROOT / "tests/flows/secret_probe.json"), *executor, "--var", f"STEPFLOW_TEST_SECRET={secret}"
    )
    assert res.returncode == 0, res.stderr
    assert f"len={len(secret)} sha=" in res.stdout and secret not in res.stdout + res.stderr


HELLO = SHARED_FLOWS / "lfx_template__hello-world.json"


def test_an_output_longer_than_its_preview_is_printed_whole() -> None:
    """The CLI prints a short output from the preview its step recorded, a long one from its value."""
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(200))  # 5,500 characters
    assert len(text) > PREVIEW_CHARS
    for given in ("hi there", text):
        res = run(str(HELLO), "--input", given)
        assert res.returncode == 0, res.stderr
        assert res.stdout == given + "\n"


def test_the_default_executor_keeps_the_forkserver_the_cli_started_early() -> None:
    """`run` starts the forkserver before it imports Dagster; the run's executor must find the same
    environment and fork every step from that server, not stop it and start another."""
    script = f"""
import multiprocessing.forkserver as fs
from stepflow_dagster.cli import main
stops = []
stop = fs._forkserver._stop
fs._forkserver._stop = lambda: (stops.append(fs._forkserver._forkserver_pid), stop())
rc = main(["run", {str(HELLO)!r}, "--input", "hi"])
print("rc", rc, "stops", len(stops), "server", fs._forkserver._forkserver_pid is not None)
"""
    environ = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=environ, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["hi", "rc 0 stops 0 server True"], res.stdout + res.stderr

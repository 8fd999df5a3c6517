"""`stepflow-dagster run` as a user runs it: a real process, a temporary Dagster instance, real lfx."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

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


def test_var_reaches_the_component_and_not_the_output() -> None:
    secret = "sk-cli-var-0123456789abcdef"
    res = run(
        str(ROOT / "tests/flows/secret_probe.json"), "--in-process", "--var", f"STEPFLOW_TEST_SECRET={secret}"
    )
    assert res.returncode == 0, res.stderr
    assert f"len={len(secret)} sha=" in res.stdout and secret not in res.stdout + res.stderr

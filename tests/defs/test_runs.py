"""Flows run as Dagster jobs (real lfx components, a real on-disk Dagster instance), compared to `lfx run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from stepflow_dagster.defs.single import reconstructable_job
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow
from tests.conftest import ROOT, shared_flow

TEST_FLOWS = ROOT / "tests" / "flows"
pytestmark = pytest.mark.slow


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as inst:
        yield inst


def execute(
    flow: Path,
    instance: dg.DagsterInstance,
    storage: Path,
    config: dict[str, Any] | None = None,
    executor: str = "in_process",
    **kwargs: Any,
) -> dg.ExecuteJobResult:
    return dg.execute_job(
        reconstructable_job(str(flow), executor, str(storage)),
        instance=instance,
        run_config={"resources": {"langflow": {"config": config or {}}}},
        raise_on_error=False,
        **kwargs,
    )


def output_text(instance: dg.DagsterInstance, storage: Path, run_id: str, step: str, output: str) -> str:
    """A flow output as the user sees it: the text of the stored Message."""
    stored = json.loads((storage / run_id / step / f"{output}.json").read_text())
    from stepflow_dagster.defs.ops import preview
    from stepflow_dagster.runtime import decode

    return preview(decode(stored), limit=10**9)


def lfx_run(
    flow: Path,
    input_value: str | None = None,
    tweaks: dict[str, dict[str, Any]] | None = None,
    ok: bool = True,
) -> str:
    """`lfx run` on the same flow, tweaks applied to a copy by lfx's `process_tweaks` (lfx run takes none)."""
    from lfx.processing.process import process_tweaks

    doc = json.loads(flow.read_text())
    process_tweaks(doc["data"], tweaks or {})
    args = [sys.executable, "-m", "lfx", "run", "--flow-json", json.dumps(doc), "--format", "text"]
    if input_value is not None:
        args += ["--input-value", input_value]
    env = {**os.environ, "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false"}
    res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if ok:
        assert res.returncode == 0 and '"success": false' not in res.stdout, res.stdout + res.stderr
    return res.stdout.strip()


def flow_output(flow: Path) -> tuple[str, str]:
    end = plan_flow(load_flow(flow)).outputs[0]
    return end.step, end.field


def test_hello_world_equals_lfx_run(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    flow = shared_flow("lfx_template__hello-world.json")
    result = execute(flow, instance, tmp_path, {"input_value": "Parity, please"})
    assert result.success
    ours = output_text(instance, tmp_path, result.run_id, *flow_output(flow))
    # `lfx run --input-value` only reaches a Chat Input: give lfx the same text as a tweak of the Text Input.
    assert (
        ours
        == "Parity, please"
        == lfx_run(flow, tweaks={"TextInput-J1CQK": {"input_value": "Parity, please"}})
    )


def test_the_default_executor_runs_each_step_in_its_own_process(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Steps fork from a warm server (it built the run's components once), but each is its own process."""
    from stepflow_dagster.defs import StepflowSettings

    flow = ROOT / "tests" / "flows" / "router.json"
    result = execute(flow, instance, tmp_path, {"input_value": "urgent: reply"}, StepflowSettings.executor)
    assert result.success
    pids = [e.pid for e in result.all_events if e.event_type_value == "STEP_START"]
    assert len(pids) == len(set(pids)) == 3 and os.getpid() not in pids
    assert output_text(instance, tmp_path, result.run_id, "ChatOutput_urgnt", "message") == "urgent: reply"


def test_document_chunks_equals_lfx_run(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    flow = ROOT / "flows" / "document_chunks.json"
    docs = str(ROOT / "flows" / "samples" / "docs")
    tweaks = {"Directory-docs1": {"path": docs}}
    result = execute(flow, instance, tmp_path, {"tweaks": tweaks})
    assert result.success
    ours = output_text(instance, tmp_path, result.run_id, *flow_output(flow))
    assert ours == lfx_run(flow, tweaks=tweaks)
    # Every sample document contributes chunks, each prefixed by its file path.
    for name in ("orchestration.md", "langflow.txt", "retrieval.html"):
        assert f"{docs}/{name}]" in ours
    assert ours.count("\n---\n") >= 4


def test_dataframe_image_flow_fails_like_lfx_run(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    """The published export's edited DataFrame Operations code uses `pd` without importing it."""
    export = shared_flow("langflow_factory__others__dataframe_image.json")
    csv = ROOT / "tests" / "fixtures" / "runtime" / "fruits.csv"
    # Its edited node is not stock code: it runs where the deployment file trusts it.
    flow = tmp_path / export.name
    flow.write_bytes(export.read_bytes())
    flow.with_suffix(".yaml").write_text("run: {trust: {nodes: [DataFrameOperationsComponent-wfbGg]}}\n")
    # Fresh step processes: lfx execs component code in shared namespaces, so a repaired copy of this
    # flow run earlier in the same process (tests/runtime) would lend it its `pd`.
    result = execute(flow, instance, tmp_path / "io", {"files": [str(csv)]}, executor="multiprocess")
    assert not result.success
    failed = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failed] == ["DataFrameOperationsComponent_wfbGg"]
    message = failed[0].event_specific_data.error.to_string()
    assert "DataFrameOperationsComponent-wfbGg" in message and "name 'pd' is not defined" in message
    # The File step before it succeeded and stored the table read from the CSV.
    stored = (tmp_path / "io" / result.run_id / "File_g3C6N" / "dataframe.json").read_text()
    assert "pear" in stored
    out = lfx_run(flow, tweaks={"File-g3C6N": {"path": [str(csv)]}}, ok=False)
    assert "name 'pd' is not defined" in out


@pytest.mark.parametrize(
    ("text", "taken", "skipped"), [("this is urgent", "urgnt", "norml"), ("all calm", "norml", "urgnt")]
)
def test_router_skips_the_branch_not_taken(
    instance: dg.DagsterInstance, tmp_path: Path, text: str, taken: str, skipped: str
) -> None:
    flow = TEST_FLOWS / "router.json"
    result = execute(flow, instance, tmp_path, {"input_value": text})
    assert result.success
    events = {
        e.step_key: e.event_type_value
        for e in result.all_events
        if e.step_key and (e.is_step_success or e.is_step_skipped or e.is_step_failure)
    }
    assert events[f"ChatOutput_{taken}"] == "STEP_SUCCESS"
    assert events[f"ChatOutput_{skipped}"] == "STEP_SKIPPED"
    assert output_text(instance, tmp_path, result.run_id, f"ChatOutput_{taken}", "message") == text
    assert not (tmp_path / result.run_id / f"ChatOutput_{skipped}").exists()


def test_a_failing_component_names_its_node_and_reexecutes_from_failure(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = TEST_FLOWS / "flaky.json"
    marker = tmp_path / "service-up"
    monkeypatch.setenv("STEPFLOW_TEST_MARKER", str(marker))
    first = execute(flow, instance, tmp_path / "io", {"input_value": "doc-1"})
    assert not first.success
    failures = [e for e in first.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["Flaky_fl001"]
    message = str(failures[0].event_specific_data.error.to_string())
    assert "Flaky-fl001" in message and "the service is down (no service-up)" in message

    marker.write_text("up")
    again = execute(
        flow,
        instance,
        tmp_path / "io",
        {"input_value": "doc-1"},
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
    )
    assert again.success
    started = {e.step_key for e in again.all_events if e.event_type_value == "STEP_START"}
    assert started == {"Flaky_fl001", "ChatOutput_out01"}  # the text input is not run again
    assert (
        output_text(instance, tmp_path / "io", again.run_id, "ChatOutput_out01", "message")
        == "processed: doc-1"
    )


def test_a_secret_reaches_the_component_and_is_stored_nowhere(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-7c0ffee-DO-NOT-LEAK-91"
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", secret)
    storage = tmp_path / "io"
    result = execute(TEST_FLOWS / "secret_probe.json", instance, storage, {})
    assert result.success
    import hashlib

    expected = f"len={len(secret)} sha={hashlib.sha256(secret.encode()).hexdigest()[:12]}"
    assert output_text(instance, storage, result.run_id, "ChatOutput_out01", "message") == expected
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and secret not in json.dumps(run.run_config)
    for record in instance.all_logs(result.run_id):
        assert secret not in str(record.dagster_event) and secret not in (record.user_message or "")
    for path in storage.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    home = Path(instance.root_directory)
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path

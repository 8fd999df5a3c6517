"""Untrusted exports: code that is not stock runs only where the deployment file trusts it, and stock
components reach local files only inside the run's own files, the drop location and the storage folders.

The snooping export is hello_world.json with its Text Input edited in Langflow (``edited: true``): the
new code reads another flow's secret from the environment and a file outside every allowed folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from stepflow_dagster.cli import main
from stepflow_dagster.defs.single import job_for_flow
from stepflow_dagster.flow import load_flow
from stepflow_dagster.runtime.trust import classify, code_sha256
from tests.conftest import ROOT, SHARED_FLOWS

OTHER_SECRET = "sk-another-flows-key-Zq81"
OUTSIDE = "contents of a file outside the allowed folders"

SNOOP = """import os
from pathlib import Path

from lfx.base.io.text import TextComponent
from lfx.io import MultilineInput, Output
from lfx.schema.message import Message


class TextInputComponent(TextComponent):
    display_name = "Text Input"
    name = "TextInput"
    inputs = [MultilineInput(name="input_value", display_name="Text")]
    outputs = [Output(display_name="Output Text", name="text", method="text_response")]

    def text_response(self) -> Message:
        stolen = os.environ.get("STEPFLOW_OTHER_SECRET", "")
        outside = Path(os.environ["STEPFLOW_OUTSIDE_FILE"]).read_text()
        return Message(text=f"{self.input_value} | {stolen} | {outside}")
"""


def snooping_export(folder: Path) -> Path:
    doc = json.loads((ROOT / "flows" / "hello_world.json").read_text())
    node = next(n for n in doc["data"]["nodes"] if n["id"] == "TextInput-J1CQK")
    node["data"]["node"]["template"]["code"]["value"] = SNOOP
    node["data"]["node"]["edited"] = True
    path = folder / "snoop.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    secret_file = tmp_path / "elsewhere" / "notes.txt"
    secret_file.parent.mkdir()
    secret_file.write_text(OUTSIDE)
    monkeypatch.setenv("STEPFLOW_OTHER_SECRET", OTHER_SECRET)
    monkeypatch.setenv("STEPFLOW_OUTSIDE_FILE", str(secret_file))
    return secret_file


def run(flow: Path, tmp_path: Path, config: dict[str, Any]) -> tuple[dg.ExecuteInProcessResult, Path]:
    storage = tmp_path / "io"
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    job = job_for_flow(str(flow), "in_process", str(storage))
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        result = job.execute_in_process(
            run_config={"resources": {"langflow": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )
    return result, storage


def texts(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_the_shared_exports_and_the_projects_flows_need_no_trust_beyond_their_deployment_files() -> None:
    """Stock nodes of every release (hashes known to lfx, or unedited nodes of Langflow's own types) run by
    default; what is left is edited or custom code, which each project flow's deployment file trusts."""
    needing = {}
    for path in [*sorted(SHARED_FLOWS.glob("*.json")), *sorted((ROOT / "flows").glob("*.json"))]:
        flow = load_flow(path)
        needing[path.name] = sorted(n.id for n in flow.nodes.values() if not classify(n.id, n.data).stock)
    openrag = sorted(
        ["SplitText-QIKhg", "OpenSearchHybrid-Ve6bS", "AdvancedDynamicFormBuilder-81Exw"]
        + ["SecretInput-F34VJ", "SecretInput-b2cab", "SecretInput-ZVfuS", "SecretInput-Iqtxd"]
    )
    assert needing["openrag_ingestion.json"] == openrag
    assert needing["langflow_factory__others__dataframe_image.json"] == ["DataFrameOperationsComponent-wfbGg"]
    for name in ("hello_world.json", "document_chunks.json", "lfx_template__hello-world.json"):
        assert needing[name] == []
    for name in [n for n in needing if n.startswith("langflow_starter")]:
        assert needing[name] == [], name  # Langflow 1.1-1.13 starters: all stock
    from stepflow_dagster.defs.deployment import load_deployment

    trust = load_deployment(ROOT / "flows" / "openrag_ingestion.json", "openrag").run.trust.policy()
    flow = load_flow(ROOT / "flows" / "openrag_ingestion.json")
    assert all(trust.trusts(n, code_sha256(flow.nodes[n].code or "")) for n in openrag)


def test_analyze_lists_the_nodes_that_need_trust(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = snooping_export(tmp_path)
    assert main(["analyze", str(flow), "--json"]) == 0
    needed = json.loads(capsys.readouterr().out)["code_trust"]
    assert needed == [
        {
            "node": "TextInput-J1CQK",
            "display_name": "Text Input",
            "reason": "edited in Langflow",
            "sha256": code_sha256(SNOOP),
            "trusted": False,
        }
    ]
    assert main(["analyze", str(ROOT / "flows" / "openrag_ingestion.json")]) == 0
    text = capsys.readouterr().out
    assert "SplitText-QIKhg (Split Text): edited in Langflow; sha256 f2867efd" in text
    assert "[NOT TRUSTED" not in text and text.count("[trusted]") == 7
    assert main(["analyze", str(ROOT / "flows" / "hello_world.json")]) == 0
    assert "code: stock components only (no trust needed)" in capsys.readouterr().out


def test_code_executing_stock_components_need_trust() -> None:
    node = {"type": "PythonREPLComponent", "node": {"display_name": "Python Interpreter", "template": {}}}
    node["node"]["template"]["code"] = {"value": "class X: ...", "type": "code"}
    status = classify("PythonREPLComponent-1", node)
    assert not status.stock and "Python code its fields hold" in status.reason


@pytest.mark.slow
def test_an_untrusted_export_that_snoops_is_refused_before_it_runs(
    tmp_path: Path, outside: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    flow = snooping_export(tmp_path)
    result, storage = run(flow, tmp_path, {"input_value": "hi"})
    assert not result.success
    assert not [e for e in result.all_events if e.is_step_success]  # not even the stock Chat Output
    failed = [e for e in result.all_events if e.is_step_failure]
    message = failed[0].event_specific_data.error.to_string()
    assert "node 'TextInput-J1CQK' (Text Input) runs code that is not stock: edited in Langflow" in message
    assert "trust it in snoop.yaml: `run: {trust: {nodes: [TextInput-J1CQK]}}`" in message
    assert code_sha256(SNOOP) in message
    out, err = capfd.readouterr()
    assert OTHER_SECRET not in out + err + texts(tmp_path / "home") and OUTSIDE not in out + err
    assert not storage.exists() or not any(storage.rglob("*.json"))
    # `stepflow-dagster run` refuses before launching: exit 2, no run created.
    assert main(["run", str(flow), "--in-process", "--input", "hi"]) == 2
    assert "runs code that is not stock: edited in Langflow" in capfd.readouterr().err


@pytest.mark.slow
def test_a_trusted_export_runs_its_own_code(tmp_path: Path, outside: Path) -> None:
    """Trusted by its code's sha256: the edited code runs as written (and reads what it reads: trust is
    the gate, the process is no sandbox)."""
    flow = snooping_export(tmp_path)
    flow.with_suffix(".yaml").write_text(f"run: {{trust: {{code_sha256: [{code_sha256(SNOOP)}]}}}}\n")
    result, storage = run(flow, tmp_path, {"input_value": "hi"})
    assert result.success
    stored = (storage / result.run_id / "ChatOutput_boh63" / "message.json").read_text()
    assert f"hi | {OTHER_SECRET} | {OUTSIDE}" in stored


def chunks_export(folder: Path, path: str) -> Path:
    """flows/document_chunks.json (Directory, stock) with the export's own folder set to ``path``."""
    doc = json.loads((ROOT / "flows" / "document_chunks.json").read_text())
    node = next(n for n in doc["data"]["nodes"] if n["id"] == "Directory-docs1")
    node["data"]["node"]["template"]["path"]["value"] = path
    node["data"]["node"]["template"]["types"]["value"] = ["txt", "md"]
    folder.mkdir(parents=True, exist_ok=True)
    flow = folder / "chunks.json"  # no deployment file beside it
    flow.write_text(json.dumps(doc))
    return flow


def refusal(result: dg.ExecuteInProcessResult) -> str:
    failed = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failed] == ["Directory_docs1"]
    message = failed[0].event_specific_data.error.to_string()
    assert "flow 'Document Chunks', node 'Directory-docs1' (Directory)" in message
    return message


@pytest.mark.slow
def test_a_stock_component_reads_no_folder_outside_the_allowed_ones(tmp_path: Path, outside: Path) -> None:
    """Directory (stock) reading a folder the export names: refused, inside the project (lfx's restriction
    with our roots) and outside it (lfx's Directory check too); the same folder given by the run (a tweak:
    the run's own files) is read."""
    inside = run(chunks_export(tmp_path / "a", "flows/samples/docs"), tmp_path / "a", {})[0]
    assert "Access to local file paths outside" in refusal(inside)
    elsewhere = chunks_export(tmp_path / "b", str(outside.parent))
    message = refusal(run(elsewhere, tmp_path / "b", {})[0])
    assert "Directory path escapes the allowed root" in message or "Access to local file paths" in message
    assert OUTSIDE not in texts(tmp_path / "a") + texts(tmp_path / "b")

    tweaks = {"Directory-docs1": {"path": str(outside.parent)}}
    given, storage = run(elsewhere, tmp_path / "c", {"tweaks": tweaks})
    assert given.success
    assert OUTSIDE in (storage / given.run_id / "ChatOutput_out01" / "message.json").read_text()


@pytest.mark.slow
def test_the_default_executor_builds_no_untrusted_code_ahead_of_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default executor's forkserver builds a run's components before the steps start (so they fork
    warm): it must skip code the steps would refuse. Here the edited code leaves a mark when it runs."""
    from stepflow_dagster.defs import StepflowSettings
    from stepflow_dagster.defs.single import reconstructable_job

    mark = tmp_path / "code-ran"
    monkeypatch.setenv("STEPFLOW_MARK", str(mark))
    flow = snooping_export(tmp_path)
    doc = json.loads(flow.read_text())
    node = next(n for n in doc["data"]["nodes"] if n["id"] == "TextInput-J1CQK")
    # lfx runs a component's imports and class statement: the mark is made as the class is created.
    node["data"]["node"]["template"]["code"]["value"] = SNOOP.replace(
        'Path(os.environ["STEPFLOW_OUTSIDE_FILE"]).read_text()', '"-"'
    ).replace(
        '    name = "TextInput"\n',
        '    name = "TextInput"\n    _ = Path(os.environ["STEPFLOW_MARK"]).write_text("ran")\n',
    )
    flow.write_text(json.dumps(doc))

    def launch() -> dg.ExecuteJobResult:
        home = tmp_path / f"home-{len(list(tmp_path.glob('home-*')))}"
        home.mkdir()
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            return dg.execute_job(
                reconstructable_job(str(flow), StepflowSettings.executor, str(tmp_path / "io")),
                instance=instance,
                run_config={"resources": {"langflow": {"config": {"input_value": "hi"}}}},
                raise_on_error=False,
            )

    refused = launch()
    assert not refused.success and not [e for e in refused.all_events if e.is_step_success]
    assert not mark.exists()  # neither the forkserver nor a step ran the edited code
    sha = code_sha256(node["data"]["node"]["template"]["code"]["value"])
    flow.with_suffix(".yaml").write_text(f"run: {{trust: {{code_sha256: [{sha}]}}}}\n")
    assert launch().success and mark.read_text() == "ran"  # trusted: the same code runs

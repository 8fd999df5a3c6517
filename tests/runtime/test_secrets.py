"""Secrets a component resolves leave the runtime masked: errors (and their chain), logs, prints, outputs.

In this process, without Dagster; tests/security/test_leaks.py runs the same components through Dagster.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from dagster._utils.error import serializable_error_info_from_exc_info

from stepflow_dagster.runtime import ComponentCall, ComponentError, Redacted, run_component, run_subgraph
from stepflow_dagster.runtime import secrets as registry
from stepflow_dagster.runtime.masking import MaskedStream
from tests.runtime.conftest import FIXTURES, fixture_node, hop, node_from_code

pytestmark = pytest.mark.slow

SECRET = 'sk-unit-"quoted"-7f3a9c'  # a quote: its JSON and repr spellings differ from the raw value


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    registry.forget()
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", SECRET)
    yield SECRET
    registry.forget()


def leaky(mode: str) -> dict[str, Any]:
    node = fixture_node("leaky.py", "Leaky")
    node["node"]["template"]["mode"]["value"] = mode
    return node


def spellings(text: str) -> int:
    return sum(text.count(form) for form in registry.spellings(SECRET))


def test_an_error_with_the_key_is_masked_and_has_no_chain(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ComponentError) as info:
        run_component(ComponentCall("Leaky-bad01", leaky("raise"), {}, ["out"]), flow_name="leaky")
    err = info.value
    assert err.__cause__ is None and err.__context__ is None
    assert err.message == "Incorrect API key provided: **********"
    # What Dagster stores of it: message (notes included), stack, cause, context.
    stored = serializable_error_info_from_exc_info((type(err), err, err.__traceback__))
    assert stored.cause is None and stored.context is None
    text = stored.to_string()
    assert spellings(text) == 0
    # The original traceback is kept, masked: the cause and the line that raised.
    assert "ConnectionError: HTTP 401 for key=**********" in text and "in leak" in text
    out, errs = capsys.readouterr()
    assert "stdout: key **********" in out and "stderr: key **********" in errs
    assert spellings(out + errs) == 0
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    assert "calling the service with key **********" in logged and spellings(logged) == 0


def test_an_output_with_the_key_is_redacted_and_the_registry_holds_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_component(ComponentCall("Leaky-ok001", leaky("return"), {}, ["out"]))
    assert out["out"] == Redacted(node_id="Leaky-ok001", output="out")
    assert registry.resolved() == {SECRET}
    assert spellings(capsys.readouterr().out) == 0
    # Every stream is given back once the component has run.
    assert not isinstance(sys.stdout, MaskedStream)


def test_mask_covers_json_and_repr_spellings() -> None:
    registry.remember(SECRET)
    text = f"{SECRET} {json.dumps({'k': SECRET})} {[SECRET]!r}"
    assert registry.mask(text).count(registry.MASK) == 3 and spellings(registry.mask(text)) == 0
    registry.remember("abc")  # too short to mask ordinary text by: remembered, not masked
    assert registry.mask("abcdef") == "abcdef"


def test_a_deny_listed_variable_is_refused_naming_flow_node_field_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGFLOW_SECRET_KEY", "server-master-key-123")
    node = fixture_node("secret_probe.py", "SecretProbe")
    node["node"]["template"]["api_key"]["value"] = "LANGFLOW_SECRET_KEY"
    with pytest.raises(ComponentError) as info:
        run_component(ComponentCall("SecretProbe-x1", node, {}, ["probe"]), flow_name="f")
    text = str(info.value)
    assert "flow 'f', node 'SecretProbe-x1'" in text
    assert "field 'api_key' names variable 'LANGFLOW_SECRET_KEY'" in text and "deny-list" in text
    assert "server-master-key-123" not in text


def _loop_with_leaky_body() -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], str]:
    flow = json.loads((FIXTURES / "loop_flow.json").read_text())["data"]
    nodes = {n["id"]: n["data"] for n in flow["nodes"] if n["data"]["type"] != "ChatOutput"}
    code = (FIXTURES / "shout.py").read_text()
    code = code.replace("MessageTextInput, Output", "MessageTextInput, Output, SecretStrInput")
    code = code.replace(
        'inputs = [MessageTextInput(name="input_value", display_name="Text")]',
        'inputs = [MessageTextInput(name="input_value", display_name="Text"), SecretStrInput('
        'name="api_key", display_name="API Key", load_from_db=True, value="STEPFLOW_TEST_SECRET")]',
    )
    code = code.replace(
        '        return Message(text=str(self.input_value).upper() + "!")',
        "        import logging\n"
        '        print(f"body uses {self.api_key}")\n'
        '        logging.getLogger("body").warning("body key %s", self.api_key)\n'
        '        if "BETA" in str(self.input_value).upper():\n'
        '            raise ValueError(f"Incorrect API key provided: {self.api_key}")\n'
        '        return Message(text=str(self.input_value).upper() + "!")',
    )
    nodes["Shout-loop1"] = node_from_code(code, "Shout")
    loop_id = next(i for i, d in nodes.items() if d["type"] == "LoopComponent")
    return nodes, flow["edges"], loop_id


def test_a_loop_body_resolves_its_key_and_masks_it(capsys: pytest.CaptureFixture[str]) -> None:
    from lfx.schema.dataframe import DataFrame

    nodes, edges, loop_id = _loop_with_leaky_body()
    rows = hop(DataFrame([{"title": "alpha"}, {"title": "beta"}]))
    with pytest.raises(ComponentError) as info:
        run_subgraph(nodes, edges, {loop_id: {"data": rows}}, {loop_id: ["done"]}, flow_name="loop")
    err = info.value
    assert err.__cause__ is None and err.__context__ is None and err.node_id == loop_id
    stored = serializable_error_info_from_exc_info((type(err), err, err.__traceback__)).to_string()
    assert "Incorrect API key provided: **********" in stored and spellings(stored) == 0
    out, errs = capsys.readouterr()
    assert "body uses **********" in out and spellings(out + errs) == 0


def test_a_literal_value_of_a_secret_field_is_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment tweak "${NAME}" expanded from the environment reaches the field as a literal."""
    node = leaky("return")
    node["node"]["template"]["api_key"].update(load_from_db=False, value="STEPFLOW_TEST_SECRET")
    out = run_component(
        ComponentCall("Leaky-lit01", node, {}, ["out"]), tweaks={"Leaky-lit01": {"api_key": SECRET}}
    )
    assert out["out"] == Redacted(node_id="Leaky-lit01", output="out")
    printed = capsys.readouterr().out
    assert "stdout: key **********" in printed and spellings(printed) == 0


LFX_LOGGER_SCRIPT = """
import sys
from lfx.log.logger import configure, logger
configure(log_level="WARNING")  # lfx's own logger is silent unless configured, as by `lfx run`
from stepflow_dagster.runtime import ComponentCall, run_component
from tests.runtime.conftest import fixture_node
node = fixture_node("leaky.py", "Leaky")
run_component(ComponentCall("Leaky-ok001", node, {}, ["out"]))
try:
    raise ValueError("late error with " + sys.argv[1])
except ValueError:
    logger.exception("after the build: " + sys.argv[1])
"""


def test_lfx_own_logger_is_masked_during_and_after_the_build() -> None:
    import os
    import subprocess

    from tests.conftest import ROOT

    env = {**os.environ, "STEPFLOW_TEST_SECRET": SECRET}
    res = subprocess.run(
        [sys.executable, "-c", LFX_LOGGER_SCRIPT, SECRET],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert "lfx logger: calling the service with key **********" in out
    assert "after the build: **********" in out and "ValueError: late error with **********" in out
    assert spellings(out) == 0

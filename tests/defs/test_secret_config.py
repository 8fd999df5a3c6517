"""Which run configs are refused for carrying a secret (no Dagster run: the check alone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepflow_dagster.defs.deployment import FlowDeployment, RunDefaults
from stepflow_dagster.defs.secret_config import SecretInRunConfig, refuse_secrets
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import FlowPlan, plan_flow
from tests.conftest import ROOT

FLOW = ROOT / "tests" / "flows" / "leaky.json"


@pytest.fixture(scope="module")
def plan() -> FlowPlan:
    return plan_flow(load_flow(FLOW))


def test_plain_variables_and_tweaks_pass(plan: FlowPlan) -> None:
    refuse_secrets(plan, FlowDeployment(), {"OWNER": "alice"}, {"Leaky-ok001": {"mode": "raise"}})


def test_a_secret_variable_is_refused_with_where_to_put_it(plan: FlowPlan) -> None:
    with pytest.raises(SecretInRunConfig) as info:
        refuse_secrets(plan, FlowDeployment(), {"STEPFLOW_TEST_SECRET": "sk-x"}, {})
    text = str(info.value)
    assert "variable 'STEPFLOW_TEST_SECRET' is a secret (secret field Leaky-" in text
    assert "set the environment variable STEPFLOW_TEST_SECRET of the step processes" in text
    assert "sk-x" not in text


@pytest.mark.parametrize("key", ["Leaky-ok001", "Leaky"])  # by node id and by display name
def test_a_tweak_of_a_secret_field_is_refused(plan: FlowPlan, key: str) -> None:
    with pytest.raises(SecretInRunConfig) as info:
        refuse_secrets(plan, FlowDeployment(), {}, {key: {"api_key": "sk-x"}})
    text = str(info.value)
    assert "field 'api_key'" in text and "set the environment variable STEPFLOW_TEST_SECRET" in text
    assert "sk-x" not in text


def test_variables_the_deployment_marks_secret_are_refused(plan: FlowPlan) -> None:
    deployment = FlowDeployment(run=RunDefaults(secrets=["SEARCH_PASSWORD"]))
    refuse_secrets(plan, FlowDeployment(), {"SEARCH_PASSWORD": "pw"}, {})  # not marked: a plain variable
    with pytest.raises(SecretInRunConfig, match="marked secret in the deployment file"):
        refuse_secrets(plan, deployment, {"SEARCH_PASSWORD": "pw"}, {})


def test_a_deny_listed_variable_is_refused_naming_node_and_field(tmp_path: Path) -> None:
    doc = json.loads(FLOW.read_text())
    node = next(n for n in doc["data"]["nodes"] if n["id"] == "Leaky-bad01")
    node["data"]["node"]["template"]["api_key"]["value"] = "DATABASE_URL"
    (tmp_path / "denied.json").write_text(json.dumps(doc))
    denied = plan_flow(load_flow(tmp_path / "denied.json"))
    with pytest.raises(SecretInRunConfig) as info:
        refuse_secrets(denied, FlowDeployment(), {}, {})
    assert str(info.value).startswith("flow 'Leaky', node 'Leaky-bad01', field 'api_key': names variable")
    assert "'DATABASE_URL'" in str(info.value) and "deny-list" in str(info.value)


def test_submit_refuses_a_secret_tweak_before_contacting_the_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stepflow_dagster.cli import main

    tweaks = json.dumps({"Leaky-ok001": {"api_key": "sk-submitted"}})
    # Nothing listens on this address: a refusal that came after the request would fail differently.
    code = main(["submit", str(FLOW), "--tweaks", tweaks, "--url", "http://127.0.0.2:9"])
    err = capsys.readouterr().err
    assert code == 2 and "sets secret field 'api_key'" in err and "sk-submitted" not in err

"""One source of truth for configuration, checked without a cluster: every environment variable that the
code, the flows' deployment files (flows/*.yaml) and the flows' own variables read is set by
helm-values/dagster-values.yaml (its env or its Secret) or has a default that works in a pod; every
variable the values set is read by something.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from stepflow_dagster.defs.deployment import load_deployment
from stepflow_dagster.flow import load_flow
from stepflow_dagster.plan import plan_flow

from .values import (
    ROOT,
    code_reads,
    deployment_env,
    flow_deployment_reads,
    secret_keys,
    user_deployment,
    values,
)

FLOWS = sorted((ROOT / "flows").glob("*.json"))

# Read by the code with a default that works in a pod of the chart (name -> why).
CODE_DEFAULTS = {
    "DAGSTER_HOME": "set by the Dagster chart in every pod (its instance ConfigMap)",
    "STEPFLOW_FLOWS_DIR": "<code location>/flows: the image's /app/flows",
    "STEPFLOW_NODE_POOLS": "the shipped stepflow_dagster/k8s/pools.yaml",
    "STEPFLOW_MAX_CONCURRENT": "unused by the k8s executor (the run queue limits runs)",
    "STEPFLOW_CODE_POLICY": "upgrade-stock",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_RESOURCE_ATTRIBUTES": "none",
    "OTEL_SDK_DISABLED": "telemetry on",
    "OTEL_SERVICE_NAME": "stepflow-dagster",
    "XDG_CACHE_HOME": "~/.cache; the image sets /app/.cache (code policy decisions made at build time)",
}
# Flow variables that the deployment makes unused (name -> (deployment tweak that does it)).
NOT_READ = {
    "OPENSEARCHHYBRID_VE6BS_JWT_TOKEN": ("OpenSearchHybrid-Ve6bS", "auth_mode", "basic"),
}


def set_by_values() -> set[str]:
    return set(deployment_env()) | {k for keys in secret_keys().values() for k in keys}


def works_in_a_pod(default: str) -> bool:
    """A default that means the same in a pod: not a loopback address, not a path relative to the cwd."""
    if "://" in default:
        host = urlparse(default).hostname or ""
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host != "localhost"
    return not (default.startswith(("var/", "./")) or default.endswith("/"))


def plan_reads() -> dict[str, str]:
    """Variables the flows read from the environment (not given by their deployment file) -> flow."""
    reads: dict[str, str] = {}
    for path in FLOWS:
        plan = plan_flow(load_flow(path))
        deployment = load_deployment(path, plan.flow)
        given = set(deployment.run.variables)
        if deployment.documents:
            given |= set(deployment.documents.variables)
        for v in plan.variables:
            if v.name in given:
                continue
            if v.name in NOT_READ:
                node, field, value = NOT_READ[v.name]
                assert deployment.run.tweaks[node][field] == value, f"{v.name} is read again"
                continue
            reads[v.name] = path.name
    return reads


def test_every_variable_the_deployment_reads_is_set_or_defaults() -> None:
    provided = set_by_values()
    missing = []
    for path in sorted((ROOT / "flows").glob("*.yaml")):
        for name, default in flow_deployment_reads(path).items():
            if name not in provided and (default is None or not works_in_a_pod(default)):
                missing.append(f"{path.name}: ${{{name}}} (default {default!r} does not work in a pod)")
    for name, flow in plan_reads().items():
        if name not in provided:
            missing.append(f"{flow}: variable {name} (no value in the values' env or Secret)")
    for name, files in code_reads().items():
        if name not in provided and name not in CODE_DEFAULTS:
            missing.append(f"{', '.join(sorted(files))}: {name} (no value, and no default listed here)")
    assert not missing, "\n".join(missing)


def test_every_value_set_is_read() -> None:
    read = set(code_reads()) | set(plan_reads())
    for path in sorted((ROOT / "flows").glob("*.yaml")):
        read |= set(flow_deployment_reads(path))
    unread = sorted(set_by_values() - read)
    assert not unread, f"set by helm-values but read by nothing: {unread}"


def test_shared_locations_are_on_the_shared_volume() -> None:
    """Op outputs and the drop folder on the PVC every pod mounts (else each pod has its own)."""
    dep, env = user_deployment(), deployment_env()
    claims = {v["name"] for v in dep["volumes"] if "persistentVolumeClaim" in v}
    mounts = [m["mountPath"] for m in dep["volumeMounts"] if m["name"] in claims]
    for name in ("STEPFLOW_STORAGE", "STEPFLOW_DROP_DIR"):
        assert any(Path(env[name]).is_relative_to(m) for m in mounts), f"{name}={env[name]} not on {mounts}"
    assert dep["includeConfigInLaunchedRuns"]["enabled"], "run and step pods need the same env and volumes"
    storage = yaml.safe_load((ROOT / "helm-values/manifests/storage.yaml").read_text())
    assert "ReadWriteMany" in storage["spec"]["accessModes"]


def test_opensearch_settings_agree() -> None:
    """The in-cluster OpenSearch (manifests/opensearch.yaml) has security on: TLS, admin, the Secret's
    password; the deployment file reads all three."""
    env = deployment_env()
    assert urlparse(env["OPENSEARCH_URL"]).scheme == "https"
    assert env["OPENSEARCH_USERNAME"] == "admin"
    assert "OPENSEARCH_PASSWORD" in secret_keys()["stepflow-secrets"]
    manifest = (ROOT / "helm-values/manifests/opensearch.yaml").read_text()
    assert "key: OPENSEARCH_PASSWORD" in manifest
    reads = flow_deployment_reads(ROOT / "flows/openrag_ingestion.yaml")
    for name in ("OPENSEARCH_URL", "OPENSEARCH_USERNAME", "OPENSEARCH_PASSWORD"):
        assert name in reads
    # TLS from the URL's scheme: a tweak's string "false" would turn it on (lfx passes it as is).
    tweaks = load_deployment(ROOT / "flows/openrag_ingestion.json", "openrag").run.tweaks
    assert tweaks["OpenSearchHybrid-Ve6bS"]["use_ssl"] is False


@pytest.mark.parametrize(
    ("default", "works"),
    [("http://127.0.0.2:5001", False), ("var/drop", False), ("https://api.openai.com/v1", True), ("", True)],
)
def test_pod_default_rule(default: str, works: bool) -> None:
    assert works_in_a_pod(default) is works


def test_run_launcher_and_queue_name_our_pieces() -> None:
    doc = values()
    launcher = doc["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["envSecrets"] == user_deployment()["envSecrets"]

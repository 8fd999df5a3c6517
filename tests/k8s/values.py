"""What helm-values/ gives a deployment: the user-code server's environment (which the chart passes on to
run and step pods, `includeConfigInLaunchedRuns`), its Secrets' keys, and the variables it leaves to
defaults. Read by the configuration test (no cluster) and the end-to-end test on the control plane.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "helm-values" / "dagster-values.yaml"
MANIFESTS = ROOT / "helm-values" / "manifests"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def user_deployment(doc: Mapping[str, Any] | None = None) -> dict[str, Any]:
    deployments = (doc or values())["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1, "one code location: stepflow"
    return dict(deployments[0])


def deployment_env(doc: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The `env` of the user-code deployment, name -> value."""
    return {e["name"]: str(e["value"]) for e in user_deployment(doc).get("env") or ()}


def secret_keys(doc: Mapping[str, Any] | None = None) -> dict[str, set[str]]:
    """Secret name -> its keys (from manifests/*.yaml), for every Secret the deployment's envSecrets name."""
    wanted = {s["name"] for s in user_deployment(doc).get("envSecrets") or ()}
    found: dict[str, set[str]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind") == "Secret" and obj["metadata"]["name"] in wanted:
                found[obj["metadata"]["name"]] = set(obj.get("stringData") or {}) | set(obj.get("data") or {})
    assert set(found) == wanted, f"no manifest for Secrets {sorted(wanted - set(found))}"
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def flow_deployment_reads(path: Path) -> dict[str, str | None]:
    """`${NAME}` / `${NAME:-default}` in a flow's deployment file (values only, not comments)."""
    reads: dict[str, str | None] = {}
    for text in _strings(yaml.safe_load(path.read_text()) or {}):
        for m in _ENV_REF.finditer(text):
            reads[m.group(1)] = m.group(2)
    return reads


_READERS = {"os.environ.get", "os.getenv", "_env", "os.environ.setdefault", "os.environ.pop"}


def code_reads(package: Path = ROOT / "stepflow_dagster") -> dict[str, set[str]]:
    """Environment variables the code reads by a literal name -> the files that read it."""
    found: dict[str, set[str]] = {}
    files = [*package.rglob("*.py"), ROOT / "definitions.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in _READERS and node.args:
                arg = node.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else None
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                name = node.slice.value if isinstance(node.slice, ast.Constant) else None
            elif (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and any(ast.unparse(c) == "os.environ" for c in node.comparators)
            ):
                name = node.left.value
            if isinstance(name, str):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found

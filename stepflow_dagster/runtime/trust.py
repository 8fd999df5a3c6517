"""Which component code runs without the deployment's say-so: stock code only.

An export is code: every node carries the Python source of its component, and building the node runs
it with the worker's environment and files. Langflow 1.13 guards its server the same way in restricted
mode (``allow_custom_components=False``): a node runs only if its code hashes to a component the server
ships (``lfx.utils.flow_validation``: 12-hex sha256 prefix against the component index), drifted stock
code is replaced by the server's own, anything else is refused. Ours, per node:

- **stock**, runs by default: no embedded code; code that is the installed component's or a past
  release's (lfx's component index and ``stable_hash_history.json``, an installed extension's source);
  code that the code policy replaces by the installed code (it never runs); or a node of a stock
  component type (installed, or named by lfx's migration table or hash history: moved to a bundle)
  that the export does not mark ``edited`` - the frozen copy of an older release, which lfx's hash
  history does not reach back to (Langflow 1.1-1.7 exports). That last rule believes the
  export's own ``edited: false``: a forged flag on a stock type is caught only where the code policy
  upgrades the node (it does whenever the installed code keeps the node's outputs and inputs).
- **needs trust**: a node marked edited in Langflow, a custom component (type not installed), and the
  stock components that run Python taken from their fields (lfx's ``CODE_EXECUTION_COMPONENT_TYPES``:
  Python Interpreter, Python Function, Smart Transform, ...), whose class code proves nothing.

The deployment file trusts nodes by id, by the sha256 of their code (the export's code, as stored), or
the whole flow (``run.trust``, defs/deployment.py). Checked before any component runs; no lfx import
beyond the index files and one constant module.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..flow import FlowError
from .code_policy import _core_index, _extension_sources, _lfx_dir, decide_code, frozen_code

if TYPE_CHECKING:
    from ..plan import FlowPlan


@dataclass(frozen=True)
class Trust:
    """What a deployment trusts beyond stock code: every node, node ids, sha256 digests of code."""

    all: bool = False
    nodes: frozenset[str] = frozenset()
    code_sha256: frozenset[str] = frozenset()

    def trusts(self, node_id: str, sha256: str) -> bool:
        return self.all or node_id in self.nodes or sha256 in self.code_sha256


STOCK_ONLY = Trust()


@dataclass(frozen=True)
class CodeTrust:
    """One node's code: stock or not, why, and the digest the deployment file may trust it by."""

    node_id: str
    display_name: str
    stock: bool
    reason: str
    sha256: str  # of the export's code as stored ("" without code)


class UntrustedCode(FlowError):
    """Nodes whose code the deployment file does not trust: refused before any component runs."""

    def __init__(self, flow: str, nodes: list[CodeTrust], deployment_file: str) -> None:
        self.nodes = nodes
        self.deployment_file = deployment_file
        lines = [
            f"node {n.node_id!r} ({n.display_name}) runs code that is not stock: {n.reason}; "
            f"code sha256 {n.sha256}"
            for n in nodes
        ]
        ids = ", ".join(n.node_id for n in nodes)
        digests = ", ".join(n.sha256 for n in nodes)
        how = (
            f"review the code, then trust it in {deployment_file}: `run: {{trust: {{nodes: [{ids}]}}}}` "
            f"or by code `run: {{trust: {{code_sha256: [{digests}]}}}}` (lapses when the code changes), "
            "or `run: {trust: {all: true}}` for the whole flow"
        )
        super().__init__(flow, "\n".join([*lines, how]))

    def __reduce__(self) -> tuple[object, ...]:
        return (UntrustedCode, (self.flow, self.nodes, self.deployment_file))


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _hash12(code: str) -> str:
    return code_sha256(code)[:12]  # lfx's code_hash (flow_validation._compute_code_hash)


@functools.cache
def _hash_history() -> dict[str, Any]:
    """lfx's code hashes of stock components by type and release (``stable_hash_history.json``)."""
    lfx_dir = _lfx_dir()
    path = lfx_dir / "_assets" / "stable_hash_history.json" if lfx_dir else None
    return dict(json.loads(path.read_bytes())) if path is not None and path.exists() else {}


@functools.cache
def _stock_hashes() -> frozenset[str]:
    """12-hex code hashes of stock code: the installed index, past releases, installed extensions."""
    found = {_hash12(code) for code, _ in _core_index().values()}
    for entry in _hash_history().values():
        found.update(v for v in (entry.get("versions") or {}).values() if isinstance(v, str))
    for path in set(_extension_sources().values()):
        found.add(_hash12(path.read_text(encoding="utf-8")))
    return frozenset(found)


@functools.cache
def _code_execution_types() -> frozenset[str]:
    try:
        from lfx.utils.flow_validation import CODE_EXECUTION_COMPONENT_TYPES
    except ImportError:  # moved in a later lfx: these are the ones 1.13 lists
        return frozenset({"PythonREPLComponent", "PythonFunction", "PythonCodeStructuredTool"})
    return frozenset(CODE_EXECUTION_COMPONENT_TYPES)


@functools.cache
def _moved_types() -> frozenset[str]:
    """Stock components that later moved out of lfx into extension bundles (lfx's migration table)."""
    lfx_dir = _lfx_dir()
    table = lfx_dir / "extension" / "migration" / "migration_table.json" if lfx_dir else None
    if table is None or not table.exists():
        return frozenset()
    entries = json.loads(table.read_bytes()).get("entries") or []
    names = {e["bare_class_name"] for e in entries if isinstance(e.get("bare_class_name"), str)}
    return frozenset(names | set(_hash_history()))


def _stock_type(node_type: str) -> bool:
    """A component type Langflow ships: installed (lfx core, an extension), or moved to a bundle."""
    sources = _extension_sources()
    return (
        node_type in _core_index()
        or node_type in sources
        or f"{node_type}Component" in sources
        or bool({node_type, f"{node_type}Component"} & _moved_types())
    )


def classify(node_id: str, node_data: Mapping[str, Any], policy: str = "upgrade-stock") -> CodeTrust:
    """Whether ``node_data``'s code is stock under code policy ``policy``, and why."""
    node = node_data.get("node") or {}
    node_type = str(node_data.get("type") or "")
    name = str(node.get("display_name") or node_type)
    code = frozen_code(node_data)
    if code is None:
        return CodeTrust(node_id, name, True, "no embedded code", "")
    digest = code_sha256(code)

    def result(stock: bool, reason: str) -> CodeTrust:
        return CodeTrust(node_id, name, stock, reason, digest)

    if _code_execution_types() & {node_type, name}:
        return result(False, "it runs the Python code its fields hold (lfx lists it as code-executing)")
    if _hash12(code) in _stock_hashes():
        return result(True, "stock code (a known code hash of lfx or an installed extension)")
    edited = bool(node.get("edited"))
    installed = _stock_type(node_type)
    if installed and not edited:
        return result(True, "an older release of a stock component (not edited in Langflow)")
    if policy != "frozen" and installed and decide_code(node_data, policy).upgraded:
        return result(True, "replaced by the installed code (code policy)")
    if installed:
        return result(False, "edited in Langflow")
    return result(False, f"custom component (type {node_type!r} is not a Langflow component)")


def untrusted(
    nodes: Iterable[tuple[str, Mapping[str, Any]]],
    trust: Trust,
    policy_for: Any = None,
) -> list[CodeTrust]:
    """The nodes (id, data) whose code is not stock and not trusted; ``policy_for(node_id, name)`` gives
    each node's code policy (default upgrade-stock)."""
    found = []
    for node_id, data in nodes:
        name = str((data.get("node") or {}).get("display_name") or data.get("type") or "")
        policy = policy_for(node_id, name) if policy_for else "upgrade-stock"
        status = classify(node_id, data, policy)
        if not status.stock and not trust.trusts(node_id, status.sha256):
            found.append(status)
    return found


def refuse_untrusted(plan: FlowPlan, trust: Trust, code_policy: str | Mapping[str, str]) -> None:
    """Raise :class:`UntrustedCode` naming every node of ``plan`` whose code is neither stock nor trusted;
    ``code_policy`` as the runtime takes it (one policy, or per node id / display name with "*")."""
    from .component import policy_for

    nodes = [(c.node_id, c.data) for step in plan.steps for c in step.components]
    found = untrusted(nodes, trust, lambda node_id, name: policy_for(code_policy, node_id, name))
    if found:
        where = Path(plan.source).with_suffix(".yaml").name if plan.source else "its deployment file"
        raise UntrustedCode(plan.flow, found, where)

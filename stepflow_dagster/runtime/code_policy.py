"""Which code a node runs: its frozen copy from the flow, or the installed lfx component's code.

lfx 1.13 swaps outdated stock code only when custom components are disallowed, a mode that
refuses any flow holding a node outside its registry (OpenRAG's Secret Input, Create Data).
Its upgrade checker also calls nodes "breaking" for the DataFrame->Table / Data->JSON type
renames alone. Our policy is narrower and per node:

- ``frozen``: every node keeps the code stored in the flow.
- ``upgrade-stock`` (default): a node that is not marked ``edited``, whose type is an installed
  component (lfx's core index or an installed extension such as lfx-docling / lfx-bundles), and
  whose declared outputs the installed code still provides, and whose installed inputs read every
  field of the node's template as the export meant it (``code_inputs``), runs the installed code.
  Edited and unknown nodes keep their frozen code; so do nodes whose installed code changed its
  inputs or outputs, with a warning (the export's code may not run on this lfx).
- ``upgrade`` (asked for per node): the installed code even for edited nodes, and even where its
  inputs changed (with a warning naming the fields it may misread); not where outputs are missing.

The lookup reads lfx's shipped component index (JSON) and scans extension sources as text: it
never imports lfx's component modules, so ``analyze`` can call it cheaply.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from ..cache import cache_dir, write_whole
from .code_inputs import input_mismatches, inputs_from_source, template_inputs

CodePolicy = Literal["upgrade-stock", "frozen"]
# upgrade-stock: stock components run the installed code unless edited in Langflow; upgrade: even edited
# ones (choose it per node when the frozen code cannot run here); frozen: every node runs its own code.
CODE_POLICIES: tuple[str, ...] = ("upgrade-stock", "upgrade", "frozen")


def default_code_policies(given: Mapping[str, str] | None = None) -> dict[str, str]:
    """A run's code policies by node id or display name, "*" the default: $STEPFLOW_CODE_POLICY, else
    upgrade-stock; ``given`` (the run's own) over them."""
    return {"*": os.environ.get("STEPFLOW_CODE_POLICY", "upgrade-stock"), **(given or {})}


# Entry-point groups through which lfx discovers installed extension bundles.
_EXTENSION_GROUPS = ("langflow.extensions", "lfx.bundles")
_TOOL_OUTPUT_NAME = "component_as_tool"
_CLASS_RE = re.compile(r"^class (\w+)\(", re.MULTILINE)
_NAME_ATTR_RE = re.compile(r"^    name(?:\s*:\s*str)?\s*=\s*[\"'](\w+)[\"']", re.MULTILINE)


@dataclass(frozen=True)
class CodeDecision:
    """The code a node will run and why (``code`` is None when the frozen code is kept)."""

    code: str | None
    description: str
    upgraded: bool
    # Set when the export's (outdated) code is kept because the installed code changed its inputs.
    warning: str | None = None


@dataclass(frozen=True)
class InstalledComponent:
    code: str
    source: str  # "lfx core index" or the extension source file
    # Input name -> field spec (index template keys: _input_type, list, type, options, input_types);
    # None when the inputs cannot be read without importing the component.
    inputs: Mapping[str, Mapping[str, Any]] | None = None


def frozen_code(node_data: Mapping[str, Any]) -> str | None:
    """The code stored in the node (newer exports may store it as a list of lines)."""
    field = (node_data.get("node") or {}).get("template", {}).get("code")
    value = field.get("value") if isinstance(field, Mapping) else None
    if isinstance(value, list):
        return "\n".join(str(line) for line in value)
    return value if isinstance(value, str) and value else None


def _lfx_dir() -> Path | None:
    spec = importlib.util.find_spec("lfx")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _core_index() -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Component type (and lfx's aliases for it) -> installed code and template, from lfx's index."""
    lfx_dir = _lfx_dir()
    if lfx_dir is None:
        return {}
    index_path = lfx_dir / "_assets" / "component_index.json"
    if not index_path.exists():
        return {}
    blob = json.loads(index_path.read_bytes())
    all_types: dict[str, dict[str, Any]] = {}
    for category, components in blob.get("entries", []):
        all_types.setdefault(category, {}).update(components)
    try:
        from lfx.utils.component_aliases import flatten_components_with_aliases

        flat = flatten_components_with_aliases(all_types)
    except ImportError:  # the alias helper moved: fall back to exact type keys
        flat = {k: v for comps in all_types.values() for k, v in comps.items()}
    out: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for key, entry in flat.items():
        template = entry.get("template", {}) if isinstance(entry, Mapping) else {}
        code_field = template.get("code")
        code = code_field.get("value") if isinstance(code_field, Mapping) else None
        if isinstance(code, str) and code:
            out[key] = (code, template)
    return out


@functools.cache
def _extension_sources() -> dict[str, Path]:
    """Class names and ``name = "..."`` attributes of installed extension components -> file."""
    found: dict[str, Path] = {}
    for group in _EXTENSION_GROUPS:
        for ep in metadata.entry_points(group=group):
            top = ep.value.split(":")[0].split(".")[0]
            spec = importlib.util.find_spec(top)
            if spec is None or not spec.submodule_search_locations:
                continue
            for root in spec.submodule_search_locations:
                for path in sorted(Path(root).rglob("*.py")):
                    if path.name == "__init__.py":
                        continue
                    text = path.read_text(encoding="utf-8", errors="replace")
                    for key in (*_CLASS_RE.findall(text), *_NAME_ATTR_RE.findall(text)):
                        found.setdefault(key, path)
    return found


def installed_component(node_data: Mapping[str, Any]) -> InstalledComponent | None:
    """The installed component of this node's type, if lfx or an extension provides one."""
    node_type = str(node_data.get("type") or "")
    if not node_type:
        return None
    core = _core_index()
    if node_type in core:
        code, template = core[node_type]
        return InstalledComponent(code, "lfx core index", template_inputs({"node": {"template": template}}))
    sources = _extension_sources()
    for key in (node_type, f"{node_type}Component"):
        path = sources.get(key)
        if path is not None:
            # Name the file relative to site-packages: "lfx_docling/components/docling/x.py".
            label = "/".join(path.parts[-4:]) if len(path.parts) >= 4 else str(path)
            code = path.read_text(encoding="utf-8")
            return InstalledComponent(code, label, inputs_from_source(code, _class_source))
    return None


def _outputs_and_methods(code: str) -> tuple[dict[str, str | None], set[str]]:
    """Output(name=..., method=...) declarations and the function names defined in ``code``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {}, set()
    outputs: dict[str, str | None] = {}
    methods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            methods.add(node.name)
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name != "Output":
                continue
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            out_name, method = kw.get("name"), kw.get("method")
            if isinstance(out_name, str):
                outputs[out_name] = method if isinstance(method, str) else None
    return outputs, methods


@functools.cache
def _lfx_module_files(module: str) -> list[Path]:
    """Source files of an ``lfx.*`` module (a package's own files too), found without importing."""
    lfx_dir = _lfx_dir()
    if lfx_dir is None or not module.startswith("lfx."):
        return []
    base = lfx_dir.joinpath(*module.split(".")[1:])
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    if base.is_dir():
        return sorted(base.glob("*.py"))
    return []


@functools.lru_cache(maxsize=512)
def _base_class_codes(code: str, depth: int = 3) -> tuple[str, ...]:
    """Sources of the lfx base classes ``code`` imports (outputs are often inherited)."""
    if depth == 0:
        return ()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ()
    found: list[str] = []
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lfx.")):
            continue
        names = {a.name for a in node.names}
        if not any(n.startswith("Base") or n.endswith("Component") for n in names):
            continue
        for path in _lfx_module_files(node.module):
            text = path.read_text(encoding="utf-8", errors="replace")
            if any(re.search(rf"^class {re.escape(n)}\(", text, re.MULTILINE) for n in names):
                found.append(text)
                found.extend(_base_class_codes(text, depth - 1))
    return tuple(found)


def _class_source(code: str, class_name: str) -> str | None:
    """The source of the lfx module that defines ``class_name``, among those ``code`` imports it from."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    modules = [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("lfx.")
        and class_name in {a.asname or a.name for a in node.names}
    ]
    for module in modules:
        found = _defining_source(module, class_name, depth=2)
        if found is not None:
            return found
    return None


def _defining_source(module: str, class_name: str, depth: int) -> str | None:
    """The file of ``module`` that defines ``class_name``, following a package's ``from .x import Name``."""
    for path in _lfx_module_files(module):
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(rf"^class {re.escape(class_name)}\(", text, re.MULTILINE):
            return text
        if depth == 0:
            continue
        try:
            body = ast.parse(text).body
        except SyntaxError:
            continue
        for inner in body:
            if not (isinstance(inner, ast.ImportFrom) and inner.level == 1 and inner.module):
                continue
            if class_name in {a.name for a in inner.names}:
                found = _defining_source(f"{module}.{inner.module}", class_name, depth - 1)
                if found is not None:
                    return found
    return None


def _missing_outputs(node_data: Mapping[str, Any], installed_code: str) -> list[str]:
    """Declared outputs of the node that the installed code no longer provides."""
    outputs, methods = _outputs_and_methods(installed_code)
    for base_code in _base_class_codes(installed_code):
        base_outputs, base_methods = _outputs_and_methods(base_code)
        outputs = {**base_outputs, **outputs}
        methods |= base_methods
    missing = []
    for out in (node_data.get("node") or {}).get("outputs") or []:
        name, method = out.get("name"), out.get("method")
        if name == _TOOL_OUTPUT_NAME:  # synthesized by Component in tool mode
            continue
        if name in outputs and (method is None or outputs[name] in (None, method)):
            continue
        # Components that add outputs dynamically (File) declare them outside ``outputs``;
        # the method still existing is what a build needs.
        if method and method in methods:
            continue
        missing.append(str(name))
    return missing


@dataclass(frozen=True)
class CodePatch:
    """A known fault of code frozen into older exports, fixed the way the installed lfx code fixes it."""

    name: str
    old: str
    new: str


# Applied to frozen code kept under upgrade-stock/upgrade (never under `frozen`), and reported by analyze.
CODE_PATCHES = (
    # OpenRAG's OpenSearch code names the k-NN method disk_ann whatever the engine; only the jvector
    # plugin has it. lfx-bundles 1.2.4 picks "disk_ann if engine == jvector else hnsw": do the same.
    CodePatch(
        "k-NN method by engine",
        '"name": "disk_ann",',
        '"name": "disk_ann" if engine == "jvector" else "hnsw",',
    ),
)


def _patched(code: str) -> tuple[str, list[str]]:
    applied = []
    for patch in CODE_PATCHES:
        if patch.old in code:
            code = code.replace(patch.old, patch.new)
            applied.append(patch.name)
    return code, applied


def decide_code(node_data: Mapping[str, Any], policy: str = "upgrade-stock") -> CodeDecision:
    """Decide which code the node runs under ``policy``; kept frozen code gets the known patches.

    Deciding parses the installed code and its base classes (0.1 to 0.5 s a node, more than most
    components take to run), so decisions are kept on disk, keyed by the node, the policy, the installed
    lfx and extensions, and this module's own code: each process (a step, a pod) pays it once per
    machine or image, not once per start."""
    path = _decision_path(node_data, policy)
    with contextlib.suppress(OSError, ValueError, TypeError):
        return CodeDecision(**json.loads(path.read_text(encoding="utf-8")))
    decision = _decide_patched(node_data, policy)
    with contextlib.suppress(OSError):  # no writable cache: decided again next time
        write_whole(path, json.dumps(dataclasses.asdict(decision)))
    return decision


def _decision_path(node_data: Mapping[str, Any], policy: str) -> Path:
    node = {"type": node_data.get("type"), "node": node_data.get("node"), "policy": policy}
    key = hashlib.sha256(json.dumps([node, _installed_stamp()], sort_keys=True, default=str).encode())
    return cache_dir() / "code-decisions" / f"{key.hexdigest()}.json"


@functools.cache
def _installed_stamp() -> list[str]:
    """What a decision depends on besides the node: lfx, the extensions, and the deciding code."""
    stamp = [f"lfx {metadata.version('lfx')}"]
    for group in _EXTENSION_GROUPS:
        stamp += sorted(
            {f"{ep.dist.name} {ep.dist.version}" for ep in metadata.entry_points(group=group) if ep.dist}
        )
    here = Path(__file__).parent
    for module in ("code_policy.py", "code_inputs.py"):
        stamp.append(hashlib.sha256((here / module).read_bytes()).hexdigest())
    return stamp


def _decide_patched(node_data: Mapping[str, Any], policy: str) -> CodeDecision:
    decision = _decide(node_data, policy)
    frozen = frozen_code(node_data)
    if decision.code is not None or frozen is None or policy == "frozen":
        return decision
    code, applied = _patched(frozen)
    if not applied:
        return decision
    return CodeDecision(
        code, f"{decision.description}; patched: {', '.join(applied)}", False, decision.warning
    )


def _decide(node_data: Mapping[str, Any], policy: str) -> CodeDecision:
    if policy not in CODE_POLICIES:
        msg = f"unknown code policy {policy!r}; expected one of {', '.join(CODE_POLICIES)}"
        raise ValueError(msg)
    frozen = frozen_code(node_data)
    if frozen is None:
        return CodeDecision(None, "no embedded code", False)
    if policy == "frozen":
        return CodeDecision(None, "kept frozen: policy frozen", False)
    if policy == "upgrade-stock" and (node_data.get("node") or {}).get("edited"):
        return CodeDecision(None, "kept frozen: edited", False)
    installed = installed_component(node_data)
    if installed is None:
        return CodeDecision(None, "kept frozen: not in registry", False)
    if installed.code.strip() == frozen.strip():
        return CodeDecision(None, "frozen code is the installed code", False)
    missing = _missing_outputs(node_data, installed.code)
    if missing:
        return _kept(f"installed code lacks output(s) {', '.join(missing)}")
    upgraded = f"upgraded to installed code ({installed.source})"
    if installed.inputs is None:
        problem = "installed inputs cannot be read without importing the component"
    else:
        mismatches = input_mismatches(node_data, installed.inputs)
        problem = f"installed code reads fields differently ({'; '.join(mismatches)})" if mismatches else ""
    if problem and policy == "upgrade":  # asked for by name: run it, and say what it may misread
        return CodeDecision(installed.code, f"{upgraded} as asked; {problem}", True, warning=problem)
    if problem:
        return _kept(problem)
    why = "not edited, " if policy == "upgrade-stock" else ""
    return CodeDecision(installed.code, f"{upgraded}: {why}outputs kept, inputs read alike", True)


def _kept(why: str) -> CodeDecision:
    """The export's code kept although an installed version exists: say so, it may not run here."""
    return CodeDecision(None, f"kept frozen: {why}", False, warning=f"runs the export's own code: {why}")


def describe_code_policy(node_data: Mapping[str, Any], policy: str = "upgrade-stock") -> str:
    """One line for ``analyze``: what the policy does to this node's code."""
    return decide_code(node_data, policy).description


def apply_code_policy(node_data: dict[str, Any], policy: str = "upgrade-stock") -> CodeDecision:
    """Write the decided code into ``node_data`` (a copy the caller owns) and return the decision."""
    decision = decide_code(node_data, policy)
    code_field = node_data.get("node", {}).get("template", {}).get("code")
    if isinstance(code_field, dict):
        if decision.code is not None:
            code_field["value"] = decision.code
        elif isinstance(code_field.get("value"), list):
            code_field["value"] = frozen_code(node_data)
    return decision

"""Would the installed code of a component read an export's fields as the export meant them?

The installed code of a stock component is only a safe replacement when every field the node's template
carries is an input of the installed component with the same meaning. Langflow 1.4-1.6's Language Model
is the case in point: 1.13 keeps the field names ``provider`` and ``model_name`` but makes them free-text
overrides of a new ``model`` selection, so the old dropdown values are read differently and the build fails.

The rule, per template field (the node's code, ``_``-prefixed keys, a Prompt's template variables and the
tool-mode field excluded):

- the installed component declares an input of that name, with the same list-ness;
- its input type is the same, or both are plain text inputs (Str/MessageText/Multiline/Message), or the
  installed one is a handle that accepts every type the export's input accepted (Data/JSON and
  DataFrame/Table are one type each);
- a dropdown stays a dropdown whose options still hold the export's value.

Fields the installed component adds take their defaults, which is how lfx upgrades a node too. Installed
inputs come from lfx's component index (JSON) or, for extensions, from the source (``ast``): no import.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from typing import Any

TEXT_INPUTS = frozenset({"StrInput", "MessageTextInput", "MultilineInput", "MessageInput"})
HANDLE_INPUTS = frozenset({"HandleInput", "DataInput", "DataFrameInput"})
# lfx 1.13 renamed value types; an export's "Data" is the installed "JSON", "DataFrame" is "Table".
_TYPE_RENAMES = {"JSON": "Data", "Table": "DataFrame"}
_TOOL_MODE_FIELD = "tools_metadata"


def template_inputs(node_data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The node's fields that feed component inputs, by name."""
    spec = node_data.get("node") or {}
    dynamic = {
        str(name)
        for names in (spec.get("custom_fields") or {}).values()
        if isinstance(names, list)
        for name in names
    }
    return {
        name: field
        for name, field in (spec.get("template") or {}).items()
        if isinstance(field, Mapping)
        and name != "code"
        and not name.startswith("_")
        and name not in dynamic
        and name != _TOOL_MODE_FIELD
    }


def _types(names: Iterable[Any]) -> set[str]:
    return {_TYPE_RENAMES.get(str(n), str(n)) for n in names}


def _accepted(field: Mapping[str, Any]) -> set[str]:
    """The value types a field takes from an edge."""
    if field.get("_input_type") in TEXT_INPUTS:
        return {"Message"} | _types(field.get("input_types") or ())
    return _types(field.get("input_types") or ())


def field_mismatch(name: str, old: Mapping[str, Any], new: Mapping[str, Any] | None) -> str | None:
    """Why the installed input ``new`` would misread the export's field ``old`` (None: it would not)."""
    if new is None:
        return f"{name}: no longer an input"
    if bool(old.get("list")) != bool(new.get("list")):
        return f"{name}: list-ness changed"
    old_kind, new_kind = old.get("_input_type"), new.get("_input_type")
    if old_kind and new_kind:
        if not _same_meaning(old, new):
            return f"{name}: {old_kind} -> {new_kind}"
    elif new.get("type") is None:  # an old export without `_input_type`, an installed source without `type`
        return f"{name}: cannot compare ({old.get('type')} with {new_kind})"
    elif old.get("type") != new.get("type"):  # an export old enough to lack `_input_type`
        return f"{name}: type {old.get('type')} -> {new.get('type')}"
    if (old_kind == "DropdownInput" or new_kind == "DropdownInput") and not new.get("combobox"):
        value, options = old.get("value"), new.get("options")
        if value not in (None, "") and isinstance(options, list) and value not in options:
            return f"{name}: {value!r} is no longer an option"
    return None


def _same_meaning(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    old_kind, new_kind = old.get("_input_type"), new.get("_input_type")
    if old_kind == new_kind or (old_kind in TEXT_INPUTS and new_kind in TEXT_INPUTS):
        return True
    # a handle that takes every type the export's input took
    return new_kind in HANDLE_INPUTS and _accepted(old) <= _accepted(new)


def input_mismatches(node_data: Mapping[str, Any], installed: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The export's fields that the installed inputs (name -> field spec) would read differently."""
    found = []
    for name, field in template_inputs(node_data).items():
        why = field_mismatch(name, field, installed.get(name))
        if why:
            found.append(why)
    return found


ClassSource = Callable[[str, str], str | None]  # (code that imports it, class name) -> its module's source


def inputs_from_source(
    code: str,
    class_source: ClassSource | None = None,
    class_name: str | None = None,
    attr: str = "inputs",
    depth: int = 3,
) -> dict[str, dict[str, Any]] | None:
    """``inputs = [XInput(name=..., ...), ...]`` of a component's source as field specs (the keys the
    component index uses). Spread base inputs (``*Base.get_base_inputs()``, ``*Base._base_inputs``,
    ``*Base.inputs``) are read from the base class's source through ``class_source``. None when an item
    is neither (computed inputs): the inputs cannot be known without importing the component."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    found: dict[str, dict[str, Any]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        if class_name is not None and cls.name != class_name:
            continue
        for item in _assigned_list(cls, attr):
            if isinstance(item, ast.Starred):
                spread = _spread_base(item.value)
                text = class_source(code, spread[0]) if spread and class_source and depth else None
                inherited = (
                    inputs_from_source(text, class_source, *spread, depth - 1) if text and spread else None
                )
                if inherited is None:
                    return None
                found.update(inherited)
                continue
            spec = _input_call(item)
            if spec is None:
                return None
            found[spec["name"]] = spec
    return found


def _assigned_list(cls: ast.ClassDef, attr: str) -> list[ast.expr]:
    """The items of ``attr = [...]`` in a class body."""
    items: list[ast.expr] = []
    for stmt in cls.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.List)):
            continue
        target = stmt.targets[0]
        if isinstance(target, ast.Name) and target.id == attr:
            items.extend(stmt.value.elts)
    return items


def _spread_base(node: ast.expr) -> tuple[str, str] | None:
    """``Base.get_base_inputs()`` / ``Base._base_inputs`` -> (Base, "_base_inputs"); ``Base.inputs``."""
    if isinstance(node, ast.Call) and not node.args and isinstance(node.func, ast.Attribute):
        if node.func.attr != "get_base_inputs":
            return None
        node = node.func
    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
        return None
    attr = {"get_base_inputs": "_base_inputs", "_base_inputs": "_base_inputs", "inputs": "inputs"}.get(
        node.attr
    )
    return (node.value.id, attr) if attr else None


def _input_call(node: ast.expr) -> dict[str, Any] | None:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name | ast.Attribute):
        return None
    kind = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            kwargs[kw.arg] = None  # computed (options from a constant elsewhere): unknown
    if not isinstance(kwargs.get("name"), str):
        return None
    spec: dict[str, Any] = {
        "name": kwargs["name"],
        "_input_type": kind,
        "list": bool(kwargs.get("is_list")),
        "input_types": kwargs.get("input_types") or [],
        "combobox": bool(kwargs.get("combobox")),
    }
    if isinstance(kwargs.get("options"), list):
        spec["options"] = kwargs["options"]
    return spec

"""The plan as YAML: stable ordering (run order, then the export's own order) so diffs are readable.

A component's Langflow payload is split for reading: its code as a block of Python, each template field
as one line of JSON (JSON is YAML's flow style), and the rest of the node as one line.

Writing uses a small emitter for this tree of dicts, lists and scalars: PyYAML represents every node in
Python (~10 µs a scalar: seconds for a flow of thousands of nodes). Reading uses PyYAML's C loader, and
the tests check that every plan loads back equal.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ..flow.gcpause import gc_paused
from .model import Component, FlowEnd, FlowPlan, InnerEdge, StepInput, StepOutput, Variable

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .,/()+=-]*$")
_NOT_PLAIN = {"true", "false", "yes", "no", "on", "off", "null"}
# YAML text holds printable characters only, and also breaks lines at these.
_NOT_PRINTABLE = re.compile(r"[^\t\n\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029]")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_START = re.compile(r"\n(?=[^\n])")
_IMPLICIT_KEY_MAX = 1000


def _printable(text: str) -> bool:
    if text.isascii():  # the common case, and a much cheaper pattern
        return not _ASCII_CONTROL.search(text)
    return not _NOT_PRINTABLE.search(text)


# One encoder for every line: json.dumps builds a new one per call when given options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


def _json(value: Any) -> str:
    """One line of JSON, which is also YAML (flow style); non-printable characters escaped."""
    text = _ENCODER.encode(value)
    if text.isascii() and "\x7f" not in text:  # JSON already escaped the control characters
        return text
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _plain_ok(text: str) -> bool:
    """Whether YAML reads ``text`` written bare as this very string (not a bool, null, number, ...)."""
    return bool(_PLAIN.fullmatch(text)) and not text.endswith(" ") and text.lower() not in _NOT_PLAIN


@functools.lru_cache(maxsize=4096)  # keys repeat across nodes (field names, record fields)
def _key(key: Any) -> str:
    """A mapping key: bare when YAML reads it back as the same string, else a double-quoted scalar."""
    if not isinstance(key, str):
        return json.dumps(key)
    return key if _plain_ok(key) else _json(key)


def _scalar(value: Any, pad: str) -> str:
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    # A literal block cannot hold only line breaks (it would read back empty): those go as JSON.
    if "\n" in value and value.strip("\n") and _printable(value):
        chomp = "-" if not value.endswith("\n") else ("+" if value.endswith("\n\n") else "")
        body = value[:-1] if value.endswith("\n") else value
        # An explicit indentation indicator lets the text open with spaces or an empty line.
        return f"|2{chomp}" + _LINE_START.sub("\n" + pad + "  ", "\n" + body)
    return value if _plain_ok(value) else _json(value)


def _emit(value: Any, pad: str, out: list[str]) -> None:
    """Append the lines of a mapping or sequence, indented by `pad`."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(value, dict):
            name = _key(key)
            # YAML caps an implicit key at 1024 characters: longer ones take the explicit "? key" form.
            lead = f"{pad}{name}:" if len(name) < _IMPLICIT_KEY_MAX else f"{pad}? {name}\n{pad}:"
        else:
            lead = f"{pad}-"
        if isinstance(item, _Line):
            out.append(f"{lead} {_json(item.value)}")
        elif isinstance(item, dict | list | tuple) and item:
            if not isinstance(value, dict) and isinstance(item, dict):
                # "- first: x" then the other keys under it
                inner: list[str] = []
                _emit(item, pad + "  ", inner)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out.extend(inner[1:])
            else:
                out.append(lead)
                _emit(item, pad + "  ", out)
        elif isinstance(item, dict | list | tuple):
            out.append(f"{lead} {'{}' if isinstance(item, dict) else '[]'}")
        else:
            out.append(f"{lead} {_scalar(item, pad)}")


class _Line:
    """A value written as one line of JSON."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


# Small records read best, and diff best, as one line each.
_ONE_LINE = (StepInput, StepOutput, Variable, InnerEdge, FlowEnd)


def _component_doc(component: Component) -> dict[str, Any]:
    data = component.data
    spec = data.get("node", {})
    template = dict(spec.get("template", {}))
    code = template.get("code")
    text = code.get("value") if isinstance(code, dict) else None
    if isinstance(text, str) and isinstance(code, dict):
        template["code"] = {**code, "value": None}
    else:
        text = None
    head = {**data, "node": {k: v for k, v in spec.items() if k != "template"}}
    return {
        "node_id": component.node_id,
        "type": component.type,
        "display_name": component.display_name,
        "code": text,
        "data": _Line(head),
        "template": {name: _Line(field) for name, field in template.items()},
    }


_SCALARS = (str, int, float, bool, type(None))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(obj: Any) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    return names


def _record(obj: Any) -> Any:
    """A small dataclass as plain data, without dataclasses.asdict's deep copies (10x slower here)."""
    if isinstance(obj, _SCALARS):  # most values: skip the dataclass check
        return obj
    if isinstance(obj, tuple | list):
        return [_record(v) for v in obj]
    if is_dataclass(obj):
        return {name: _record(getattr(obj, name)) for name in _field_names(obj)}
    return obj


def _plain(obj: Any) -> Any:
    """Dataclasses as dicts (component payloads split for reading), tuples as lists; no deep copies."""
    if isinstance(obj, Component):
        return _component_doc(obj)
    if isinstance(obj, _ONE_LINE):
        return _Line(_record(obj))
    if is_dataclass(obj):
        return {name: _plain(getattr(obj, name)) for name in _field_names(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    return obj


@gc_paused
def dump_plan(plan: FlowPlan) -> str:
    out: list[str] = []
    _emit(_plain(plan), "", out)
    return "\n".join(out) + "\n"


def load_plan(text: str | Path) -> FlowPlan:
    if isinstance(text, Path):
        text = text.read_text(encoding="utf-8")
    doc = yaml.load(text, Loader=_Loader)
    for step in doc["steps"]:
        for component in step["components"]:
            data = component["data"]
            template = component.pop("template")
            code = component.pop("code")
            if code is not None:
                template["code"]["value"] = code
            data["node"]["template"] = template
    return FlowPlan.from_dict(doc)

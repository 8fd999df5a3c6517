"""Dagster-safe names for Langflow ids and fields (plan stays free of dagster: the rules are copied here)."""

from __future__ import annotations

import keyword
import re

# dagster._core.definitions.utils.DISALLOWED_NAMES and VALID_NAME_REGEX, as of dagster 1.13.
RESERVED = frozenset(
    {"context", "conf", "config", "meta", "arg_dict", "dict", "input_arg_dict", "output_arg_dict"}
    | {"int", "str", "float", "bool", "input", "output", "type"}
    | set(keyword.kwlist)
)
_INVALID = re.compile(r"[^A-Za-z0-9_]+")


def safe_name(text: str) -> str:
    """`SplitText-QIKhg` -> `SplitText_QIKhg`; reserved words get a trailing underscore."""
    name = _INVALID.sub("_", text).strip("_") or "unnamed"
    if name[0].isdigit():
        name = f"n_{name}"
    return f"{name}_" if name in RESERVED else name


def unique_names(texts: list[str]) -> list[str]:
    """Safe names for `texts`, made unique in order (`a`, `a_2`, ...) so the map stays reversible."""
    taken: set[str] = set()
    names = []
    for text in texts:
        base = name = safe_name(text)
        i = 2
        while name in taken:
            name = f"{base}_{i}"
            i += 1
        taken.add(name)
        names.append(name)
    return names

"""The secret values this process resolved for its run, and the masking of text that holds them.

A registry, not a guess: the runtime records every value it resolves for a secret field (password /
SecretStrInput, and what a component declares secret), and everything that lets text out of the process
(errors, logs, prints, telemetry) masks exactly those values. It lives for the process: a step process
runs one step of one run; an in-process run keeps the values of all its steps (masking more, never less).

No dagster and no lfx here: telemetry reads this module without importing the runtime's heavy parts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

MASK = "**********"
# Shorter values would mask ordinary words everywhere; such a value is remembered but not masked.
MIN_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
_forms: list[str] = []  # every masked spelling, longest first


def spellings(value: str) -> set[str]:
    """The value as it appears in text: as is, escaped in JSON, and inside a repr()."""
    return {value, json.dumps(value)[1:-1], repr(value)[1:-1]}


def remember(value: object) -> None:
    """Record a value resolved for a secret field in this process."""
    if not isinstance(value, str) or not value or value in _values:
        return
    global _forms
    with _lock:
        _values.add(value)
        forms = {f for v in _values if len(v) >= MIN_LENGTH for f in spellings(v)}
        _forms = sorted(forms, key=len, reverse=True)


def resolved() -> frozenset[str]:
    """The secret values resolved in this process so far."""
    return frozenset(_values)


def forget() -> None:
    """Drop every recorded value (tests; a process that starts another run)."""
    global _forms
    with _lock:
        _values.clear()
        _forms = []


def mask(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every resolved secret (and each of ``extra``) replaced by :data:`MASK`."""
    forms = _forms
    more = [f for v in extra if isinstance(v, str) and len(v) >= MIN_LENGTH for f in spellings(v)]
    if more:
        forms = sorted({*forms, *more}, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def contains_secret(text: str) -> bool:
    return any(form in text for form in _forms)

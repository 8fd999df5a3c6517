"""The plan's YAML writer on hostile keys and values: everything loads back as it was written.

Template field names are the keys a flow controls (and the export's own text is its values): YAML reads
an unquoted `on`, `yes`, `null` or `1.0` key as a bool, None or float, and `#`, `: `, a leading `-`, `&`,
`*`, `!`, `?`, `|`, `>`, `%`, `@` or a quote change what the line means.
"""

from __future__ import annotations

import random

import pytest

from stepflow_dagster.plan import dump_plan, load_plan
from stepflow_dagster.plan.model import Component, FlowPlan, Step

HOSTILE = [
    "on",
    "off",
    "yes",
    "no",
    "y",
    "n",
    "true",
    "False",
    "NULL",
    "null",
    "~",
    "",
    " ",
    "  lead",
    "trail ",
    "1.0",
    "1",
    "0x1F",
    "1e3",
    "0o7",
    ".5",
    "-1",
    "+1",
    ".inf",
    ".NaN",
    "1:20",
    "2026-12-01",
    "12:30:00",
    "a: b",
    "a:b",
    "a #b",
    "#x",
    "a#b",
    "- x",
    "-",
    "--",
    "---",
    "...",
    "& anchor",
    "*alias",
    "!tag",
    "!!str",
    "? q",
    "?",
    "| lit",
    "> fold",
    "%YAML",
    "@at",
    "`tick",
    "'single'",
    '"double"',
    "{a: 1}",
    "[1, 2]",
    "a,b",
    "<<",
    "=",
    "key:",
    "é",
    "ключ",
    "键",
    "😀",
    "\u00a0nbsp",
    "\ufeffbom",
    "tab\there",
    "line\nbreak",
    "two\n\nlines",
    "\n",
    "\n\n",
    "ends\n",
    "ends\n\n",
    "cr\rlf",
    "nel\x85",
    "ls\u2028",
    "nul\x00",
    "bell\x07",
    "del\x7f",
    "back\\slash",
    "x" * 1500,
    "  \n  indented\n",
    "a\n   \nb",
    "last line spaces\n   ",
]


def _plan(keys: list[str], values: list[str]) -> FlowPlan:
    template = {key: {"type": "str", "value": values[i % len(values)]} for i, key in enumerate(keys)}
    template["code"] = {"type": "code", "value": "\n".join(values)}
    data = {"type": "T", "node": {"display_name": values[0], "template": template, "outputs": []}}
    component = Component("T-1", "T", values[1], data)
    step = Step("T_1", "T-1", "T", values[2], "general", (component,))
    return FlowPlan(
        flow=values[3],
        name="t",
        source=values[4],
        langflow_version=values[5],
        steps=(step,),
        description=values[6],
    )


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_key_and_value_round_trip(text: str) -> None:
    values = [text] * 7
    plan = _plan([text], values)
    loaded = load_plan(dump_plan(plan))
    assert loaded == plan
    assert list(loaded.steps[0].components[0].data["node"]["template"]) == [text, "code"]
    assert loaded.description == text and loaded.flow == text


def test_all_hostile_keys_together_and_random_text() -> None:
    rng = random.Random(13)
    alphabet = "aZ0 :#-&*!?|>%@'\"{}[],.\t\n\r\\\x00\x7f\x85é😀\u2028\ufeff"
    extra = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12))) for _ in range(300)]
    keys = list(dict.fromkeys(HOSTILE + extra))
    values = list(reversed(keys))
    plan = _plan(keys, values)
    assert load_plan(dump_plan(plan)) == plan

"""The export's Langflow version: compared as versions, not as text ("1.10" is newer than "1.9")."""

from __future__ import annotations

import pytest

from stepflow_dagster.flow import analyze, parse_flow
from stepflow_dagster.flow.versions import newest, version_key
from tests.flow.test_parse import _doc, _node


def _flow_with_node_versions(*versions: str) -> dict:
    nodes = [_node(f"X-{i}") for i in range(len(versions))]
    for node, version in zip(nodes, versions, strict=True):
        node["data"]["node"]["lf_version"] = version
    return _doc(nodes, [])


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (("1.9.0", "1.10.0"), "1.10.0"),
        (("1.10.0", "1.9.0"), "1.10.0"),
        (("1.2.0", "1.10.1", "1.9.9"), "1.10.1"),
        (("1.6.3.dev1", "1.6.3"), "1.6.3"),
        (("1.7.0.dev21", "1.7.0.dev3"), "1.7.0.dev21"),
        (("1.6.3", "1.6.10.dev0"), "1.6.10.dev0"),
    ],
)
def test_export_version_is_the_newest_node_version(versions: tuple[str, ...], expected: str) -> None:
    flow = parse_flow(_flow_with_node_versions(*versions))
    assert flow.langflow_version == expected
    assert analyze(flow).langflow_version == expected


def test_version_order() -> None:
    ordered = [
        "not a version",
        "1.6.0.dev1",
        "1.6.0a1",
        "1.6.0rc2",
        "1.6",
        "1.6.0.post1",
        "1.6.1",
        "1.9.0",
        "1.10.0.dev0",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.6") == version_key("1.6.0")
    assert newest([]) is None

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stepflow_dagster.runtime import decode, encode
from tests.conftest import shared_flow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runtime"


def hop(value: Any) -> Any:
    """What crossing a process does to a value: encode -> JSON text -> decode."""
    return decode(json.loads(json.dumps(encode(value))))


def flow_nodes(name: str) -> dict[str, dict[str, Any]]:
    """Node id -> the node's ``data`` object, for a shared flow."""
    data = json.loads(shared_flow(name).read_text())
    return {n["id"]: n["data"] for n in data["data"]["nodes"] if n.get("type") == "genericNode"}


def node_from_code(code: str, node_type: str) -> dict[str, Any]:
    """A node payload for component source, as Langflow's editor would export it."""
    from lfx.custom.utils import create_component_template

    template, _ = create_component_template({"code": code, "output_types": []})
    return {"type": node_type, "id": f"{node_type}-test1", "node": template}


def fixture_node(file_name: str, node_type: str) -> dict[str, Any]:
    return node_from_code((FIXTURES / file_name).read_text(), node_type)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES

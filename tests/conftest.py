from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FLOWS = Path(os.environ.get("STEPFLOW_SHARED", ROOT.parent / "shared")) / "flows"
PROJECT_FLOWS = ROOT / "flows"


def shared_flow(name: str) -> Path:
    path = SHARED_FLOWS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the shared flows must sit beside the project (../shared/flows)")
    return path


ALL_SHARED = sorted(p.name for p in SHARED_FLOWS.glob("*.json"))

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def stand_in_chat() -> Iterator[str]:
    """The base URL (…/v1) of the project's stand-in chat model: services/embeddings/server.py's
    OpenAI-compatible chat endpoint (no embeddings model loaded), served from a thread on loopback."""
    import importlib.util
    import threading
    import time

    import uvicorn

    spec = importlib.util.spec_from_file_location("stand_in_server", ROOT / "services/embeddings/server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.create_app(None)  # the chat endpoint does not use the embedder
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.2", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.2:{port}/v1"
    server.should_exit = True
    thread.join(10)

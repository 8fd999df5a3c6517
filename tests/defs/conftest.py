from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ROOT


@pytest.fixture
def stand_in_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The project's stand-in LLM (services/embeddings/server.py, chat completions only: no model loaded)
    served from a thread; its base URL reaches the OpenAI client through OPENAI_BASE_URL."""
    import importlib.util
    import threading
    import time

    import uvicorn

    spec = importlib.util.spec_from_file_location("stand_in_server", ROOT / "services/embeddings/server.py")
    assert spec and spec.loader
    server_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server_module)
    app = server_module.create_app(None)  # the chat endpoint does not use the embedder
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.2", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.2:{port}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in-llm-key-not-checked")
    yield url
    server.should_exit = True
    thread.join(10)

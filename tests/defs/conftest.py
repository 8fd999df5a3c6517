from __future__ import annotations

import pytest


@pytest.fixture
def stand_in_llm(stand_in_chat: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The stand-in chat model (tests/conftest.py), reached by the OpenAI client through OPENAI_BASE_URL."""
    monkeypatch.setenv("OPENAI_BASE_URL", stand_in_chat)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in-llm-key-not-checked")
    return stand_in_chat

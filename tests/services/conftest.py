"""Session fixtures that start the real local services (services/stack.py) once per test session.

Each fixture starts its own instance on a free port with its state under pytest's tmp dir, so a
stack started by `python services/stack.py up` keeps running undisturbed. The first run does the
downloads/builds (services/setup.sh, idempotent); set STEPFLOW_SERVICES_SETUP=0 to skip that check.
Set STEPFLOW_SKIP_SERVICE_TESTS=1 to skip these tests altogether.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).parent / "samples"
sys.path.insert(0, str(ROOT / "services"))

import stack  # noqa: E402

if os.environ.get("STEPFLOW_SKIP_SERVICE_TESTS", "").lower() in {"1", "true", "yes"}:
    pytest.skip("STEPFLOW_SKIP_SERVICE_TESTS is set", allow_module_level=True)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, stack.Service]]:
    """All the services (the web stand-in too), in parallel on free ports; stopped at the session end."""
    if os.environ.get("STEPFLOW_SERVICES_SETUP", "1") != "0":
        stack.run_setup("all")
    base = tmp_path_factory.mktemp("services")
    started = stack.start_all(
        stack.NAMES,
        opensearch={"port": 0, "home": base / "opensearch", "log_path": base / "opensearch.log"},
        docling={"port": 0, "workdir": base / "docling", "log_path": base / "docling.log"},
        embeddings={"port": 0, "log_path": base / "embeddings.log"},
        web={"port": 0, "log_path": base / "web.log"},
    )
    try:
        yield started
    finally:
        for svc in started.values():
            svc.stop()


@pytest.fixture(scope="session")
def opensearch_url(services: dict[str, stack.Service]) -> str:
    return services["opensearch"].url


@pytest.fixture(scope="session")
def docling_url(services: dict[str, stack.Service]) -> str:
    return services["docling"].url


@pytest.fixture(scope="session")
def embeddings_base_url(services: dict[str, stack.Service], tmp_path_factory: pytest.TempPathFactory) -> str:
    """OpenAI base URL (…/v1); also points TIKTOKEN_CACHE_DIR at an offline cl100k_base."""
    os.environ["TIKTOKEN_CACHE_DIR"] = str(stack.tiktoken_cache_dir(tmp_path_factory.mktemp("tiktoken")))
    return services["embeddings"].extra["base_url"]

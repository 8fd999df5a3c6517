"""Dagster's schema check on opening an instance, without importing its migration scripts every time.

Each SQL storage of an instance (runs, event log, schedules) compares its database's alembic revision with
the head of Dagster's migration scripts, and alembic finds that head by importing every script (89 files):
0.3-0.4 s of opening a temporary instance, paid by every process that opens one. The scripts are the
installed package's, so their head is kept on disk, keyed by the scripts' folder and the names and sizes
of its files, and the scripts are parsed again only when those change (or for another revision).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from ..cache import cache_dir, write_whole


def install() -> None:
    """Answer Dagster's head-revision lookups from the cache, in this process (and processes it forks)."""
    from alembic.script import ScriptDirectory
    from dagster._core.storage import sql

    if getattr(sql, "ScriptDirectory", None) is not ScriptDirectory:
        return  # installed already, or Dagster no longer checks this way: nothing to do

    class Scripts:
        """What `dagster._core.storage.sql.check_alembic_revision` asks of alembic's ScriptDirectory."""

        def __init__(self, config: Any) -> None:
            self._config = config

        @classmethod
        def from_config(cls, config: Any) -> Scripts:
            return cls(config)

        def as_revision_number(self, revision: str) -> Any:
            location = self._config.get_main_option("script_location") or ""
            if revision == "head":
                return head(location)
            return _parsed(location).as_revision_number(revision)

    sql.ScriptDirectory = Scripts  # type: ignore[assignment,misc]


@functools.cache
def head(location: str) -> Any:
    key = f"{location}:{_fingerprint(location)}"
    path = cache_dir() / "alembic.json"
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached.get(key), str):
            return cached[key]
    found = _parsed(location).as_revision_number("head")
    if isinstance(found, str):
        with contextlib.suppress(OSError):  # no writable cache: parsed again next time
            write_whole(path, json.dumps({key: found}))
    return found


@functools.cache
def _parsed(location: str) -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", location)
    return ScriptDirectory.from_config(config)


def _fingerprint(location: str) -> str:
    folder = Path(location)
    if not folder.is_dir() and ":" in location:  # "package:path", as Dagster names its scripts
        import importlib.util

        package, _, relative = location.partition(":")
        spec = importlib.util.find_spec(package)
        folder = Path(next(iter(spec.submodule_search_locations or [])) if spec else location) / relative
    versions = folder / "versions"
    files = sorted((p.name, p.stat().st_size) for p in versions.iterdir() if p.suffix == ".py")
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]

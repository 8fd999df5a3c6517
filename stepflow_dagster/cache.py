"""The project's cache folder on this machine, and whole-file writes into it (a leaf: no project imports).

Kept there: the empty instance template, code policy decisions, the head of Dagster's migration scripts.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/stepflow-dagster``, else ``~/.cache/stepflow-dagster`` (the image sets its own)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stepflow-dagster"


def write_whole(path: Path, text: str) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, never a part: several processes
    may fill the same cache entry at once. Raises OSError when the cache cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)

"""Imported once by the default executor's forkserver, after Dagster: the run's code location and its
components, loaded and built there once, so that every step process forks with them in memory.

A step's process loads its job through the run's code pointer; for a Python file, Dagster's loader
reuses the module already imported from that very file (``sys.modules``), so the forked step finds the
code location loaded and its repository resolved. The executor names the pointer and the job in
``STEPFLOW_WARM_CODE``. Best effort: a step whose code location fails to load fails in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os

import stepflow_dagster.runtime.preload  # noqa: F401  (lfx, and the run's components built once)
from stepflow_dagster.defs.executor import CODE_ENV


def load_code_location(python_file: str, working_directory: str | None, attribute: str, job: str) -> None:
    import dagster as dg
    from dagster._core.code_pointer import load_python_file

    target = getattr(load_python_file(python_file, working_directory), attribute)
    if isinstance(target, dg.Definitions):
        target.get_repository_def().get_job(job)


if os.environ.get(CODE_ENV):
    with contextlib.suppress(Exception):
        load_code_location(*json.loads(os.environ[CODE_ENV]))

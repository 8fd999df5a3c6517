"""Imported once by the default executor's forkserver, after Dagster: the run's code location and its
components, loaded and built there once, so that every step process forks with them in memory.

A step's process loads its job through the run's code pointer; for a Python file or a module, Dagster's
loader reuses the module already imported (``sys.modules``), so the forked step finds the code location
loaded and its repository resolved. The executor names the pointer and the job in
``STEPFLOW_WARM_CODE``. Best effort: a step whose code location fails to load fails in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os

import stepflow_dagster.runtime.preload  # noqa: F401  (lfx, and the run's components built once)
from stepflow_dagster.defs import migrations
from stepflow_dagster.defs.forkserver import CODE_ENV


def load_code_location(
    kind: str, target: str, working_directory: str | None, attribute: str, job: str
) -> None:
    import dagster as dg
    from dagster._core.code_pointer import load_python_file, load_python_module
    from dagster.components.definitions import LazyDefinitions

    if kind == "file":
        module = load_python_file(target, working_directory)
    else:
        module = load_python_module(target, working_directory)
    definitions = getattr(module, attribute)
    if isinstance(definitions, LazyDefinitions):
        # `@dg.definitions` (a dg project): Dagster calls it again in every process that loads the
        # location, building every component's definitions. Built once here, the forked steps find them.
        definitions = definitions()
        setattr(module, attribute, definitions)
    if isinstance(definitions, dg.Definitions):
        definitions.get_repository_def().get_job(job)


with contextlib.suppress(Exception):
    # Each step opens the run's instance: the head of Dagster's migration scripts is known here once.
    from dagster._core.storage.sql import ALEMBIC_SCRIPTS_LOCATION

    migrations.install()
    migrations.head(ALEMBIC_SCRIPTS_LOCATION)

if os.environ.get(CODE_ENV):
    with contextlib.suppress(Exception):
        load_code_location(*json.loads(os.environ[CODE_ENV]))

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


def cache_migration_scripts() -> None:
    """Each step process opens the run's instance, and each SQLite storage checks its schema against
    Dagster's migration scripts: alembic parses every script file again (0.1-0.2 s a step). The scripts
    are the installed package's and cannot change while the forkserver lives: parse them once here."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from dagster._core.storage import sql
    from dagster._core.storage.runs.sqlite import sqlite_run_storage

    if getattr(sql, "ScriptDirectory", None) is not ScriptDirectory:
        return  # Dagster no longer checks this way: nothing to cache
    parsed: dict[str, ScriptDirectory] = {}

    class CachedScripts:
        @staticmethod
        def from_config(config: Config) -> ScriptDirectory:
            # Every storage's config points at the same scripts: one parse serves them all.
            location = config.get_main_option("script_location") or ""
            if location not in parsed:
                parsed[location] = ScriptDirectory.from_config(config)
            return parsed[location]

    sql.ScriptDirectory = CachedScripts  # type: ignore[assignment,misc]
    CachedScripts.from_config(sql.get_alembic_config(sqlite_run_storage.__file__)).as_revision_number("head")


with contextlib.suppress(Exception):
    cache_migration_scripts()

if os.environ.get(CODE_ENV):
    with contextlib.suppress(Exception):
        load_code_location(*json.loads(os.environ[CODE_ENV]))

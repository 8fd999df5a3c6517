"""The default executor's forkserver: what it preloads, the environment it reads when it starts, and how a
caller starts it early. Imports no Dagster, so `stepflow-dagster run` can start the server before it
imports Dagster itself (the two imports then run side by side)."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing.forkserver
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..plan import FlowPlan
from ..runtime.warm import WARM_ENV
from .deployment import FlowDeployment, RunDefaults

DEFAULT_EXECUTOR = "forkserver"
CODE_ENV = "STEPFLOW_WARM_CODE"  # the run's code pointer and job, for `defs.preload`

# Imported once by the forkserver, in this order; the runtime's module then warms the run's components.
PRELOAD = [
    "dagster",
    # What a step's process imports to open the instance (alembic, SQLAlchemy: a second or more).
    "dagster._core.storage.legacy_storage",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.event_log.sqlite",
    "dagster._core.storage.runs.sqlite",
    "dagster._core.storage.schedules.sqlite",
    "dagster._core.storage.local_compute_log_manager",
    "stepflow_dagster.defs.ops",
    "stepflow_dagster.defs.preload",  # lfx, the run's components and code location (see there)
]


def warm_target(source: str, nodes: Iterable[str], run: RunDefaults) -> dict[str, Any]:
    """One flow file's entry of ``STEPFLOW_WARM``: its nodes a run executes, with what its deployment
    file says of their code (its code policies and what it trusts)."""
    trust = dataclasses.asdict(run.trust.policy())  # the whole policy the ops check, field by field
    return {
        "source": source,
        "nodes": sorted(nodes),  # sorted: the same steps give the same environment
        "code_policy": run.code_policy,
        "trust": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in trust.items()},
    }


def warm_targets_for_flow(flow: Path, plan: FlowPlan, deployment: FlowDeployment) -> list[dict[str, Any]]:
    """``STEPFLOW_WARM`` for a whole run of one flow file's job (`defs.single`), as its executor computes
    it from the job: the same environment, so that the executor keeps a server started early."""
    return [warm_target(str(flow.resolve()), [step.node_id for step in plan.steps], deployment.run)]


def warm_environment(targets: list[dict[str, Any]], code: list[Any] | None = None) -> dict[str, str | None]:
    """What the forkserver reads when it starts: the components to build (`runtime.warm`) and the run's
    code pointer and job (`defs.preload`); None for a variable to unset."""
    return {WARM_ENV: json.dumps(targets), CODE_ENV: json.dumps(code) if code else None}


def start_warm_forkserver(env: dict[str, str | None]) -> None:
    """Start the forkserver now, for a run about to be launched from this process (`stepflow-dagster
    run`): its imports and warm-up (seconds) overlap the caller's own work until the first step (importing
    Dagster, the instance, the run's record), instead of following it. The run's executor keeps it when
    it finds the same environment, else starts another."""
    use_forkserver_for(env)
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()


_forkserver_env: dict[str, str] | None = None


def use_forkserver_for(env: dict[str, str | None]) -> None:
    """Set the run's variables, and keep the forkserver only if it started with this very environment.

    A forkserver keeps the environment and the preloads it started with, for the life of the process
    that started it. A run worker runs one run; a process that runs several (a notebook, tests, a CLI
    that changed a variable) stops the old server when the environment changed, so that every run's
    steps see that run's environment and fork from that run's warm-up."""
    global _forkserver_env
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    current = dict(os.environ)
    if _forkserver_env is not None and _forkserver_env != current:
        old = _forkserver_env
        changed = sorted(k for k in current.keys() | old.keys() if current.get(k) != old.get(k))
        # Names only: a value may be a secret.
        logging.getLogger(__name__).debug("new forkserver: the environment changed (%s)", ", ".join(changed))
        multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]  # the next step starts one
    _forkserver_env = current

"""What `stepflow-dagster run` tells a person: the instance it runs on, and a failure in a few lines.

Dagster's event log (a STEP_FAILURE prints the whole error chain with stack traces, and RUN_FAILURE
again) is behind `-v`; without it a failed step is: the step, its flow, node id and display name, the
field when the runtime knows it, and the root cause.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from .plan import FlowPlan
from .runtime.errors import TRACEBACK_NOTE

# A fresh instance prints Dagster's telemetry notice and welcome banner on first use.
NO_TELEMETRY = {"telemetry": {"enabled": False}}
# ComponentError's text: "flow 'F', node 'N' (Display), field 'x': message" (runtime/errors.py), after
# the class name that a serialized error's message starts with.
_COMPONENT_TEXT = re.compile(
    r"^(?:[\w.]*ComponentError: )?flow '.*?', node '.*?'(?: \(.*?\))?(?:, field '(?P<field>[^']*)')?: ",
    re.DOTALL,
)


def run_instance(tmp: str, verbose: bool = False) -> tuple[dg.DagsterInstance, str | None]:
    """The `$DAGSTER_HOME` instance, else a temporary one (with its IO storage in ``tmp``).

    Unless the instance's dagster.yaml exists and says so: telemetry off (a temporary or new instance
    would greet the user with a banner on stderr), and without ``verbose`` the step processes' own
    event loggers at WARNING (they ignore the run config's loggers)."""
    from .defs import migrations

    migrations.install()
    overrides: dict[str, Any] = dict(NO_TELEMETRY)
    if not verbose:
        overrides["python_logs"] = {"python_log_level": "WARNING"}
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return temporary_instance(tmp, overrides), str(Path(tmp) / "storage")
    config = Path(home) / "dagster.yaml"
    if config.exists():
        text = config.read_text(encoding="utf-8")
        overrides = {
            key: value for key, value in overrides.items() if not re.search(rf"^{key}\s*:", text, re.M)
        }
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(home, overrides=overrides)), None


def temporary_instance(tmp: str, overrides: dict[str, Any]) -> dg.DagsterInstance:
    """A fresh SQLite instance in ``tmp``, copied from a template made once per Dagster version.

    Creating the SQLite schemas costs seconds (about 60 DDL statements, each committed to disk), more
    than a small flow's whole run; copying the empty databases costs milliseconds. The event log is one
    database (not one per run), so a run creates no schema either."""
    import shutil
    import tempfile

    from dagster._core.instance.ref import InstanceRef

    from .cache import cache_dir

    def ref(home: Path) -> InstanceRef:
        return InstanceRef.from_dir(str(home), overrides={**overrides, **_temporary_storage(home)})

    cache = cache_dir()
    template = cache / f"instance-{dg.__version__}"
    try:
        if not template.exists():
            cache.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="instance-", dir=cache))
            dg.DagsterInstance.from_ref(ref(staging)).dispose()
            with contextlib.suppress(OSError):  # another process made it first: keep theirs
                staging.rename(template)
            shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(template, tmp, dirs_exist_ok=True)
    except OSError:  # no writable cache (a read-only home): make the schemas here
        pass
    return dg.DagsterInstance.from_ref(ref(Path(tmp)))


def _temporary_storage(home: Path) -> dict[str, Any]:
    return {
        "event_log_storage": {
            "module": "dagster._core.storage.event_log",
            "class": "ConsolidatedSqliteEventLogStorage",
            "config": {"base_dir": str(home / "history")},
        },
        # One event log database (not one per run), and nothing captured: the instance is gone after the
        # run, and Dagster's local capture starts two `tail -F` and two Python watcher processes a step
        # only to mirror the step's output to this terminal, where it goes anyway uncaptured.
        "compute_logs": {
            "module": "dagster._core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
    }


def _chain(error: Any) -> list[Any]:
    found = []
    while error is not None:
        found.append(error)
        error = error.cause
    return found


@dataclass(frozen=True)
class StepFailure:
    """A failed step as a person reads it: where (step, node, field when known) and the root cause."""

    step: str
    node_id: str
    display_name: str
    field: str | None
    cause: str
    error: Any  # Dagster's SerializableErrorInfo: the full chain, for -v


def failures(result: dg.ExecuteJobResult, plan: FlowPlan) -> list[StepFailure]:
    return event_failures(result.all_events, plan)


def event_failures(events: Iterable[Any], plan: FlowPlan) -> list[StepFailure]:
    """The failed steps among a run's events (as a run's result or its event log gives them)."""
    found: list[StepFailure] = []
    for event in events:
        if not event.is_step_failure:
            continue
        step = plan.step(str(event.step_key).rsplit(".", 1)[-1])  # asset steps: graph-prefixed
        error = event.event_specific_data.error
        chain = _chain(error)
        component = next((e for e in chain if e.cls_name == "ComponentError"), None)
        where = _COMPONENT_TEXT.match(component.message) if component is not None else None
        root = chain[-1]
        # The root exception's "Type: message"; a ComponentError of our own without its "where" prefix.
        # The component's own (masked) traceback travels as a note: it is in the event log, not here.
        cause, _, note = root.message.partition(TRACEBACK_NOTE)
        cause = cause.strip()
        if root is component and where is not None:
            cause = cause[where.end() :]
        if root is component and note.strip():
            # The error carries no chain (it may hold a secret): the note's last line is the component's
            # own exception, "Type: message", masked.
            cause = note.strip().splitlines()[-1].strip()
        field = where["field"] if where is not None and where["field"] else None
        found.append(StepFailure(step.name, step.node_id, step.display_name, field, cause, error))
    return found


def failure_lines(
    result: dg.ExecuteJobResult, plan: FlowPlan, verbose: bool = False, hint: bool = True
) -> list[str]:
    """A few lines per failed step; the full error chain with its traceback when ``verbose``; ``hint``:
    say that `-v` shows more (commands without -v pass False)."""
    lines: list[str] = []
    for failed in failures(result, plan):
        lines.append(f"error: step {failed.step} (node {failed.node_id}, {failed.display_name}) failed")
        lines.append(f"  flow:  {plan.flow}")
        if failed.field:
            lines.append(f"  field: {failed.field}")
        lines.append(f"  cause: {failed.cause}")
        if verbose:
            lines.append(failed.error.to_string().rstrip())
    if not lines:
        return lines
    started = {str(e.step_key).rsplit(".", 1)[-1] for e in result.all_events if e.is_step_start}
    not_run = [s.name for s in plan.steps if s.name not in started]
    if not_run:
        lines.append(f"  not run: {', '.join(not_run)}")
    if hint and not verbose:
        lines.append("  (Dagster's event log and the full traceback: run again with -v)")
    return lines

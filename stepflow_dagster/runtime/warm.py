"""Warming a process that steps fork from: a build (no compute) of every component a run executes.

The default executor names them in ``STEPFLOW_WARM`` (JSON: ``[{"source": flow file, "nodes": [node
ids]}]``) for its forkserver, which imports `runtime.preload`. The builds' caches (compiled classes, code
policy decisions) and the modules they import are what the forked steps inherit. Warming is best effort:
a component that cannot be built here (a missing variable) fails in its own step, where the error belongs.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

WARM_ENV = "STEPFLOW_WARM"


def warm(targets: list[dict[str, object]]) -> int:
    """Build each named component once, without computing it; the number built."""
    from lfx.preload import teardown_warm_services

    from ..flow import load_flow
    from ..plan import plan_flow
    from .component import ComponentCall, build_component

    built = 0
    logging.disable(logging.CRITICAL)  # a step reports its own warnings and errors
    try:
        for target in targets:
            nodes = set(target.get("nodes") or [])  # type: ignore[call-overload]
            with contextlib.suppress(Exception):
                plan = plan_flow(load_flow(Path(str(target["source"]))))
                for step in plan.steps:
                    for c in step.components if step.node_id in nodes else ():
                        with contextlib.suppress(Exception):
                            build_component(ComponentCall(c.node_id, c.data, {}, []), flow_name=plan.flow)
                            built += 1
        teardown_warm_services()  # lfx: no service state left live across the fork
    finally:
        logging.disable(logging.NOTSET)
    return built

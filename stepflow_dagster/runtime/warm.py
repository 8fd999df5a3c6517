"""Warming a process that steps fork from: a build (no compute) of every component a run executes.

The default executor names them in ``STEPFLOW_WARM`` (JSON: ``[{"source": flow file, "nodes": [node
ids], "code_policy": {...}, "trust": {...}}]``, the last two from the flow's deployment file) for its
forkserver, which imports `runtime.preload`. The builds' caches (compiled classes, code policy decisions)
and the modules they import are what the forked steps inherit. Only code the run may run is built: stock
code, or code the deployment trusts (the steps refuse the rest before any component runs). Warming is
best effort: a component that cannot be built here (a missing variable) fails in its own step, where the
error belongs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any

WARM_ENV = "STEPFLOW_WARM"


def warm(targets: list[dict[str, object]]) -> int:
    """Build each named component once, without computing it; the number built."""
    from lfx.preload import teardown_warm_services

    from ..flow import load_flow
    from ..plan import plan_flow
    from .component import ComponentCall, build_component, policy_for
    from .trust import Trust, untrusted

    built = 0
    logging.disable(logging.CRITICAL)  # a step reports its own warnings and errors
    try:
        for target in targets:
            nodes = set(target.get("nodes") or [])  # type: ignore[call-overload]
            policies: dict[str, str] = dict(target.get("code_policy") or {})  # type: ignore[call-overload]
            given: dict[str, Any] = dict(target.get("trust") or {})  # type: ignore[call-overload]
            fields: dict[str, Any] = {k: frozenset(v) if isinstance(v, list) else v for k, v in given.items()}
            with contextlib.suppress(Exception):  # nothing warmed rather than a guess at the policy
                trust = Trust(**fields)  # every field of the ops' own policy
                plan = plan_flow(load_flow(Path(str(target["source"]))))
                components = [c for s in plan.steps if s.node_id in nodes for c in s.components]
                refused = untrusted(
                    [(c.node_id, c.data) for c in components],
                    trust,
                    functools.partial(policy_for, policies),
                )
                if refused:  # the run refuses the flow before any component runs: nothing to warm
                    continue
                for c in components:
                    with contextlib.suppress(Exception):
                        call = ComponentCall(c.node_id, c.data, {}, [])
                        build_component(call, flow_name=plan.flow, code_policy=policies)
                        built += 1
        teardown_warm_services()  # lfx: no service state left live across the fork
    finally:
        logging.disable(logging.NOTSET)
    return built

"""Latency the `dagster` executor adds over lfx's in-process executor, for one small flow.

    uv run python bench/lfx_executor_bench.py [--repeat 3] [--cli]

In one process with lfx imported (what `lfx serve` pays per request): a fresh graph of the flow each
time, timed from `execute()` to its `RunComplete`, best of --repeat, for each executor; the Dagster
run on a temporary instance with the default executor. --cli also times a fresh `lfx run` process each
way (what a person at a terminal waits for).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPFLOW_SHARED", ROOT.parent / "shared")) / "flows"
FLOW = SHARED / "lfx_template__hello-world.json"


async def one(executor: Any) -> tuple[float, float]:
    """(seconds to the first StepResult, seconds to RunComplete)."""
    from lfx.execution import RunComplete, StepResult, Unit
    from lfx.load import load_flow_from_json

    unit = Unit(graph=load_flow_from_json(str(FLOW)))
    t0 = time.perf_counter()
    first = 0.0
    async for item in executor.execute(unit):
        if isinstance(item, StepResult) and not first:
            first = time.perf_counter() - t0
        if isinstance(item, RunComplete):
            return first, time.perf_counter() - t0
    raise RuntimeError("no RunComplete")


def cli(kind: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"LANGFLOW_EXECUTOR_KIND": kind}
    args = [str(Path(sys.executable).parent / "lfx"), "run", "--no-check-dependencies", str(FLOW)]
    t0 = time.perf_counter()
    subprocess.run(args, env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli", action="store_true")
    args = parser.parse_args()
    os.environ.pop("DAGSTER_HOME", None)
    from lfx.execution import InProcessExecutor

    from stepflow_dagster.lfx_executor import DagsterExecutor

    rows = []
    for name, executor in (("in-process", InProcessExecutor()), ("dagster", DagsterExecutor())):
        times = [asyncio.run(one(executor)) for _ in range(args.repeat)]
        rows.append((name, min(t[0] for t in times), min(t[1] for t in times)))
    print(f"hello-world (2 components), best of {args.repeat}, in one process:")
    print("| executor | first component (s) | run complete (s) |")
    print("|---|---:|---:|")
    for name, first, total in rows:
        print(f"| {name} | {first:.2f} | {total:.2f} |")
    print(f"added by the dagster executor: {rows[1][2] - rows[0][2]:.2f} s")
    if args.cli:
        walls = {kind: min(cli(kind) for _ in range(args.repeat)) for kind in ("in-process", "dagster")}
        print(
            f"fresh `lfx run` wall (s): in-process {walls['in-process']:.2f}, dagster {walls['dagster']:.2f}"
        )


if __name__ == "__main__":
    main()

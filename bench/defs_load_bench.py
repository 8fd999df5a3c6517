"""How long loading the code location takes for N flows (every step process pays it again).

Copies the shared exports round-robin into a temporary flows folder (N files, each renamed so job names
stay distinct), then times `import definitions` in a fresh process, best of 3.

    uv run python bench/defs_load_bench.py [--flows 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPFLOW_SHARED", ROOT.parent / "shared")) / "flows"
PROBE = (
    "import sys, time; t = time.perf_counter(); import dagster; t1 = time.perf_counter(); import definitions; "
    "t2 = time.perf_counter(); print(len(definitions.defs.jobs), t1 - t, t2 - t1, 'lfx' in sys.modules)"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=100)
    args = parser.parse_args()
    sources = sorted(SHARED.glob("*.json"))
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.flows):
            doc = json.loads(sources[i % len(sources)].read_text())
            doc["name"] = f"{doc.get('name', 'flow')} {i:03d}"
            (Path(tmp) / f"flow_{i:03d}.json").write_text(json.dumps(doc))
        nodes = sum(len(json.loads(p.read_text())["data"]["nodes"]) for p in Path(tmp).glob("*.json"))
        env = {**os.environ, "STEPFLOW_FLOWS_DIR": tmp}
        runs = []
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
            )
            jobs, t_dagster, t_defs, lfx = out.stdout.split()
            runs.append((float(t_defs), float(t_dagster)))
        best = min(runs)
        print(
            "| flows | nodes | jobs | import dagster (s) | build definitions (s) | per flow (ms) | lfx imported |"
        )
        print("|---:|---:|---:|---:|---:|---:|---|")
        print(
            f"| {args.flows} | {nodes} | {jobs} | {best[1]:.2f} | {best[0]:.2f} | {best[0] / args.flows * 1e3:.1f} | {lfx} |"
        )


if __name__ == "__main__":
    main()

"""Wall time of the same flows run by `lfx run`, and by our CLI with each executor.

    uv run python bench/run_bench.py [--repeat 2]

Each cell is the best of --repeat runs of a fresh process (what a user waits for), in seconds, the modes
interleaved; then the issue's goals: in-process against `lfx run`, and the seconds per component that a
process per step adds to the in-process run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPFLOW_SHARED", ROOT.parent / "shared")) / "flows"


def flows(tmp: Path) -> list[tuple[str, Path, list[str], dict]]:
    docs = str(ROOT / "flows/samples/docs")
    return [
        ("hello-world (2)", SHARED / "lfx_template__hello-world.json", ["--input", "hi"], {}),
        ("document chunks (4)", ROOT / "flows/document_chunks.json", [], {"Directory-docs1": {"path": docs}}),
        (
            "router (4)",
            ROOT / "tests/flows/router.json",
            [],
            {"TextInput-rt001": {"input_value": "urgent: reply"}},
        ),
    ]


def timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{args[:4]} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false"}
    env.pop("DAGSTER_HOME", None)
    cli = [sys.executable, "-m", "stepflow_dagster.cli", "run"]
    print(
        "| flow (components) | lfx run | in-process | multiprocess | forkserver + preload (default) "
        "| in-process / lfx run | per component above in-process: multiprocess | forkserver |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, flow, inputs, tweaks in flows(Path(tmp)):
            n = int(label.split("(")[1].rstrip(")"))
            doc = json.loads(flow.read_text())
            for node in doc["data"]["nodes"]:
                for field, value in tweaks.get(node["id"], {}).items():
                    node["data"]["node"]["template"][field]["value"] = value
            tweaked = Path(tmp) / "lfx_flow.json"
            tweaked.write_text(json.dumps(doc))
            lfx_args = [sys.executable, "-m", "lfx", "run", str(tweaked), "--format", "text"]
            if "--input" in inputs:
                lfx_args += ["--input-value", inputs[1]]
            ours = [*cli, str(flow), *inputs, "--tweaks", json.dumps(tweaks)]
            runs = {
                "lfx": (lfx_args, env),
                "in_process": ([*ours, "--in-process"], env),
                "multiprocess": (ours, {**env, "STEPFLOW_EXECUTOR": "multiprocess"}),
                "forkserver": (ours, {**env, "STEPFLOW_EXECUTOR": "forkserver"}),
            }
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(args.repeat):  # interleaved: a busy moment of the machine spreads over all
                for key, (command, environ) in runs.items():
                    times[key].append(timed(command, environ))
            cells = {k: min(v) for k, v in times.items()}
            print(
                f"| {label} | {cells['lfx']:.1f} | {cells['in_process']:.1f} | {cells['multiprocess']:.1f} "
                f"| {cells['forkserver']:.1f} | {cells['in_process'] / cells['lfx']:.2f} "
                f"| {(cells['multiprocess'] - cells['in_process']) / n:.2f} "
                f"| {(cells['forkserver'] - cells['in_process']) / n:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Documents per minute through the OpenRAG ingestion flow, on the real local services.

    services/up && set -a && source var/services/services.env && set +a
    uv run python bench/ingest_bench.py [--docs 100] [--sample 10]

Modes (each on fresh small Markdown documents, its own OpenSearch index):
- lfx run, once per document (a fresh process each; the flow copy gets the document as a tweak)
- `dagster asset materialize` of one partition per document, multiprocess executor (a process per component)
- two `stepflow-dagster ingest` in parallel, each running its documents' runs in its own process
- `stepflow-dagster ingest`: every document's run in one process
The slow modes run on --sample documents and report the rate; the in-process CLI runs all --docs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "flows" / "openrag_ingestion.json"


def make_docs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"doc_{i:03d}.md"
        path.write_text(f"# Document {i}\n\nThis is small document number {i}. " * 3 + "\n")
        paths.append(path)
    return paths


def lfx_once(doc: Path, env: dict[str, str], tmp: Path) -> None:
    from lfx.processing.process import process_tweaks

    flow = json.loads(FLOW.read_text())
    deployment = __import__("yaml").safe_load(FLOW.with_suffix(".yaml").read_text())
    from stepflow_dagster.defs.deployment import expand_env

    tweaks = expand_env(deployment["run"]["tweaks"])
    tweaks["DoclingRemote-Dp3PX"]["path"] = [str(doc)]
    process_tweaks(flow["data"], tweaks)
    variables = {
        **expand_env(deployment["run"]["variables"]),
        "FILENAME": doc.name,
        "FILESIZE": str(doc.stat().st_size),
        "MIMETYPE": "text/markdown",
    }
    path = tmp / "flow.json"
    path.write_text(json.dumps(flow))
    res = subprocess.run(
        [sys.executable, "-m", "lfx", "run", str(path), "--format", "text"],
        env={**env, **variables},
        capture_output=True,
        text=True,
    )
    if '"success": false' in res.stdout or res.returncode:
        raise SystemExit(f"lfx run failed: {res.stdout[-1000:]}{res.stderr[-1000:]}")


def ingest_cli(folder: Path, env: dict[str, str]) -> None:
    args = [sys.executable, "-m", "stepflow_dagster.cli", "ingest", str(folder), "--flow", str(FLOW)]
    res = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        raise SystemExit(f"ingest failed: {res.stdout[-1500:]}{res.stderr[-1500:]}")


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds * 60:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--sample", type=int, default=10)
    args = parser.parse_args()
    base = {
        **os.environ,
        "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false",
        "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "sk-local"),
    }
    base.pop("DAGSTER_HOME", None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        docs = make_docs(tmp / "lfx", args.sample)
        env = {**base, "OPENSEARCH_INDEX": "bench_lfx"}
        t0 = time.perf_counter()
        for doc in docs:
            lfx_once(doc, env, tmp)
        rows.append(("`lfx run` once per document", len(docs), time.perf_counter() - t0))

        folder = tmp / "multi"
        make_docs(folder, args.sample)
        t0 = time.perf_counter()
        ingest_cli(folder, {**base, "OPENSEARCH_INDEX": "bench_multi", "STEPFLOW_EXECUTOR": "multiprocess"})
        rows.append(
            (
                "ingestion job, multiprocess executor, runs one after another",
                args.sample,
                time.perf_counter() - t0,
            )
        )

        halves = [tmp / "par_a", tmp / "par_b"]
        for i, half in enumerate(halves):
            make_docs(half, args.sample // 2)
            for doc in half.iterdir():
                doc.rename(half / f"{i}_{doc.name}")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(
                pool.map(
                    lambda f: ingest_cli(f, {**base, "OPENSEARCH_INDEX": "bench_par"}, "--in-process"), halves
                )
            )
        rows.append(
            (
                "ingestion job, 2 runs in parallel, in-process executor",
                2 * (args.sample // 2),
                time.perf_counter() - t0,
            )
        )

        folder = tmp / "all"
        make_docs(folder, args.docs)
        t0 = time.perf_counter()
        ingest_cli(folder, {**base, "OPENSEARCH_INDEX": "bench_all"}, "--in-process")
        rows.append(
            ("`stepflow-dagster ingest --in-process` (one process)", args.docs, time.perf_counter() - t0)
        )

    print("| mode | documents | wall (s) | documents per minute |")
    print("|---|---:|---:|---:|")
    for label, n, seconds in rows:
        print(f"| {label} | {n} | {seconds:.0f} | {rate(n, seconds)} |")


if __name__ == "__main__":
    main()

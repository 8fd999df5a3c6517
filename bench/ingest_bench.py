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
    # lfx 1.13 cannot run the export's frozen Export DoclingDocument code: give it the code our runtime
    # runs (upgrade-stock policy, plus the disk_ann patch), so that both run the same components.
    from stepflow_dagster.runtime import apply_code_policy

    for node in flow["data"]["nodes"]:
        if node.get("type") == "genericNode":
            apply_code_policy(node["data"], "upgrade-stock")
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
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        docs = make_docs(tmp / "lfx", args.sample)
        env = {**base, "OPENSEARCH_INDEX": "bench_lfx"}
        os.environ["OPENSEARCH_INDEX"] = "bench_lfx"  # read by expand_env for lfx's copy of the flow
        import yaml
        from opensearchpy import OpenSearch

        body = yaml.safe_load(FLOW.with_suffix(".yaml").read_text())["documents"]["index_body"]
        client = OpenSearch(hosts=[os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")])
        if not client.indices.exists(index="bench_lfx"):
            client.indices.create(index="bench_lfx", body=body)  # as our sink step does when missing
        t0 = time.perf_counter()
        for doc in docs:
            lfx_once(doc, env, tmp)
        rows.append(("`lfx run` once per document", len(docs), time.perf_counter() - t0))
        print(rows[-1], flush=True)

        folder = tmp / "multi"
        docs = make_docs(folder, args.sample)
        flows, home = tmp / "flows", tmp / "home"
        flows.mkdir()
        home.mkdir()
        for path in (FLOW, FLOW.with_suffix(".yaml")):
            (flows / path.name).write_bytes(path.read_bytes())
        env = {
            **base,
            "OPENSEARCH_INDEX": "bench_multi",
            "DAGSTER_HOME": str(home),
            "STEPFLOW_FLOWS_DIR": str(flows),
            "STEPFLOW_DROP_DIR": str(folder),
            "STEPFLOW_EXECUTOR": "multiprocess",
        }
        names = [d.name for d in docs]
        add = f"import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions('opensearch_ingestion_flow_documents', {names!r})"
        subprocess.run([sys.executable, "-c", add], env=env, check=True)
        dagster = str(Path(sys.executable).parent / "dagster")
        t0 = time.perf_counter()
        for name in names:
            cmd = [
                dagster,
                "asset",
                "materialize",
                "-f",
                "definitions.py",
                "--select",
                "opensearch/documents",
                "--partition",
                name,
            ]
            res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(f"materialize failed: {res.stderr[-2000:]}")
        rows.append(
            (
                "`dagster asset materialize` a partition per document, multiprocess executor",
                len(names),
                time.perf_counter() - t0,
            )
        )
        print(rows[-1], flush=True)

        halves = [tmp / "par_a", tmp / "par_b"]
        for i, half in enumerate(halves):
            make_docs(half, args.sample // 2)
            for doc in half.iterdir():
                doc.rename(half / f"{i}_{doc.name}")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda f: ingest_cli(f, {**base, "OPENSEARCH_INDEX": "bench_par"}), halves))
        rows.append(
            (
                "2 `stepflow-dagster ingest` in parallel (each: its runs in one process)",
                2 * (args.sample // 2),
                time.perf_counter() - t0,
            )
        )
        print(rows[-1], flush=True)

        folder = tmp / "all"
        make_docs(folder, args.docs)
        t0 = time.perf_counter()
        ingest_cli(folder, {**base, "OPENSEARCH_INDEX": "bench_all"})
        rows.append(
            ("`stepflow-dagster ingest` (every run in one process)", args.docs, time.perf_counter() - t0)
        )
        print(rows[-1], flush=True)

    print("| mode | documents | wall (s) | documents per minute |", flush=True)
    print("|---|---:|---:|---:|")
    for label, n, seconds in rows:
        print(f"| {label} | {n} | {seconds:.0f} | {rate(n, seconds)} |")


if __name__ == "__main__":
    main()

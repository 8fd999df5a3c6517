"""Documents per minute through the OpenRAG ingestion flow, side by side, on the real local services.

    services/up && set -a && source var/services/services.env && set +a
    uv run python bench/ingest_bench.py [--docs 100] [--sample 4] [--batch 25] [--listing 10000]

The same small Markdown documents and services for every way (each into its own OpenSearch index):
- one warm process running the flow per document with lfx (`lfx.load.run_flow_from_json`, as a Langflow
  server serves a request); lfx gets the code our runtime runs (the export's frozen Export DoclingDocument
  code fails on lfx 1.13)
- `lfx run` once per document (--sample documents)
- drop + sensor + `dagster-daemon`, the project's default executor, 1 document per run (--sample documents)
- the same, --batch documents per run (--docs documents)
- `stepflow-dagster ingest FOLDER` (--docs documents)
Then the sensor alone: the time to list, hash and request --listing dropped documents, and its cursor size.
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
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "flows" / "openrag_ingestion.json"
DEPLOYMENT = FLOW.with_suffix(".yaml")


def make_docs(folder: Path, n: int, tag: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"doc_{i:03d}.md"
        path.write_text(f"# Document {i} ({tag})\n\n" + f"This is small document number {i}. " * 3 + "\n")
        paths.append(path)
    return paths


def index_for(mode: str) -> str:
    from opensearchpy import OpenSearch

    index = f"bench_{mode}"
    client = OpenSearch(hosts=[os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")])
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    body = yaml.safe_load(DEPLOYMENT.read_text())["documents"]["index_body"]
    client.indices.create(index=index, body=body)  # as our sink step does when missing
    return index


def count(index: str) -> int:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")])
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def lfx_flow(index: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The export as lfx runs it here: our code policy applied, the deployment's tweaks."""
    from stepflow_dagster.defs.deployment import expand_env
    from stepflow_dagster.runtime import apply_code_policy

    os.environ["OPENSEARCH_INDEX"] = index
    flow = json.loads(FLOW.read_text())
    for node in flow["data"]["nodes"]:
        if node.get("type") == "genericNode":
            apply_code_policy(node["data"], "upgrade-stock")
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    return flow, expand_env(deployment["run"]["tweaks"])


def doc_env(doc: Path, root: Path) -> dict[str, str]:
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    from stepflow_dagster.defs.deployment import expand_env

    return {
        **expand_env(deployment["run"]["variables"]),
        "FILENAME": doc.relative_to(root).as_posix(),
        "FILESIZE": str(doc.stat().st_size),
        "MIMETYPE": "text/markdown",
    }


def warm_lfx(docs: list[Path], root: Path) -> None:
    """One process, the flow run per document as a Langflow server runs a request."""
    from lfx.load import run_flow_from_json

    index = index_for("warm_lfx")
    flow, tweaks = lfx_flow(index)
    os.environ["LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS"] = "false"
    for doc in docs:
        os.environ.update(doc_env(doc, root))
        run_flow_from_json(
            flow,
            "",
            tweaks={**tweaks, "DoclingRemote-Dp3PX": {**tweaks["DoclingRemote-Dp3PX"], "path": [str(doc)]}},
            fallback_to_env_vars=True,
        )
    assert count(index) == len(docs), (count(index), len(docs))


def lfx_run(docs: list[Path], root: Path, tmp: Path) -> None:
    index = index_for("lfx_run")
    flow, tweaks = lfx_flow(index)
    from lfx.processing.process import process_tweaks

    for doc in docs:
        copy = json.loads(json.dumps(flow))
        process_tweaks(
            copy["data"],
            {**tweaks, "DoclingRemote-Dp3PX": {**tweaks["DoclingRemote-Dp3PX"], "path": [str(doc)]}},
        )
        path = tmp / "flow.json"
        path.write_text(json.dumps(copy))
        env = {**os.environ, **doc_env(doc, root), "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false"}
        res = subprocess.run(
            [sys.executable, "-m", "lfx", "run", str(path), "--format", "text"],
            env=env,
            capture_output=True,
            text=True,
        )
        if res.returncode:
            raise SystemExit(f"lfx run failed: {res.stdout[-1000:]}{res.stderr[-1000:]}")
    assert count(index) == len(docs)


def sensor_daemon(docs_n: int, batch: int, tmp: Path, name: str) -> float:
    """Drop the documents, start the daemon; seconds from the drop to the last materialization."""
    import dagster as dg

    home, flows, drop = tmp / f"{name}_home", tmp / f"{name}_flows", tmp / f"{name}_drop"
    home.mkdir()
    flows.mkdir()
    (flows / FLOW.name).write_bytes(FLOW.read_bytes())
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    deployment["documents"].update(minimum_interval_seconds=5, max_documents_per_run=batch)
    (flows / DEPLOYMENT.name).write_text(yaml.safe_dump(deployment))
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "run_coordinator": {
                    "module": "dagster._core.run_coordinator",
                    "class": "QueuedRunCoordinator",
                    "config": {"max_concurrent_runs": 2},
                },
                "telemetry": {"enabled": False},
            }
        )
    )
    workspace = tmp / f"{name}_workspace.yaml"
    location = {"relative_path": str(ROOT / "definitions.py"), "working_directory": str(ROOT)}
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_file": location}]}))
    index = index_for(name)
    env = {k: v for k, v in os.environ.items() if k != "STEPFLOW_EXECUTOR"} | {
        "DAGSTER_HOME": str(home),
        "STEPFLOW_FLOWS_DIR": str(flows),
        "STEPFLOW_DROP_DIR": str(drop),
        "OPENSEARCH_INDEX": index,
    }
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
        env=env,
        stdout=(tmp / f"{name}_daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(8)  # the daemon up and its first tick of an empty location
        make_docs(drop, docs_n, name)
        t0 = time.perf_counter()
        key = dg.AssetKey(deployment["documents"]["asset_key"])
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while len(instance.get_materialized_partitions(key)) < docs_n:
                if daemon.poll() is not None or any(r.status.value == "FAILURE" for r in instance.get_runs()):
                    raise SystemExit(f"sensor path failed: see {tmp / f'{name}_daemon.log'}")
                time.sleep(1)
            seconds = time.perf_counter() - t0
            runs = len(instance.get_runs())
        assert count(index) == docs_n
        print(f"  {name}: {runs} runs", flush=True)
        return seconds
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=60)


def ingest_cli(folder: Path, batch: int) -> None:
    index = index_for("ingest")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"OPENSEARCH_INDEX": index}
    args = [sys.executable, "-m", "stepflow_dagster.cli", "ingest", str(folder), "--batch", str(batch)]
    res = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        raise SystemExit(f"ingest failed: {res.stdout[-1500:]}{res.stderr[-1500:]}")


def sensor_listing(n: int, tmp: Path) -> tuple[float, int, int, int]:
    """The sensor alone over n dropped documents: seconds for a whole pass, ticks, runs, cursor bytes."""
    import dagster as dg

    from stepflow_dagster.defs import StepflowSettings, build_definitions

    drop = tmp / "listing"
    for i in range(n):
        folder = drop / f"f{i // 1000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"d{i:05d}.md").write_text(f"# {i}\n\ndocument {i}\n")
    flows = tmp / "listing_flows"
    flows.mkdir()
    for path in (FLOW, DEPLOYMENT):
        (flows / path.name).write_bytes(path.read_bytes())
    os.environ["STEPFLOW_DROP_DIR"] = str(drop)
    defs = build_definitions(
        StepflowSettings(flows_dir=flows, executor="in_process", storage=str(tmp / "st"))
    )
    sensor = defs.get_sensor_def("opensearch_ingestion_flow_document_drop")
    with dg.instance_for_test() as instance:
        cursor, ticks, runs = None, 0, 0
        t0 = time.perf_counter()
        while True:
            result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            ticks += 1
            runs += len(result.run_requests or [])
            cursor = result.cursor
            if json.loads(cursor or "{}").get("passes", 0) >= 1:
                break
        return time.perf_counter() - t0, ticks, runs, len(cursor or "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--sample", type=int, default=4)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--listing", type=int, default=10_000)
    parser.add_argument("--skip", default="", help="comma-separated modes to leave out")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-local")
    os.environ.pop("DAGSTER_HOME", None)
    skip = set(args.skip.split(","))
    rows: list[tuple[str, int, float]] = []

    def row(label: str, n: int, seconds: float) -> None:
        rows.append((label, n, seconds))
        print(f"{label}: {n} documents in {seconds:.1f} s = {n / seconds * 60:.1f} per minute", flush=True)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "warm" not in skip:
            docs = make_docs(tmp / "warm", args.docs, "warm")
            t0 = time.perf_counter()
            warm_lfx(docs, tmp / "warm")
            row(
                "one warm process, lfx `run_flow_from_json` per document", len(docs), time.perf_counter() - t0
            )
        if "lfx" not in skip:
            docs = make_docs(tmp / "lfxrun", args.sample, "lfx")
            t0 = time.perf_counter()
            lfx_run(docs, tmp / "lfxrun", tmp)
            row("`lfx run` once per document", len(docs), time.perf_counter() - t0)
        if "sensor1" not in skip:
            row(
                "drop + sensor + `dagster-daemon`, default executor, 1 document per run",
                args.sample,
                sensor_daemon(args.sample, 1, tmp, "sensor_1"),
            )
        if "sensor" not in skip:
            row(
                f"drop + sensor + `dagster-daemon`, default executor, {args.batch} documents per run",
                args.docs,
                sensor_daemon(args.docs, args.batch, tmp, f"sensor_{args.batch}"),
            )
        if "ingest" not in skip:
            folder = tmp / "ingest"
            make_docs(folder, args.docs, "ingest")
            t0 = time.perf_counter()
            ingest_cli(folder, args.batch)
            row(
                f"`stepflow-dagster ingest FOLDER` ({args.batch} per run)",
                args.docs,
                time.perf_counter() - t0,
            )
        listing = sensor_listing(args.listing, tmp) if "listing" not in skip else None

    print("\n| way | documents | wall (s) | documents per minute |\n|---|---:|---:|---:|")
    for label, n, seconds in rows:
        print(f"| {label} | {n} | {seconds:.0f} | {n / seconds * 60:.1f} |")
    if listing:
        seconds, ticks, runs, size = listing
        print(
            f"\nsensor over {args.listing} dropped documents: one pass in {seconds:.1f} s ({ticks} ticks), "
            f"{runs} run requests, cursor {size} bytes"
        )


if __name__ == "__main__":
    main()

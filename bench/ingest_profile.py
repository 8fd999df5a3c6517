"""Where a document's time goes in one warm process: each component of the OpenRAG ingestion flow, timed.

    services/up && set -a && source var/services/services.env && set +a
    uv run python bench/ingest_profile.py [--docs 10] [--batch]

Runs the flow's steps with the same code the ops run (`run_step`, `run_batch`), JSON round trips
included, on small Markdown documents. Without --batch, one document at a time through every step
(what a run per document does, minus Dagster); with --batch, every step once over all documents (what a
batch run does). Prints per step: total seconds and seconds per document.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "flows" / "openrag_ingestion.json"


def make_docs(folder: Path, n: int, tag: str = "") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = f"# Document {i}{tag}\n\nThis is small document number {i}. " * 3 + "\n"
        (folder / f"doc_{i:03d}.md").write_text(text)
    return sorted(p.name for p in folder.iterdir())


def step_inputs(step: Any, stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A step's inputs from what its upstream steps stored, as the IO manager hands them to the op."""
    return {
        i.name: [stored[s.step][s.output] for s in i.sources]
        if len(i.sources) > 1
        else stored[i.sources[0].step][i.sources[0].output]
        for i in step.inputs
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--concurrency", type=int, default=4, help="documents side by side (--batch)")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-local")
    os.environ.setdefault("OPENSEARCH_INDEX", "bench_profile")

    t0 = time.perf_counter()
    from stepflow_dagster.defs.deployment import load_deployment
    from stepflow_dagster.defs.ops import run_step, step_settings
    from stepflow_dagster.defs.resources import LangflowRun
    from stepflow_dagster.flow import load_flow
    from stepflow_dagster.plan import plan_flow
    from stepflow_dagster.runtime import preload  # noqa: F401  (lfx and the components' modules)

    print(f"imports: {time.perf_counter() - t0:.2f} s", flush=True)
    plan = plan_flow(load_flow(FLOW))
    deployment = load_deployment(FLOW, plan.flow)
    run = LangflowRun()
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")])
    index = os.environ["OPENSEARCH_INDEX"]
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    assert deployment.documents is not None
    client.indices.create(index=index, body=deployment.documents.index_body)
    timings: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "drop"
        os.environ["STEPFLOW_DROP_DIR"] = str(folder)
        docs = make_docs(folder, args.docs)
        t_all = time.perf_counter()
        if args.batch:
            from stepflow_dagster.defs.batch import run_batch

            stored: dict[str, dict[str, Any]] = {}
            for step in plan.steps:
                inputs = step_inputs(step, stored)
                t = time.perf_counter()
                result = run_batch(plan, step, inputs, run, deployment, docs, concurrency=args.concurrency)
                stored[step.name] = json.loads(json.dumps(result.outputs))
                timings[step.name] += time.perf_counter() - t
                assert not result.failures, result.failures
        else:
            # The first document warms each component's modules and clients: not counted.
            for index, doc in enumerate([docs[0], *docs]):
                counted = index > 0
                settings = step_settings(plan, run, deployment, doc)
                values: dict[str, dict[str, Any]] = {}
                for step in plan.steps:
                    inputs = step_inputs(step, values)
                    t = time.perf_counter()
                    stored_values, _ = run_step(plan, step, inputs, settings)
                    values[step.name] = json.loads(json.dumps(stored_values))
                    if counted:
                        timings[step.name] += time.perf_counter() - t
        wall = time.perf_counter() - t_all
    n = args.docs
    print("| step | total (s) | per document (s) |\n|---|---:|---:|")
    for name, seconds in sorted(timings.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.2f} | {seconds / n:.3f} |")
    print(f"| all | {sum(timings.values()):.2f} | {sum(timings.values()) / n:.3f} |")
    print(f"wall {wall:.1f} s for {n} documents: {n / wall * 60:.1f} documents per minute")


if __name__ == "__main__":
    main()

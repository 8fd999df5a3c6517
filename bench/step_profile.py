"""Where a run's and each step's seconds go, phase by phase, read from the run's own event log.

    uv run python bench/step_profile.py [--executor forkserver] [--flow PATH] [--input TEXT]

Runs one flow (default: the shared hello-world export) as `stepflow-dagster run` does (a temporary
instance, the reconstructable job of that flow), then prints, per step, the seconds between the events
Dagster records:

- process: the step process starting, loading the job and opening the instance (worker launched ->
  worker started; 0 in process);
- setup: initialising resources and the step (worker started -> STEP_START);
- component: our op building and computing its lfx component (STEP_START -> first STEP_OUTPUT);
- io: storing outputs and the rest of the step (first output -> STEP_SUCCESS);
- exit: the process ending and the executor noticing (STEP_SUCCESS -> next event of the step, if any).

Then the run's own phases: imports, planning, instance creation, run, and the wall time of the whole.

    services/up && set -a && source var/services/services.env && set +a
    uv run python bench/step_profile.py --ingest 10

profiles one batch run of the OpenRAG ingestion asset over 10 small Markdown documents instead, as the
drop sensor launches it (the code location `definitions.py`, the default executor, a DAGSTER_HOME).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPFLOW_SHARED", ROOT.parent / "shared")) / "flows"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executor", default="forkserver")
    parser.add_argument("--flow", type=Path, default=SHARED / "lfx_template__hello-world.json")
    parser.add_argument("--input", default="hi")
    parser.add_argument(
        "--child-profile", action="store_true", help="cProfile each step process (forkserver), print the top"
    )
    parser.add_argument("--ingest", type=int, default=0, help="documents: profile an ingestion batch run")
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_TELEMETRY_ENABLED", "false")
    config: dict = {}
    if args.child_profile:
        from stepflow_dagster.defs.forkserver import PRELOAD

        os.environ["STEPFLOW_CHILD_PROFILE"] = profiles = tempfile.mkdtemp(prefix="child-profile-")
        start = {"forkserver": {"preload_modules": [*PRELOAD, "child_profile"]}}
        config["execution"] = {"config": {"start_method": start}}
    if args.ingest:
        print_table(*ingest_run(args.ingest, config), f"OpenRAG ingestion, {args.ingest} documents")
        return print_child_profiles(args.child_profile and profiles)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    import dagster as dg

    phases["import dagster"] = time.perf_counter() - t0
    t = time.perf_counter()
    from stepflow_dagster.defs.single import reconstructable_job
    from stepflow_dagster.flow import load_flow
    from stepflow_dagster.plan import plan_flow
    from stepflow_dagster.run_report import run_instance

    phases["import stepflow_dagster (no lfx)"] = time.perf_counter() - t
    t = time.perf_counter()
    plan_flow(load_flow(args.flow))
    phases["parse + plan"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="stepflow-profile-") as tmp:
        t = time.perf_counter()
        instance, storage = run_instance(tmp, verbose=False)
        phases["instance (temporary SQLite)"] = time.perf_counter() - t
        config["resources"] = {"langflow": {"config": {"input_value": args.input}}}
        t = time.perf_counter()
        with instance:
            result = dg.execute_job(
                reconstructable_job(str(args.flow), args.executor, storage),
                instance=instance,
                run_config=config,
            )
            phases[f"execute_job ({args.executor})"] = time.perf_counter() - t
            assert result.success
            records = instance.all_logs(result.run_id)
    print_table(records, phases, f"{args.flow.name}, executor {args.executor}")
    print(f"| wall, this process | {time.perf_counter() - t0:.2f} |")
    print_child_profiles(args.child_profile and profiles)


def print_child_profiles(folder: str | None) -> None:
    import pstats

    for path in sorted(Path(folder).glob("*.prof")) if folder else []:
        print(f"\n### step process {path.stem}")
        pstats.Stats(str(path)).sort_stats("cumulative").print_stats(30)


def ingest_run(n: int, config: dict) -> tuple[list, dict[str, float]]:
    """One batch run of the ingestion asset over ``n`` new documents, launched as the sensor does."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    sys.path.insert(0, str(ROOT / "bench"))
    from ingest_profile import make_docs

    tmp = Path(tempfile.mkdtemp(prefix="stepflow-ingest-profile-"))
    docs = make_docs(tmp / "drop", n, tag=f" {time.time()}")
    (tmp / "home").mkdir()
    (tmp / "home" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    os.environ.setdefault("OPENAI_API_KEY", "sk-local-embeddings-endpoint-checks-no-key")
    os.environ.update(
        STEPFLOW_DROP_DIR=str(tmp / "drop"), DAGSTER_HOME=str(tmp / "home"), OPENSEARCH_INDEX="profile"
    )
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_file(str(ROOT / "definitions.py"), "defs", str(ROOT))
    job = repo.get_reconstructable_job("opensearch_ingestion_flow_documents")
    phases: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        partitions = job.get_definition().partitions_def
        instance.add_dynamic_partitions(partitions.name, docs)
        t = time.perf_counter()
        tags = {ASSET_PARTITION_RANGE_START_TAG: docs[0], ASSET_PARTITION_RANGE_END_TAG: docs[-1]}
        result = dg.execute_job(job, instance=instance, tags=tags, run_config=config)
        phases["execute_job (default executor)"] = time.perf_counter() - t
        assert result.success
        return list(instance.all_logs(result.run_id)), phases


def print_table(records: list, phases: dict[str, float], title: str) -> None:
    by_step: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in records:
        kind = r.dagster_event.event_type_value if r.dagster_event else "LOG"
        if r.step_key:
            by_step[r.step_key].append((r.timestamp, kind))
    # A step a router skipped never starts (STEP_SKIPPED only): it has no phases.
    by_step = {s: ev for s, ev in by_step.items() if any(kind == "STEP_START" for _, kind in ev)}
    print(f"## {title}\n")
    columns = ("process", "setup", "component", "io", "exit")
    print("| step | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    totals = defaultdict(float)
    start = {s: min(ts for ts, kind in ev if kind == "STEP_START") for s, ev in by_step.items()}
    for step, events in sorted(by_step.items(), key=lambda kv: start[kv[0]]):
        first = {}
        for ts, kind in events:
            first.setdefault(kind, ts)
        begin = first.get("STEP_WORKER_STARTING", first["STEP_START"])
        started = first.get("STEP_WORKER_STARTED", begin)
        cells = {
            "process": started - begin,
            "setup": first["STEP_START"] - started,
            "component": first.get("STEP_OUTPUT", first["STEP_SUCCESS"]) - first["STEP_START"],
            "io": first["STEP_SUCCESS"] - first.get("STEP_OUTPUT", first["STEP_SUCCESS"]),
            "exit": max(ts for ts, _ in events) - first["STEP_SUCCESS"],
        }
        for k, v in cells.items():
            totals[k] += v
        print(f"| {step} | " + " | ".join(f"{v:.2f}" for v in cells.values()) + " |")
    print("| all steps | " + " | ".join(f"{totals[k]:.2f}" for k in columns) + " |")
    print("\n| run phase | seconds |\n|---|---:|")
    for name, seconds in phases.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()

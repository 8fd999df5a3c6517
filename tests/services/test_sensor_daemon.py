"""The document-drop sensor under the real `dagster-daemon`, on a real instance, with the project's default
executor (a process per step), into the real services: batches, each document exactly once.

100 documents are dropped at once: 97 notes in folders, two `report.md` in two folders, and one PDF that
Docling cannot convert. The daemon is killed in the middle and started again. Every good document ends up
in OpenSearch exactly once (counted per document path), in runs of at most N documents; the bad one is
reported failed by name and retried a bounded number of times; the same drop again starts nothing; a
changed document is replaced, a reverted one ingested again, a removed one's chunks are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from opensearchpy import OpenSearch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
N = 25  # documents per run (the deployment's max_documents_per_run)
ATTEMPTS = 2
KEY = dg.AssetKey(["opensearch", "documents"])
PARTITIONS = "opensearch_ingestion_flow_documents"
INGEST_JOB = "opensearch_ingestion_flow_documents"
BAD = "scans/broken.pdf"


def drop_documents(drop: Path) -> dict[str, str]:
    """The 100 documents: path in the drop location -> a word only that document's text holds."""
    words: dict[str, str] = {}
    for i in range(97):
        path = f"notes/{i % 5}/note_{i:02d}.md"
        words[path] = f"topic{i:02d}"
    words["a/report.md"] = "apples"
    words["b/report.md"] = "bananas"
    for rel, word in words.items():
        write(drop / rel, f"# Notes\n\nThis note is about {word}. It has one short paragraph.\n")
    (drop / BAD).parent.mkdir(parents=True, exist_ok=True)
    (drop / BAD).write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)  # a PDF header, then nothing readable
    return words


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def chunks_by_document(client: OpenSearch, index: str) -> dict[str, int]:
    client.indices.refresh(index=index)
    body = {"size": 0, "aggs": {"docs": {"terms": {"field": "filename", "size": 1000}}}}
    buckets = client.search(index=index, body=body)["aggregations"]["docs"]["buckets"]
    return {b["key"]: b["doc_count"] for b in buckets}


def texts(client: OpenSearch, index: str, document: str) -> list[str]:
    client.indices.refresh(index=index)
    body = {"query": {"term": {"filename": document}}, "size": 100}
    return [h["_source"]["text"] for h in client.search(index=index, body=body)["hits"]["hits"]]


class Daemon:
    def __init__(self, workspace: Path, env: dict[str, str], log: Path) -> None:
        self.workspace, self.env, self.log = workspace, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.groups: list[int] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(self.workspace)],
            env=self.env,
            cwd=self.workspace.parent,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.groups.append(self.proc.pid)

    def alive(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        return True

    def crash(self) -> None:
        """The daemon process dies (its runs' own processes go on, as they would on a real host)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        if self.proc is not None:
            self.proc.wait(timeout=60)


def ingest_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=INGEST_JOB)))


def run_documents(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    order = list(instance.get_dynamic_partitions(PARTITIONS))
    if "dagster/partition" in run.tags:
        return [run.tags["dagster/partition"]]
    first = order.index(run.tags[ASSET_PARTITION_RANGE_START_TAG])
    return order[first : order.index(run.tags[ASSET_PARTITION_RANGE_END_TAG]) + 1]


def settled(instance: dg.DagsterInstance) -> bool:
    """No run queued or in progress, of any job."""
    return all(r.is_finished for r in instance.get_runs())


def sensor_passes(instance: dg.DagsterInstance) -> int:
    states = [s for s in instance.all_instigator_state() if s.name.endswith("_document_drop")]
    ticks = (
        instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=1) if states else []
    )
    cursor = ticks[0].cursor if ticks and ticks[0].cursor else "{}"
    return int(json.loads(cursor).get("passes", 0))


def sensor_cursor(instance: dg.DagsterInstance) -> str:
    states = [s for s in instance.all_instigator_state() if s.name.endswith("_document_drop")]
    ticks = instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=1)
    return ticks[0].cursor or ""


def test_daemon_ingests_a_drop_in_batches_each_document_once(
    tmp_path: Path, opensearch_url: str, docling_url: str, embeddings_base_url: str
) -> None:
    home, flows, drop = tmp_path / "home", tmp_path / "flows", tmp_path / "drop"
    home.mkdir()
    flows.mkdir()
    (flows / "openrag_ingestion.json").write_bytes((ROOT / "flows/openrag_ingestion.json").read_bytes())
    deployment = yaml.safe_load((ROOT / "flows/openrag_ingestion.yaml").read_text())
    # Short ticks and pages of 40, so that one pass over the drop spans several ticks.
    deployment["documents"].update(
        minimum_interval_seconds=3, page_size=40, max_documents_per_run=N, max_attempts=ATTEMPTS
    )
    (flows / "openrag_ingestion.yaml").write_text(yaml.safe_dump(deployment))
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
    workspace = tmp_path / "workspace.yaml"
    location = {"relative_path": str(ROOT / "definitions.py"), "working_directory": str(ROOT)}
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_file": location}]}))
    index = "daemon_test"
    env = {k: v for k, v in os.environ.items() if k != "STEPFLOW_EXECUTOR"} | {
        "DAGSTER_HOME": str(home),
        "STEPFLOW_FLOWS_DIR": str(flows),
        "STEPFLOW_DROP_DIR": str(drop),
        "OPENSEARCH_URL": opensearch_url,
        "OPENSEARCH_INDEX": index,
        "DOCLING_URL": docling_url,
        "OPENAI_BASE_URL": embeddings_base_url,
        "OPENAI_API_KEY": "sk-local-stand-in-key-not-checked",
    }
    words = drop_documents(drop)
    daemon = Daemon(workspace, env, tmp_path / "daemon.log")
    client = OpenSearch(hosts=[opensearch_url])
    daemon.start()
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # Killed in the middle of the drop: a run is under way, others are queued or not yet asked.
            wait_for(
                lambda: daemon.alive() and any(r.status.value == "STARTED" for r in instance.get_runs()),
                600,
                "a first run",
            )
            daemon.crash()
            daemon.start()

            def done() -> bool:
                mats = instance.get_materialized_partitions(KEY)
                return daemon.alive() and len(mats) == len(words) and settled(instance)

            wait_for(done, 1800, "every good document materialized")
            # Exactly once each, under its own path: the two report.md are two documents.
            counts = chunks_by_document(client, index)
            assert counts == dict.fromkeys(words, 1)
            for rel, word in words.items():
                assert word in texts(client, index, rel)[0], rel
            runs = ingest_runs(instance)
            assert all(len(run_documents(instance, r)) <= N for r in runs)
            assert len(runs) < 15  # batches: far fewer runs than documents (retries included)
            # The bad document: failed, by name, node and cause; retried, ATTEMPTS runs in all. Its retry
            # can be launched after every good document is in, so wait for it before reading its status.
            wait_for(
                lambda: (
                    len([r for r in ingest_runs(instance) if BAD in run_documents(instance, r)]) >= ATTEMPTS
                    and settled(instance)
                ),
                300,
                "the bad document's retries",
            )
            status = instance.get_status_by_partition(
                KEY, [BAD, "a/report.md"], dg.DynamicPartitionsDefinition(name=PARTITIONS)
            )
            assert (
                status is not None
                and status[BAD].value == "FAILED"
                and status["a/report.md"].value == "MATERIALIZED"
            ), status
            tried = [r for r in ingest_runs(instance) if BAD in run_documents(instance, r)]
            assert len(tried) == ATTEMPTS and all(r.status.value == "FAILURE" for r in tried)
            failures = [
                e.dagster_event.step_failure_data.error.message
                for e in instance.all_logs(tried[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            ]
            # The export's Docling code returns nothing for a file it cannot convert: Export DoclingDocument
            # is the node that fails on it.
            docling_nodes = ("DoclingRemote-Dp3PX", "ExportDoclingDocument-zZdRg")
            assert any(BAD in m and any(n in m for n in docling_nodes) for m in failures), failures
            assert len(sensor_cursor(instance)) < 1000  # no list of every document seen

            # The same drop again (rewritten: new mtimes, same content) starts no run.
            before = len(instance.get_runs())
            drop_documents(drop)
            passes = sensor_passes(instance)
            wait_for(lambda: sensor_passes(instance) >= passes + 2, 300, "two more sensor passes")
            assert len(instance.get_runs()) == before

            # Changed (A -> B): replaced; changed back (B -> A): ingested again.
            doc = "notes/3/note_03.md"
            original = (drop / doc).read_text()
            for text, expected in (
                ("# Owls\n\nOwls fly without a sound.\n", "without a sound"),
                (original, words[doc]),
            ):
                runs_before = len(ingest_runs(instance))
                write(drop / doc, text)
                wait_for(
                    lambda n=runs_before: len(ingest_runs(instance)) > n and settled(instance),
                    300,
                    f"a run for {doc}",
                )
                assert [expected in t for t in texts(client, index, doc)] == [True]
                assert chunks_by_document(client, index) == dict.fromkeys(words, 1)

            # Removed: its chunks are deleted, its partition too; the others stay.
            (drop / "b/report.md").unlink()
            wait_for(
                lambda: (
                    "b/report.md" not in instance.get_dynamic_partitions(PARTITIONS) and settled(instance)
                ),
                300,
                "the removal",
            )
            assert chunks_by_document(client, index) == {k: 1 for k in words if k != "b/report.md"}
            removals = instance.get_runs(dg.RunsFilter(job_name="opensearch_ingestion_flow_removal"))
            assert [r.status.value for r in removals] == ["SUCCESS"]
    finally:
        daemon.stop()

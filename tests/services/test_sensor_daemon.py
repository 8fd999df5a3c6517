"""The document-drop sensor under the real Dagster daemon, on a real instance, into the real services."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from opensearchpy import OpenSearch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
DOCS = 20
TOPICS = [
    "lighthouses",
    "glaciers",
    "sourdough",
    "comets",
    "orchids",
    "bridges",
    "owls",
    "coral reefs",
    "violins",
    "deserts",
    "tea",
    "submarines",
    "mushrooms",
    "windmills",
    "penguins",
    "canals",
    "origami",
    "fireflies",
    "typewriters",
    "lanterns",
]


def write_docs(folder: Path, version: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, topic in enumerate(TOPICS[:DOCS]):
        text = f"# Notes on {topic}\n\nThis note {i} is about {topic}{version}. It has one short paragraph.\n"
        (folder / f"note_{i:02d}.md").write_text(text)


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_daemon_ingests_each_dropped_document_once(
    tmp_path: Path, opensearch_url: str, docling_url: str, embeddings_base_url: str
) -> None:
    home, flows, drop = tmp_path / "home", tmp_path / "flows", tmp_path / "drop"
    home.mkdir()
    flows.mkdir()
    shutil.copy(ROOT / "flows/openrag_ingestion.json", flows / "openrag_ingestion.json")
    deployment = yaml.safe_load((ROOT / "flows/openrag_ingestion.yaml").read_text())
    # Short ticks and small pages, so that one drop spans several ticks.
    deployment["documents"].update(minimum_interval_seconds=3, batch_size=8)
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
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_file": {
                            "relative_path": str(ROOT / "definitions.py"),
                            "working_directory": str(ROOT),
                        }
                    }
                ]
            }
        )
    )
    index = "daemon_test"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STEPFLOW_FLOWS_DIR": str(flows),
        "STEPFLOW_EXECUTOR": "in_process",
        "STEPFLOW_DROP_DIR": str(drop),
        "OPENSEARCH_URL": opensearch_url,
        "OPENSEARCH_INDEX": index,
        "DOCLING_URL": docling_url,
        "OPENAI_BASE_URL": embeddings_base_url,
        "OPENAI_API_KEY": "sk-local-stand-in-key-not-checked",
    }
    write_docs(drop)
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
        env=env,
        cwd=tmp_path,
        stdout=open(tmp_path / "daemon.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = OpenSearch(hosts=[opensearch_url])
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:

            def finished() -> list[dg.DagsterRun]:
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                return [r for r in instance.get_runs() if r.is_finished]

            wait_for(lambda: len(finished()) >= DOCS, 900, f"{DOCS} runs")
            runs = instance.get_runs()
            assert len(runs) == DOCS and all(r.is_success for r in runs), [
                (r.tags.get("stepflow/document"), r.status) for r in runs
            ]
            assert sorted(r.tags["dagster/partition"] for r in runs) == [
                f"note_{i:02d}.md" for i in range(DOCS)
            ]
            client.indices.refresh(index=index)
            for i in range(DOCS):
                hits = client.count(index=index, body={"query": {"term": {"filename": f"note_{i:02d}.md"}}})
                assert hits["count"] == 1, i

            # The same 20 dropped again (new files, same content): no run. Wait two full passes to be sure.
            shutil.rmtree(drop)
            write_docs(drop)
            passes = _sensor_passes(instance)
            wait_for(lambda: _sensor_passes(instance) >= passes + 2, 300, "two more sensor passes")
            assert len(instance.get_runs()) == DOCS

            # One changed document runs again and replaces its chunk.
            (drop / "note_07.md").write_text(
                "# Notes on owls\n\nOwls hunt at night and fly without a sound.\n"
            )
            wait_for(lambda: len(finished()) >= DOCS + 1, 300, "the changed document's run")
            latest = instance.get_runs(limit=1)[0]
            assert latest.is_success and latest.tags["dagster/partition"] == "note_07.md"
            client.indices.refresh(index=index)
            hits = client.search(index=index, body={"query": {"term": {"filename": "note_07.md"}}})["hits"]
            assert hits["total"]["value"] == 1 and "without a sound" in hits["hits"][0]["_source"]["text"]
            assert client.count(index=index)["count"] == DOCS
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)


def _sensor_passes(instance: dg.DagsterInstance) -> int:
    states = [s for s in instance.all_instigator_state() if s.name.endswith("_document_drop")]
    ticks = (
        instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=1) if states else []
    )
    cursor = ticks[0].cursor if ticks and ticks[0].cursor else "{}"
    return int(json.loads(cursor).get("passes", 0))

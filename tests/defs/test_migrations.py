"""Opening an instance checks its schema against the head of Dagster's migration scripts; that head is
read from a cache on disk instead of importing every script again in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

OPEN = """
import json, sys, tempfile
from alembic.script import ScriptDirectory
parses = []
original = ScriptDirectory.from_config.__func__
ScriptDirectory.from_config = classmethod(lambda cls, config: (parses.append(1), original(cls, config))[1])
from stepflow_dagster.run_report import run_instance
with tempfile.TemporaryDirectory() as tmp:
    instance, _ = run_instance(tmp)
    print(json.dumps({"parses": len(parses), "runs": len(instance.get_runs())}))
    instance.dispose()
"""


def open_instance(cache: Path) -> dict[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"XDG_CACHE_HOME": str(cache)}
    res = subprocess.run([sys.executable, "-c", OPEN], capture_output=True, text=True, cwd=ROOT, env=environ)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_the_scripts_are_parsed_once_then_their_head_is_read_from_the_cache(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from dagster._core.storage.sql import ALEMBIC_SCRIPTS_LOCATION

    config = Config()
    config.set_main_option("script_location", ALEMBIC_SCRIPTS_LOCATION)
    real_head = ScriptDirectory.from_config(config).as_revision_number("head")

    assert open_instance(tmp_path)["parses"] >= 1  # cold: parsed (and the instance template made)
    cache = tmp_path / "stepflow-dagster/alembic.json"
    assert list(json.loads(cache.read_text()).values()) == [real_head]
    assert open_instance(tmp_path) == {"parses": 0, "runs": 0}  # warm: not parsed at all

    # A cache made for other scripts (another Dagster) is not believed: parsed once for the instance's
    # three storages, and replaced.
    cache.write_text(json.dumps({ALEMBIC_SCRIPTS_LOCATION + ":0000": "not-the-head"}))
    assert open_instance(tmp_path) == {"parses": 1, "runs": 0}
    assert list(json.loads(cache.read_text()).values()) == [real_head]

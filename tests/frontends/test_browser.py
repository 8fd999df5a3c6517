"""The Dagster UI in a real browser (Debian's headless Chromium driven by Playwright) on our code location.

The OpenRAG ingestion flow's job shows one op per Langflow component, each with its display name, type
and node id; a run of hello_world launched from the launchpad with an input and a tweak succeeds.
Screenshots are kept under artifacts/ (gitignored).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepflow_dagster.defs.definitions import load_plans
from stepflow_dagster.defs.ops import preview
from stepflow_dagster.runtime import decode
from tests.conftest import ROOT
from tests.frontends.conftest import Stack

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "frontends"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_CONFIG = """resources:
  langflow:
    config:
      input_value: typed in the launchpad
      tweaks:
        ChatOutput-boh63:
          sender_name: Launchpad
"""


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        # A persistent context is how Playwright takes a --user-data-dir of our own (a new, empty one).
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def dismiss_onboarding(page: Any) -> None:
    """Dagster shows a one-time "Join the community" dialog to a new browser profile."""
    page.wait_for_timeout(1500)
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def test_the_openrag_job_shows_one_op_per_component_with_its_display_name(
    dagster_stack: Stack, page: Any
) -> None:
    plans = load_plans(sorted(dagster_stack.flows.glob("*.json")))
    plan = next(p for p in plans if Path(p.source).name == "openrag__ingestion_flow.json")
    assert len(plan.steps) == 13
    job_url = f"{dagster_stack.url}/locations/stepflow/jobs/{plan.name}"
    page.goto(job_url, wait_until="networkidle")
    dismiss_onboarding(page)
    for step in plan.steps:  # every component is a node of the graph, under its step name
        page.get_by_text(step.name, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "openrag_job_graph.png"))
    for step in plan.steps:  # selecting a node shows its op: display name (type), node id
        page.goto(f"{job_url}/{step.name}", wait_until="networkidle")
        page.get_by_text(f"{step.display_name} ({step.component_type}), node {step.node_id}").first.wait_for(
            timeout=30_000
        )
    page.screenshot(path=str(ARTIFACTS / "openrag_job_op.png"))


def test_a_launchpad_run_with_an_input_and_a_tweak_succeeds(dagster_stack: Stack, page: Any) -> None:
    page.goto(f"{dagster_stack.url}/locations/stepflow/jobs/hello_world/playground", wait_until="networkidle")
    dismiss_onboarding(page)
    editor = page.locator(".CodeMirror").first
    value = "document.querySelector('.CodeMirror').CodeMirror.getValue()"
    # The launchpad may still be filling in its default config ("{}") when the page settles: a paste made
    # before that is overwritten, so paste again until the editor holds it.
    for _ in range(10):
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(RUN_CONFIG)  # a paste: no auto-indent
        page.wait_for_timeout(500)
        if page.evaluate(value).strip() == RUN_CONFIG.strip():
            break
    assert page.evaluate(value).strip() == RUN_CONFIG.strip()
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/**", timeout=60_000)
    run_id = page.url.rstrip("/").split("/")[-1]
    page.get_by_text("RUN_SUCCESS", exact=True).first.wait_for(timeout=300_000)
    page.get_by_text("Success", exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "launchpad_run_success.png"))
    stored = json.loads(dagster_stack.storage(run_id, "ChatOutput_boh63", "message").read_text())
    assert preview(decode(stored)) == "typed in the launchpad"
    assert stored["data"]["sender_name"] == "Launchpad"  # the tweak reached the component

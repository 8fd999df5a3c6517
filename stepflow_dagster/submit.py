"""`stepflow-dagster submit`: launch a flow's job on a running Dagster webserver, by GraphQL.

The run goes through the instance's run coordinator (queued, then launched by the daemon), exactly like a
launch from the UI. Variables (secrets) are never sent: the step processes read them from their own
environment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
DEFAULT_URL = "http://127.0.0.1:3000"


def job_name(target: str) -> str:
    """A job name as given, or the job of a flow file named as `build_definitions` names it.

    Names are made unique over the flows of the file's own folder (as when that folder is the code
    location's STEPFLOW_FLOWS_DIR).
    """
    path = Path(target)
    if not (path.suffix == ".json" or path.is_file()):
        return target
    if not path.is_file():
        raise SystemExit(f"error: no flow file {target}")
    from .defs.definitions import load_plans
    from .defs.translator import LangflowTranslator

    path = path.resolve()
    folder = sorted(path.parent.glob("*.json"))
    plans = load_plans(folder if path in folder else [path])
    translator = LangflowTranslator()
    for plan in plans:
        if Path(plan.source).resolve() == path:
            return translator.get_job_name(plan)
    raise SystemExit(f"error: {target} is not among the flows of {path.parent}")  # pragma: no cover


def client_for(url: str, timeout: int = 60) -> Any:
    from dagster_graphql import DagsterGraphQLClient

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"error: --url takes http(s)://HOST[:PORT][/PREFIX], not {url!r}")
    return DagsterGraphQLClient(
        parts.hostname,
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/") or "",
        timeout=timeout,
    )


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.input is not None:
        config["input_value"] = args.input
    if args.file:
        config["files"] = list(args.file)  # paths as the step processes see them
    if args.tweaks:
        raw = (
            Path(args.tweaks[1:]).read_text(encoding="utf-8") if args.tweaks.startswith("@") else args.tweaks
        )
        tweaks = json.loads(raw)
        if not isinstance(tweaks, dict):
            raise SystemExit("error: --tweaks takes a JSON object {node id or display name: {field: value}}")
        config["tweaks"] = tweaks
    return {"resources": {"langflow": {"config": config}}}


def tags(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --tag takes KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def wait(client: Any, run_id: str, timeout: float, poll: float = 1.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_run_status(run_id).value
        if status in TERMINAL:
            return str(status)
        if time.monotonic() > deadline:
            return str(status)
        time.sleep(poll)


def _refuse_secrets(target: str, config: dict[str, Any]) -> None:
    """For a flow file: a secret in a tweak is refused here, before the server stores the run's config
    (a job given by name is checked by its ops only, once the config is stored)."""
    path = Path(target)
    if not path.is_file():
        return
    from .defs.deployment import load_deployment
    from .defs.secret_config import refuse_secrets
    from .flow import load_flow
    from .plan import plan_flow

    plan = plan_flow(load_flow(path))
    tweaks = config["resources"]["langflow"]["config"].get("tweaks", {})
    refuse_secrets(plan, load_deployment(path, plan.flow), {}, tweaks)


def cmd_submit(args: argparse.Namespace) -> int:
    from dagster_graphql import DagsterGraphQLClientError

    name = job_name(args.target)
    config = run_config(args)
    _refuse_secrets(args.target, config)
    client = client_for(args.url)
    try:
        run_id = client.submit_job_execution(
            name,
            repository_location_name=args.location,
            repository_name=args.repository,
            run_config=config,
            tags=tags(args.tag),
        )
    except DagsterGraphQLClientError as exc:
        print(f"error: submitting {name} to {args.url}: {exc}", file=sys.stderr)
        return 2
    status = "QUEUED"
    if args.wait:
        status = wait(client, run_id, args.timeout)
    if args.json:
        print(json.dumps({"run_id": run_id, "job": name, "status": status}))
    else:
        print(f"{run_id} {status}")
    if not args.wait:
        return 0
    return 0 if status == "SUCCESS" else 1


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "submit", help="launch a flow's job on a running Dagster webserver (GraphQL)"
    )
    p.add_argument("target", metavar="FLOW_OR_JOB", help="a job name, or a flow file (mapped to its job)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the webserver (default {DEFAULT_URL})")
    p.add_argument("--input", help="the message for the flow's Chat Input or Text Input")
    p.add_argument(
        "--file", action="append", default=[], help="a file for the flow's file component (repeatable)"
    )
    p.add_argument("--tweaks", help="JSON (or @file.json): {node id or display name: {field: value}}")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a run tag (repeatable)")
    p.add_argument("--location", help="code location name (when several hold the job)")
    p.add_argument("--repository", help="repository name (when several hold the job)")
    p.add_argument("--wait", action="store_true", help="wait for the run to end; exit 1 unless it succeeds")
    p.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most (default 3600)")
    p.add_argument("--json", action="store_true", help="print {run_id, job, status} as JSON")
    p.set_defaults(func=cmd_submit)
    return p

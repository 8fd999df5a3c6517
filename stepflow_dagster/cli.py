"""`stepflow-dagster`: analyze, convert and run Langflow flows on Dagster."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import parity, submit
from .flow import Analysis, FlowError, analyze, load_flow
from .flow.analysis import CodeNeedingTrust
from .plan import dump_plan, plan_flow


def _render(analysis: Analysis) -> str:
    a = analysis
    lines = [
        f"flow: {a.flow}",
        f"exported with Langflow: {a.langflow_version or 'unknown'}",
        f"components: {a.node_count}, edges: {a.edge_count}",
    ]
    lines += [f"  {count:3d} x {ctype}" for ctype, count in a.components.items()]
    lines.append("edges (value type; * = live object, rebuilt by the consumer):")
    for e in a.edges:
        mark = "*" if e.live else " "
        loop = "  [loop feedback]" if e.loop_feedback else ""
        lines.append(f" {mark} {e.source}.{e.output} -> {e.target}.{e.field}: {e.value_type}{loop}")
    if a.loops:
        lines.append("loops (each runs as one step with its body):")
        lines += [f"  {loop.node}: body {', '.join(loop.body) or '(empty)'}" for loop in a.loops]
    if a.routers:
        lines.append("routers (the branch not taken is skipped): " + ", ".join(a.routers))
    lines.append("variables (resolved at run time from run config, then the environment):")
    lines += [f"  {v.variable:<28} {v.node}.{v.field}" for v in a.variables] or ["  (none)"]
    if a.empty_credentials:
        lines.append(
            "credentials empty in the export (needed at run time: the deployment file's "
            'run.tweaks.<node>.<field>: "${ENV_VAR}" fills one in the step\'s process):'
        )
        lines += [
            f"  {c.node}.{c.field} ({c.display_name})"
            + ("  [hidden in the export: needed once its option is chosen]" if c.hidden else "")
            for c in a.empty_credentials
        ]
    lines.append("inputs:  " + (", ".join(f"{i.node} ({i.kind})" for i in a.inputs) or "(none)"))
    lines.append("outputs: " + (", ".join(o.node for o in a.outputs) or "(none)"))
    if a.code_trust:
        lines.append(
            "code that is not stock (runs only if the deployment file trusts it: run.trust.nodes, "
            "run.trust.code_sha256 or run.trust.all):"
        )
        lines += [
            f"  {t.node} ({t.display_name}): {t.reason}; sha256 {t.sha256}"
            + ("  [trusted]" if t.trusted else "  [NOT TRUSTED: refused]")
            for t in a.code_trust
        ]
    else:
        lines.append("code: stock components only (no trust needed)")
    if a.code_policy:
        lines.append("component code (runtime policy):")
        lines += [f"  {node}: {effect}" for node, effect in a.code_policy.items()]
    lines += [f"warning: {w.message}" for w in a.warnings]
    lines += [f"warning: node {node!r} {why}" for node, why in a.code_warnings.items()]
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    flow = load_flow(args.flow)
    analysis = analyze(flow)
    analysis.code_trust = _code_trust(flow, Path(args.flow), args.code_policy or "upgrade-stock")
    if args.code_policy:
        from .runtime import decide_code

        decisions = {n.id: decide_code(n.data, args.code_policy) for n in flow.nodes.values()}
        analysis.code_policy = {node: d.description for node, d in decisions.items()}
        analysis.code_warnings = {node: d.warning for node, d in decisions.items() if d.warning}
    print(json.dumps(analysis.to_dict(), indent=2) if args.json else _render(analysis))
    return 0


def _code_trust(flow: Any, path: Path, policy: str) -> list[CodeNeedingTrust]:
    """Nodes that need the deployment's trust (reads lfx's component index, imports no component)."""
    from .defs.deployment import load_deployment
    from .runtime.trust import classify

    trust = load_deployment(path, flow.name).run.trust.policy()
    found = []
    for node in flow.nodes.values():
        status = classify(node.id, node.data, policy)
        if not status.stock:
            trusted = trust.trusts(node.id, status.sha256)
            found.append(
                CodeNeedingTrust(node.id, status.display_name, status.reason, status.sha256, trusted)
            )
    return found


def _write_atomic(path: Path, text: str) -> None:
    """Write all or nothing: a failed convert leaves no partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_convert(args: argparse.Namespace) -> int:
    plan = plan_flow(load_flow(args.flow), keep_credentials=args.keep_credentials)
    text = dump_plan(plan)
    for var in plan.variables:
        if var.origin == "credential":
            print(
                f"note: literal credential in {var.node}.{var.field} replaced by variable {var.name}",
                file=sys.stderr,
            )
    if args.out:
        _write_atomic(Path(args.out), text)
        print(f"wrote {args.out}: {len(plan.steps)} steps", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _tweaks(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    tweaks = json.loads(raw)
    if not isinstance(tweaks, dict):
        raise SystemExit("error: --tweaks takes a JSON object {node id or display name: {field: value}}")
    return tweaks


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"tweaks": _tweaks(args.tweaks)}
    if args.input is not None:
        config["input_value"] = args.input
    if args.file:
        config["files"] = [str(Path(f).resolve()) for f in args.file]
    policies = {}
    for item in args.code_policy:
        node, sep, policy = item.rpartition("=")
        policies[node if sep else "*"] = policy
    if policies:
        config["code_policy"] = policies
    # Without -v the event log stays quiet (a failure prints its own summary; warnings still show).
    level = "DEBUG" if getattr(args, "verbose", False) else "CRITICAL"
    return {
        "resources": {"langflow": {"config": config}},
        "loggers": {"console": {"config": {"log_level": level}}},
    }


def cmd_run(args: argparse.Namespace) -> int:
    plan = plan_flow(load_flow(args.flow))  # a bad flow fails here, before anything runs
    from .defs.deployment import load_deployment
    from .defs.forkserver import DEFAULT_EXECUTOR
    from .defs.secret_config import refuse_secrets
    from .runtime.code_policy import default_code_policies
    from .runtime.trust import refuse_untrusted

    config = run_config(args)
    deployment = load_deployment(Path(args.flow), plan.flow)
    # Before anything is launched (Dagster would store the run config): a secret in a tweak is refused,
    # and so is code the deployment file does not trust.
    refuse_secrets(plan, deployment, {}, config["resources"]["langflow"]["config"]["tweaks"])
    policies = {
        **default_code_policies(),
        **deployment.run.code_policy,
        **config["resources"]["langflow"]["config"].get("code_policy", {}),
    }
    refuse_untrusted(plan, deployment.run.trust.policy(), policies)
    for item in args.var:
        # Variables reach the step processes through their environment, never through run config.
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --var takes NAME=VALUE, not {item!r}")
        os.environ[name] = value
    executor = "in_process" if args.in_process else os.environ.get("STEPFLOW_EXECUTOR", DEFAULT_EXECUTOR)
    if executor == DEFAULT_EXECUTOR:
        # Before Dagster is imported here: the server's imports and warm-up (seconds) run beside this
        # process's own until the first step.
        from .defs.forkserver import start_warm_forkserver, warm_environment, warm_targets_for_flow

        start_warm_forkserver(warm_environment(warm_targets_for_flow(Path(args.flow), plan, deployment)))
    import dagster as dg

    from .defs.ops import PREVIEW_CHARS, preview
    from .defs.single import reconstructable_job
    from .run_report import failure_lines, run_instance
    from .runtime import decode

    with tempfile.TemporaryDirectory(prefix="stepflow-run-") as tmp:
        instance, storage = run_instance(tmp, verbose=args.verbose)
        with (
            instance,
            dg.execute_job(
                reconstructable_job(args.flow, executor, storage),
                instance=instance,
                run_config=config,
                raise_on_error=False,
            ) as result,
        ):
            print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}", file=sys.stderr)
            if storage is not None:  # a temporary instance has no daemon to emit the run's span
                from . import telemetry

                telemetry.emit_run_span_for(instance, result.run_id)
            if not result.success:
                for line in failure_lines(result, plan, verbose=args.verbose):
                    print(line, file=sys.stderr)
                return 1
            outputs = {}
            # Each flow output's step recorded its preview: whole when shorter than the preview's
            # limit, and then printed from there, without importing lfx here to decode the value.
            previews: dict[tuple[str | None, str], str | None] = {}
            for event in result.all_events:
                if event.event_type_value == "STEP_OUTPUT":
                    data = event.step_output_data
                    recorded = data.metadata.get("flow_output")
                    text = recorded.value if isinstance(recorded, dg.TextMetadataValue) else None
                    previews[(event.step_key, data.output_name)] = text
            for end in plan.outputs:
                if (end.step, end.field) not in previews:  # a router's branch not taken
                    continue
                text = previews[(end.step, end.field)]
                if text is None or len(text) >= PREVIEW_CHARS:
                    text = preview(decode(result.output_for_node(end.step, end.field)), limit=1_000_000)
                outputs[end.node] = text
    if args.json:
        print(json.dumps(outputs, indent=2, ensure_ascii=False))
    else:
        for node, text in outputs.items():
            if len(outputs) > 1:
                print(f"== {node}")
            print(text)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest every document of a folder with an ingestion flow: batch runs of the flow's asset, in this
    process, one partition per document (its path in the folder)."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from .defs import LangflowTranslator, StepflowSettings, build_definitions
    from .defs.assets import list_documents
    from .defs.deployment import load_deployment
    from .run_report import failure_lines

    flow = Path(args.flow)
    plan = plan_flow(load_flow(flow))
    docs = load_deployment(flow, plan.flow).documents
    if docs is None:
        raise SystemExit(f"error: flow {plan.flow!r} has no documents section in {flow.with_suffix('.yaml')}")
    folder = Path(args.folder).resolve()
    os.environ["STEPFLOW_DROP_DIR"] = str(folder)  # the deployment's location, read in the step processes
    size = args.batch or docs.max_documents_per_run
    with tempfile.TemporaryDirectory(prefix="stepflow-ingest-") as tmp:
        flows = Path(tmp) / "flows"
        flows.mkdir()
        for path in (flow, flow.with_suffix(".yaml")):
            if path.exists():
                (flows / path.name).write_bytes(path.read_bytes())
        storage = None if os.environ.get("DAGSTER_HOME") else str(Path(tmp) / "storage")
        # One process for every run: lfx is imported once (the daemon's sensor runs use the executor).
        defs = build_definitions(StepflowSettings(flows_dir=flows, executor="in_process", storage=storage))
        job = defs.resolve_job_def(LangflowTranslator().get_asset_job_name(plan))
        partitions = job.partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name
        documents = [rel for rel, _ in list_documents(str(folder))]
        home = os.environ.get("DAGSTER_HOME")
        instance = dg.DagsterInstance.get() if home else dg.DagsterInstance.local_temp(tmp)
        failed = 0
        with instance:
            known = set(instance.get_dynamic_partitions(partitions.name))
            instance.add_dynamic_partitions(partitions.name, [d for d in documents if d not in known])
            order = [d for d in instance.get_dynamic_partitions(partitions.name) if d in set(documents)]
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                result = job.execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: batch[0],
                        ASSET_PARTITION_RANGE_END_TAG: batch[-1],
                    },
                    run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                )
                done = {}
                for event in result.get_asset_materialization_events():
                    mat = event.materialization
                    done[mat.partition] = mat.metadata["dagster/row_count"].value
                for doc in batch:
                    if doc in done:
                        print(f"{doc}: ingested, chunks: {done[doc]}")
                    else:
                        failed += 1
                        print(f"{doc}: FAILED")
                if not result.success:
                    for line in failure_lines(result, plan, hint=False):
                        print(line, file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepflow-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="what a person deploying the flow must know")
    p.add_argument("flow", help="a Langflow JSON export")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument(
        "--code-policy",
        nargs="?",
        const="upgrade-stock",
        default=None,
        metavar="POLICY",
        help="also report what the runtime does with each component's code (imports lfx)",
    )
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("convert", help="write the flow's plan as YAML")
    p.add_argument("flow", help="a Langflow JSON export")
    p.add_argument("out", nargs="?", help="output file (default: stdout)")
    p.add_argument(
        "--keep-credentials",
        action="store_true",
        help="keep literal credentials in the plan instead of replacing them by variables",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("run", help="run a flow as a Dagster job and print its outputs")
    p.add_argument("flow", help="a Langflow JSON export")
    p.add_argument("--input", help="the message for the flow's Chat Input or Text Input")
    p.add_argument(
        "--file", action="append", default=[], help="a file for the flow's file component (repeatable)"
    )
    p.add_argument("--tweaks", help="JSON (or @file.json): {node id or display name: {field: value}}")
    p.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="a variable, passed by environment"
    )
    p.add_argument(
        "--code-policy",
        action="append",
        default=[],
        metavar="[NODE=]POLICY",
        help="upgrade-stock (default), upgrade or frozen; for one node (id or display name) or all",
    )
    p.add_argument("--in-process", action="store_true", help="run every step in this process (fastest)")
    p.add_argument("--json", action="store_true", help="print the outputs as one JSON object by node id")
    p.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "ingest", help="ingest every document of a folder with an ingestion flow, in this process"
    )
    p.add_argument("folder", help="the documents")
    p.add_argument(
        "--flow", default="flows/openrag_ingestion.json", help="the ingestion flow (with its .yaml)"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="documents per run (default: the deployment's max_documents_per_run)",
    )
    p.set_defaults(func=cmd_ingest)

    submit.add_parser(sub)
    parity.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: Any = args.func(args)
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

"""`stepflow-dagster`: analyze, convert and run Langflow flows on Dagster."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .flow import Analysis, FlowError, analyze, load_flow
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
    lines.append("inputs:  " + (", ".join(f"{i.node} ({i.kind})" for i in a.inputs) or "(none)"))
    lines.append("outputs: " + (", ".join(o.node for o in a.outputs) or "(none)"))
    if a.code_policy:
        lines.append("component code (runtime policy):")
        lines += [f"  {node}: {effect}" for node, effect in a.code_policy.items()]
    lines += [f"warning: {w.message}" for w in a.warnings]
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    flow = load_flow(args.flow)
    analysis = analyze(flow)
    if args.code_policy:
        from .runtime.policy import describe_code_policy

        analysis.code_policy = {
            n.id: describe_code_policy(n.data, args.code_policy) for n in flow.nodes.values()
        }
    print(json.dumps(analysis.to_dict(), indent=2) if args.json else _render(analysis))
    return 0


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

"""`stepflow-dagster parity FLOW`: run a flow through `lfx run` and through our Dagster job, with the same
inputs, tweaks and variables, and say where the two differ.

What lfx exposes is what is compared: `lfx run --format json --timing` prints the flow's result (the text
of its first Chat Output), the components that ran, or the error that stopped it. Our run gives the same
for its steps. So a report has one row for the result, one row per component (ran / failed / not run),
and, when a run failed, one row for where and why (node and cause).

Both sides get the same tweaks: the run's inputs become tweaks of the flow's input components, as our
run config does (`LangflowRun.all_tweaks`), and lfx's own `process_tweaks` applies them to a copy of the
export (`lfx run` takes no tweaks; the export on disk is never edited). Variables reach both through the
environment. lfx gets `LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS=false`, as our runtime lets a node read the
absolute paths a run gives it. Code: lfx runs the export's code; ours runs what the code policy decides
(installed code for stock components that still read the export's fields alike): parity tells whether
that changed anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .flow import load_flow
from .plan import FlowPlan, plan_flow
from .plan.model import Step

# Ran, and the two runs agree on it; "not run": the run stopped before it, or a router skipped it.
RAN, FAILED, NOT_RUN, SKIPPED = "ran", "failed", "not run", "skipped"
IN_LOOP = "in its loop"  # lfx lists a loop's vertex, not the body's: they ran when the loop ran
CHAT_OUTPUT = "Chat Output"  # lfx run's result: the first Chat Output's text (extract_structured_result)


@dataclass(frozen=True)
class ParityInputs:
    """What both runs take: the message, tweaks by node id or display name, variables by name."""

    input_value: str | None = None
    tweaks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    # Our run's code policies by node id or display name ("*": all), as `run --code-policy` takes them.
    code_policy: Mapping[str, str] = field(default_factory=dict)
    # Hand lfx the code our run runs (the policy applied to its copy): compares execution alone.
    same_code: bool = False


@dataclass(frozen=True)
class Failure:
    node: str  # node id; "" when the side does not say
    cause: str


@dataclass
class SideResult:
    """One side's run: each node's status, the result text (None: no Chat Output ran), its failure."""

    name: str
    status: dict[str, str]
    result: str | None = None
    result_node: str | None = None
    failure: Failure | None = None
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)  # ours only: every flow output by node id
    detail: str = ""  # what the side printed when it failed (lfx) or the run id (ours)


@dataclass(frozen=True)
class Row:
    what: str
    lfx: str
    ours: str
    same: bool


@dataclass
class ParityReport:
    flow: str
    lfx: SideResult
    ours: SideResult
    rows: list[Row]

    @property
    def same(self) -> bool:
        return all(r.same for r in self.rows)

    def differences(self) -> list[Row]:
        return [r for r in self.rows if not r.same]


# --------------------------------------------------------------------------- inputs


def run_tweaks(flow: Path, plan: FlowPlan, inputs: ParityInputs) -> dict[str, dict[str, Any]]:
    """The tweaks both sides run with: the deployment file's, the inputs' (as our run config makes them),
    the user's."""
    from .defs.deployment import expand_env, load_deployment
    from .defs.resources import LangflowRun

    run = LangflowRun(input_value=inputs.input_value, tweaks={k: dict(v) for k, v in inputs.tweaks.items()})
    tweaks: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in load_deployment(flow, plan.flow).run.tweaks.items()
    }
    for key, fields in run.all_tweaks(plan).items():
        tweaks.setdefault(key, {}).update(fields)
    with variables_in_environment(inputs.variables):
        return dict(expand_env(tweaks))


def code_policies(flow: Path, plan: FlowPlan, inputs: ParityInputs) -> dict[str, str]:
    """The policies our run applies: the default, the deployment file's, the run's (op order)."""
    from .defs.deployment import load_deployment

    default = os.environ.get("STEPFLOW_CODE_POLICY", "upgrade-stock")
    deployment = load_deployment(flow, plan.flow).run.code_policy
    return {"*": default, **deployment, **inputs.code_policy}


@contextmanager
def variables_in_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Variables reach lfx and our step processes through the environment (never run config)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- lfx run


def lfx_command(input_value: str | None) -> list[str]:
    # Without lfx's preflight of packages: a missing package then fails at the node that imports it, as
    # it does in our job, so the two failures compare node by node.
    args = [sys.executable, "-m", "lfx", "run", "--stdin", "--format", "json", "--timing"]
    args.append("--no-check-dependencies")
    return args + (["--input-value", input_value] if input_value is not None else [])


def lfx_flow_json(
    flow: Path, tweaks: Mapping[str, Mapping[str, Any]], code_policy: Mapping[str, str] | None = None
) -> str:
    """The export with the tweaks applied by lfx's own `process_tweaks` (a copy: the file is untouched),
    and with ``code_policy`` the code our runtime would run written into each node."""
    from lfx.processing.process import process_tweaks

    doc = json.loads(flow.read_text(encoding="utf-8"))
    if code_policy is not None:
        from .runtime.code_policy import apply_code_policy
        from .runtime.component import display_name, policy_for

        for node in doc["data"]["nodes"]:
            data = node.get("data") or {}
            if node.get("type") == "genericNode" and data.get("node"):
                apply_code_policy(data, policy_for(code_policy, str(data.get("id")), display_name(data)))
    process_tweaks(doc["data"], {k: dict(v) for k, v in tweaks.items()})
    return json.dumps(doc)


def lfx_env(variables: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **variables, "LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS": "false"}


class LfxRun:
    """`lfx run` on the flow in its own process, started now; ``result()`` waits for it. Several can run
    side by side (and beside our job): each is its own process."""

    def __init__(self, flow: Path, plan: FlowPlan, inputs: ParityInputs, timeout: float = 600) -> None:
        self.plan = plan
        tweaks = run_tweaks(flow, plan, inputs)
        policy = code_policies(flow, plan, inputs) if inputs.same_code else None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter running lfx)
            lfx_command(inputs.input_value),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=lfx_env(inputs.variables),
        )
        self._out: tuple[str, str] = ("", "")
        self._seconds = 0.0
        # The flow goes in on stdin: an export is often larger than one argument may be (128 KiB).
        self._thread = threading.Thread(
            target=self._talk, args=(lfx_flow_json(flow, tweaks, policy), timeout)
        )
        self._thread.start()

    def _talk(self, flow_json: str, timeout: float) -> None:
        try:
            self._out = self.proc.communicate(flow_json, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self._out = (out, err + f"\nlfx run: killed after {timeout:.0f} s")
        self._seconds = time.monotonic() - self.started

    def kill(self) -> None:
        self.proc.kill()
        self._thread.join()

    def result(self) -> SideResult:
        self._thread.join()
        return parse_lfx_output(self.plan, *self._out, self._seconds)


def run_lfx(flow: Path, plan: FlowPlan, inputs: ParityInputs, timeout: float = 600) -> SideResult:
    return LfxRun(flow, plan, inputs, timeout).result()


_LFX_BUILD_ERROR = re.compile(r"Error building Component (?P<name>.+?):\s*(?P<cause>.*)", re.DOTALL)


def parse_lfx_output(plan: FlowPlan, stdout: str, stderr: str, seconds: float) -> SideResult:
    """`lfx run --format json --timing`'s last JSON line: the result and the components that ran, or
    the error (lfx names the failing component by display name: "Error building Component X: cause")."""
    doc: dict[str, Any] | None = None
    for line in reversed(stdout.strip().splitlines()):
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            doc = parsed
            break
    status = {node: NOT_RUN for node in node_ids(plan)}
    side = SideResult("lfx run", status, seconds=seconds)
    if doc is None:
        side.failure = Failure("", f"lfx run printed no result (exit): {(stderr or stdout).strip()[-500:]}")
        side.detail = stderr[-4000:]
        return side
    if doc.get("type") == "error" and "exception_message" in doc:
        message = str(doc.get("exception_message", "")).strip()
        message = message.removeprefix("Failed to execute graph:").strip()
        node, cause = "", message
        found = _LFX_BUILD_ERROR.search(message)
        if found:
            cause = found["cause"].strip()
            node = _node_by_name(plan, found["name"].strip())
        if node:
            status[node] = FAILED
        side.failure = Failure(node, cause)
        side.detail = stderr[-4000:]
        return side
    for timing in (doc.get("timing") or {}).get("component_timings", []):
        if timing.get("component_id") in status:
            status[timing["component_id"]] = RAN
    for step in plan.steps:
        if len(step.components) > 1 and status.get(step.node_id) == RAN:
            for node, _ in _step_nodes(step):
                if status[node] == NOT_RUN:
                    status[node] = IN_LOOP
    if doc.get("success") and "result" in doc:
        side.result, side.result_node = str(doc["result"]), doc.get("component_id")
    return side


def _node_by_name(plan: FlowPlan, name: str) -> str:
    """The node lfx names by display name (or id): the first of that name in plan order."""
    for step in plan.steps:
        for node, display in _step_nodes(step):
            if name in (display, node):
                return node
    return ""


# --------------------------------------------------------------------------- our Dagster job


def node_ids(plan: FlowPlan) -> list[str]:
    return [node for step in plan.steps for node, _ in _step_nodes(step)]


def _step_nodes(step: Step) -> list[tuple[str, str]]:
    """A step's nodes with their display names: one, or a loop and its body (one step)."""
    return [(c.node_id, c.display_name) for c in step.components] or [(step.node_id, step.display_name)]


def run_dagster(flow: Path, plan: FlowPlan, inputs: ParityInputs, executor: str | None = None) -> SideResult:
    """The flow as our Dagster job (the default executor unless told), on the `$DAGSTER_HOME` instance or a
    temporary one, as `stepflow-dagster run` runs it."""
    import dagster as dg

    from .defs import StepflowSettings
    from .defs.deployment import load_deployment
    from .defs.ops import preview
    from .defs.secret_config import refuse_secrets
    from .defs.single import reconstructable_job
    from .run_report import failures, run_instance
    from .runtime import decode

    config: dict[str, Any] = {"tweaks": {k: dict(v) for k, v in inputs.tweaks.items()}}
    if inputs.input_value is not None:
        config["input_value"] = inputs.input_value
    if inputs.code_policy:
        config["code_policy"] = dict(inputs.code_policy)
    refuse_secrets(plan, load_deployment(flow, plan.flow), {}, config["tweaks"])
    executor = executor or os.environ.get("STEPFLOW_EXECUTOR", StepflowSettings.executor)
    run_config = {
        "resources": {"langflow": {"config": config}},
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    status = {node: NOT_RUN for node in node_ids(plan)}
    side = SideResult("dagster", status)
    started = time.monotonic()
    with (
        variables_in_environment(inputs.variables),
        tempfile.TemporaryDirectory(prefix="stepflow-parity-") as tmp,
    ):
        instance, storage = run_instance(tmp)
        with (
            instance,
            dg.execute_job(
                reconstructable_job(str(flow), executor, storage),
                instance=instance,
                run_config=run_config,
                raise_on_error=False,
            ) as result,
        ):
            side.detail = result.run_id
            for event in result.all_events:
                if not event.step_key or not (
                    event.is_step_success or event.is_step_failure or event.is_step_skipped
                ):
                    continue
                step = plan.step(str(event.step_key).rsplit(".", 1)[-1])
                mark = RAN if event.is_step_success else FAILED if event.is_step_failure else SKIPPED
                for node, _ in _step_nodes(step):
                    status[node] = mark
            for failed in failures(result, plan):
                side.failure = side.failure or Failure(failed.node_id, failed.cause)
            produced = {e.step_key for e in result.all_events if e.event_type_value == "STEP_OUTPUT"}
            for end in plan.outputs:
                if end.step in produced and status.get(end.node) == RAN:
                    value = decode(result.output_for_node(end.step, end.field))
                    side.outputs[end.node] = preview(value, limit=1_000_000)
    side.seconds = time.monotonic() - started
    side.result_node = next(
        (
            node
            for step in plan.steps
            for node, name in _step_nodes(step)
            if name == CHAT_OUTPUT and node in side.outputs
        ),
        None,
    )
    if side.result_node is not None:
        side.result = side.outputs[side.result_node]
    return side


# --------------------------------------------------------------------------- comparing


def _cause_text(cause: str) -> str:
    """A cause without its exception type ("NameError: x" -> "x") and with whitespace collapsed."""
    cause = " ".join(cause.split())
    return re.sub(r"^[\w.]*(?:Error|Exception)\b:\s*", "", cause)


def same_cause(a: str, b: str) -> bool:
    a, b = _cause_text(a), _cause_text(b)
    return bool(a and b) and (a in b or b in a)


def compare(flow: str, plan: FlowPlan, lfx: SideResult, ours: SideResult) -> ParityReport:
    rows: list[Row] = []
    lfx_result = "(none)" if lfx.result is None else lfx.result
    ours_result = "(none)" if ours.result is None else ours.result
    where = lfx.result_node or ours.result_node or CHAT_OUTPUT
    rows.append(Row(f"result ({where})", lfx_result, ours_result, lfx.result == ours.result))
    if lfx.failure or ours.failure:
        a = f"{lfx.failure.node or '?'}: {lfx.failure.cause}" if lfx.failure else "(none)"
        b = f"{ours.failure.node}: {ours.failure.cause}" if ours.failure else "(none)"
        same = bool(
            lfx.failure
            and ours.failure
            and (not lfx.failure.node or lfx.failure.node == ours.failure.node)
            and same_cause(lfx.failure.cause, ours.failure.cause)
        )
        rows.append(Row("failure", a, b, same))
    for node in node_ids(plan):
        a, b = lfx.status.get(node, NOT_RUN), ours.status.get(node, NOT_RUN)
        # After a failure lfx prints no list of what ran: only the failing node is known.
        known = not lfx.failure or a == FAILED
        alike = a == b or {a, b} in ({NOT_RUN, SKIPPED}, {IN_LOOP, RAN})
        rows.append(Row(node, a if known else "?", b, alike or not known))
    return ParityReport(flow, lfx, ours, rows)


def run_parity(
    flow: Path, inputs: ParityInputs, executor: str | None = None, timeout: float = 600
) -> ParityReport:
    """Both runs of one flow: lfx in its own process while our job runs here."""
    plan = plan_flow(load_flow(flow))
    lfx = LfxRun(flow, plan, inputs, timeout)
    try:
        ours = run_dagster(flow, plan, inputs, executor)
    except BaseException:
        lfx.kill()
        raise
    return compare(plan.flow, plan, lfx.result(), ours)


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def render(report: ParityReport, width: int = 36) -> str:
    name = max([len(r.what) for r in report.rows] + [9])
    lines = [
        f"parity: {report.flow} (lfx run {report.lfx.seconds:.1f} s, dagster {report.ours.seconds:.1f} s)",
        f"  {'':<{name}}  {'lfx run':<{width}}  {'dagster':<{width}}",
    ]
    for row in report.rows:
        mark = "same" if row.same else "DIFFERENT"
        a, b = _cell(row.lfx, width), _cell(row.ours, width)
        lines.append(f"  {row.what:<{name}}  {a:<{width}}  {b:<{width}}  {mark}")
    for row in report.rows:
        if (not row.same or row.what == "failure") and (len(row.lfx) > width or len(row.ours) > width):
            lines += [f"  {row.what}:", f"    lfx run: {row.lfx[:2000]}", f"    dagster: {row.ours[:2000]}"]
    differ = len(report.differences())
    lines.append("parity: same" if report.same else f"parity: {differ} row(s) differ")
    return "\n".join(lines)


def to_dict(report: ParityReport) -> dict[str, Any]:
    return {
        "flow": report.flow,
        "same": report.same,
        "seconds": {"lfx": round(report.lfx.seconds, 2), "dagster": round(report.ours.seconds, 2)},
        "rows": [{"what": r.what, "lfx": r.lfx, "dagster": r.ours, "same": r.same} for r in report.rows],
    }


# --------------------------------------------------------------------------- CLI


def cmd_parity(args: argparse.Namespace) -> int:
    from .cli import _tweaks

    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --var takes NAME=VALUE, not {item!r}")
        variables[name] = value
    policies = {}
    for item in args.code_policy:
        node, sep, policy = item.rpartition("=")
        policies[node if sep else "*"] = policy
    inputs = ParityInputs(args.input, _tweaks(args.tweaks), variables, policies, args.same_code)
    report = run_parity(Path(args.flow), inputs, "in_process" if args.in_process else None)
    print(json.dumps(to_dict(report), indent=2, ensure_ascii=False) if args.json else render(report))
    if not report.same and report.lfx.detail and report.lfx.failure and not report.lfx.failure.node:
        print(report.lfx.detail, file=sys.stderr)
    return 0 if report.same else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "parity", help="run a flow through `lfx run` and as a Dagster job, and compare what they give"
    )
    p.add_argument("flow", help="a Langflow JSON export")
    p.add_argument("--input", help="the message for the flow's Chat Input or Text Input")
    p.add_argument("--tweaks", help="JSON (or @file.json): {node id or display name: {field: value}}")
    p.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="a variable, passed by environment"
    )
    p.add_argument(
        "--code-policy",
        action="append",
        default=[],
        metavar="[NODE=]POLICY",
        help="our run's code policy, as `run` takes it (lfx runs the export's code unless --same-code)",
    )
    p.add_argument(
        "--same-code", action="store_true", help="give lfx the code our run runs: compare execution alone"
    )
    p.add_argument("--in-process", action="store_true", help="our side: every step in this process")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(func=cmd_parity)

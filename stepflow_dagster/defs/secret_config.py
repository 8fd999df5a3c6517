"""Secrets never go through run config: a check of a run's variables and tweaks before anything runs.

Dagster stores a run's config with the run and shows it in the UI, so a secret given there is written in
clear text. Secret values come from the environment of the step processes (a Kubernetes secret arrives
as an environment variable; `stepflow-dagster run --var` sets it). Refused, naming where to put the value:

- a run `variables` entry for a secret variable: one that a password / SecretStrInput `load_from_db`
  field names, or that the deployment file lists under `run.secrets`;
- a tweak of a password / SecretStrInput field (by node id or display name);
- a `load_from_db` field that names a variable on lfx's deny-list (the server's own configuration).

`stepflow-dagster run` checks before it launches (nothing is stored); an op checks again before its
component runs, for runs launched elsewhere (UI, GraphQL, sensors): there Dagster has stored the run's
config before any of our code runs, so the refusal stops the run, it cannot unwrite the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..flow import FlowError
from ..plan import FlowPlan
from .deployment import FlowDeployment


class SecretInRunConfig(FlowError):
    """A secret value given in run config, or a variable flows may not read."""


@dataclass(frozen=True)
class SecretUse:
    variable: str  # the environment variable the value must come from
    node: str
    field: str
    reads_variable: bool  # a load_from_db field: it reads `variable` itself


def _template(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return (data.get("node") or {}).get("template") or {}


def secret_variables(plan: FlowPlan, deployment: FlowDeployment) -> dict[str, str]:
    """Secret variable names -> where they are used, for an error message."""
    from ..runtime import secret_fields

    found: dict[str, str] = {}
    for step in plan.steps:
        for c in step.components:
            for name in secret_fields(c.data):
                found.setdefault(str(_template(c.data)[name]["value"]), f"secret field {c.node_id}.{name}")
    for name in deployment.run.secrets:
        found.setdefault(name, "marked secret in the deployment file")
    return found


def _secret_tweak_fields(plan: FlowPlan) -> dict[str, dict[str, SecretUse]]:
    """Tweak key (node id and display name) -> secret field -> the variable that should carry it."""
    from ..runtime.component import is_secret_field

    credentials = {(v.node, v.field): v.name for v in plan.variables}
    out: dict[str, dict[str, SecretUse]] = {}
    for step in plan.steps:
        for c in step.components:
            for name, spec in _template(c.data).items():
                if not isinstance(spec, Mapping) or not is_secret_field(spec):
                    continue
                reads = bool(spec.get("load_from_db") and spec.get("value"))
                variable = spec["value"] if reads else credentials.get((c.node_id, name), name.upper())
                use = SecretUse(str(variable), c.node_id, name, reads)
                for key in {c.node_id, c.display_name} - {""}:
                    out.setdefault(key, {})[name] = use
    return out


def refuse_secrets(
    plan: FlowPlan,
    deployment: FlowDeployment,
    variables: Mapping[str, Any],
    tweaks: Mapping[str, Any],
) -> None:
    """Raise :class:`SecretInRunConfig` if the run gives a secret value, or the flow names a denied
    variable. The message names variables and fields, never a value."""
    from ..runtime.variables import denied_uses

    for node, field, variable in denied_uses(
        (c.node_id, c.data) for step in plan.steps for c in step.components
    ):
        raise SecretInRunConfig(
            plan.flow,
            f"names variable {variable!r}, which flows may not read (lfx's deny-list of server "
            "environment variables: LANGFLOW_*, LFX_*, DATABASE_URL, cloud and CI credentials, ...)",
            node=node,
            field=field,
        )
    secret = secret_variables(plan, deployment)
    for name in variables:
        if name in secret:
            raise SecretInRunConfig(
                plan.flow,
                f"run config variable {name!r} is a secret ({secret[name]}); Dagster would store it "
                f"with the run: set the environment variable {name} of the step processes instead "
                f"(a Kubernetes secret, or `stepflow-dagster run --var {name}=...`)",
            )
    fields = _secret_tweak_fields(plan)
    for key, values in tweaks.items():
        if not isinstance(values, Mapping):
            continue
        for name in values:
            use = fields.get(key, {}).get(name)
            if use is None:
                continue
            if use.reads_variable:
                where = (
                    f"set the environment variable {use.variable} of the step processes instead (the "
                    f"field reads it; `stepflow-dagster run --var {use.variable}=...`)"
                )
            else:
                where = (
                    f"put it in an environment variable (say {use.variable}) of the step processes and "
                    f'tweak the field in the deployment file with "${{{use.variable}}}", which is '
                    "expanded in the step's process"
                )
            raise SecretInRunConfig(
                plan.flow,
                f"a tweak of {key!r} sets secret field {name!r}; Dagster would store it with the run: "
                + where,
                node=use.node,
                field=name,
            )

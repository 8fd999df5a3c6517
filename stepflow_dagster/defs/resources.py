"""The run's inputs, as the Dagster launchpad shows them: message, files, variables, tweaks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from ..plan import FlowPlan

if TYPE_CHECKING:
    from .deployment import FlowDeployment


class LangflowRun(dg.ConfigurableResource):
    """What a run of a flow takes (resource `langflow` in run config).

    Secrets belong in the environment (a Kubernetes secret arrives as an environment variable): a
    `load_from_db` variable missing from `variables` is read from the environment of the step's process,
    and its value is never written to the run config, the event log or stored outputs. A secret given in
    `variables` or `tweaks` is refused (`refuse_secrets`): Dagster stores run config with the run.
    """

    input_value: str | None = Field(
        default=None, description="The message for the flow's Chat Input or Text Input component."
    )
    files: list[str] = Field(
        default_factory=list,
        description="File paths (or URLs) for the flow's file component (File, Docling).",
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        description="Values of the flow's variables (load_from_db fields) by name; "
        "the others come from the environment. Secrets (password fields, and variables the deployment "
        "file marks secret) are refused here: set them in the environment of the step processes.",
    )
    tweaks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-node overrides as Langflow's API takes them: "
        "{node id or display name: {field: value}}. Secret (password) fields are refused here.",
    )
    session_id: str | None = Field(default=None, description="Langflow session id for chat components.")
    code_policy: dict[str, str] = Field(
        default_factory=dict,
        description="Which code a node runs, by node id or display name: upgrade-stock (the default: "
        "stock components run the installed lfx code unless edited), upgrade (even if edited), "
        "frozen (the export's own code).",
    )

    def code_policies(self) -> dict[str, str]:
        """Per node id or display name, "*" the default ($STEPFLOW_CODE_POLICY, else upgrade-stock)."""
        from ..runtime.code_policy import default_code_policies

        return default_code_policies(self.code_policy)

    def refuse_secrets(self, plan: FlowPlan, deployment: FlowDeployment) -> None:
        """Refuse this run before its component runs if its config gives a secret value (or the flow
        names a deny-listed variable); see defs/secret_config.py."""
        from .secret_config import refuse_secrets

        refuse_secrets(plan, deployment, self.variables, self.tweaks)

    def all_tweaks(self, plan: FlowPlan) -> dict[str, dict[str, Any]]:
        """The user's tweaks plus the flow's inputs, which are tweaks of the input components."""
        tweaks: dict[str, dict[str, Any]] = {}
        for end in plan.inputs:
            if end.kind == "message" and self.input_value is not None and end.field:
                tweaks.setdefault(end.node, {})[end.field] = self.input_value
            elif end.kind == "file" and self.files and end.field:
                tweaks.setdefault(end.node, {})[end.field] = list(self.files)
        for key, fields in self.tweaks.items():
            tweaks.setdefault(key, {}).update(fields)
        return tweaks

"""`LangflowFlows`: a Dagster component (a `defs.yaml` in a `dg` project) that builds the same jobs,
assets, checks, sensors and resources as the root definitions.py, from the settings its YAML names.

    type: stepflow_dagster.LangflowFlows
    attributes:
      flows: flows                 # a folder (every *.json) or a list of files, relative to this file
      executor: forkserver         # forkserver | multiprocess | in_process | k8s
      placement: pools.yaml        # node pools, for k8s
      storage: var/storage         # op outputs: a folder (relative to this file) or a URL
      deployments:                 # per flow file stem, merged over <stem>.yaml beside the export
        hello_world: {run: {variables: {OWNER: alice}}}

Names, keys and tags come from a `LangflowTranslator`: subclass the component and override
`get_translator()` to change them (as dagster-dbt's components take a translator).

It lives outside stepflow_dagster.defs because, like definitions.py, it is a code location's choice of
executor: through stepflow_dagster.location it may bring in stepflow_dagster.k8s (for `executor: k8s`
only, imported then), which defs never does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from .defs import LangflowTranslator, StepflowSettings
from .location import build_location

Executor = Literal["forkserver", "multiprocess", "in_process", "k8s"]


class LangflowFlows(dg.Component, dg.Resolvable, dg.Model):
    """Langflow JSON exports as Dagster jobs, one op per Langflow component; ingestion flows (a
    deployment with `documents:`) also as a partitioned asset with its check, drop sensor and removal
    job."""

    flows: str | list[str] = Field(
        default="flows",
        description="A folder of Langflow exports (every *.json in it) or a list of export files, "
        "relative to the folder of this defs.yaml.",
    )
    executor: Executor = Field(
        default="forkserver",
        description="How steps run: forkserver (a process per step forked warm), multiprocess, "
        "in_process, or k8s (a pod per component on its node pool).",
    )
    max_concurrent: int | None = Field(default=None, ge=1, description="Steps of a run at once (local).")
    placement: str | None = Field(
        default=None,
        description="The node pools file (pools.yaml) for executor k8s, relative to this defs.yaml; "
        "default $STEPFLOW_NODE_POOLS, else the one stepflow_dagster.k8s ships.",
    )
    storage: str | None = Field(
        default=None,
        description="Where op outputs go: a folder relative to this defs.yaml or a URL; default "
        "$STEPFLOW_STORAGE, else $DAGSTER_HOME/storage.",
    )
    keep_credentials: bool = Field(
        default=False, description="Keep literal credentials of the exports (else variable references)."
    )
    deployments: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per flow file stem: deployment settings (run defaults, documents) merged over the "
        "flow's own <stem>.yaml.",
    )

    def get_translator(self) -> LangflowTranslator:
        """Override in a subclass to name, key and tag the definitions your way."""
        return LangflowTranslator()

    def settings(self, folder: Path) -> StepflowSettings:
        """The settings this component's attributes give, paths relative to its defs.yaml `folder`."""
        flows_dir: Path | None = None
        files: tuple[Path, ...] = ()
        if isinstance(self.flows, str):
            flows_dir = folder / self.flows
            if not flows_dir.is_dir():
                raise ValueError(f"flows: {flows_dir} is not a folder")
        else:
            files = tuple(folder / f for f in self.flows)
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise ValueError(f"flows: no such file {', '.join(missing)}")
        storage = self.storage
        if storage and "://" not in storage:
            storage = str(folder / storage)
        return StepflowSettings(
            flows_dir=flows_dir,
            extra_flows=files,
            executor=self.executor,
            max_concurrent=self.max_concurrent,
            storage=storage,
            keep_credentials=self.keep_credentials,
            placement=folder / self.placement if self.placement else None,
            deployments=self.deployments,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        folder = context.path
        try:
            return build_location(self.settings(folder), self.get_translator())
        except ValueError as exc:  # FlowError and pydantic's errors too: say which defs.yaml
            raise ValueError(f"{folder / 'defs.yaml'}: {exc}") from exc

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

Names, keys and tags come from a `LangflowTranslator`, as in dagster-dbt's component: a `translation`
attribute sets the asset's attributes from YAML; a subclass of the component that overrides
`get_translator()` changes any name.

It lives outside stepflow_dagster.defs because, like definitions.py, it is a code location's choice of
executor: through stepflow_dagster.location it may bring in stepflow_dagster.k8s (for `executor: k8s`
only, imported then), which defs never does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import dagster as dg
from dagster.components.utils.translation import TranslationFnResolver
from pydantic import Field

from .defs import LangflowTranslator, StepflowSettings
from .defs.deployment import DocumentsConfig
from .defs.translator import with_mixin
from .location import build_location
from .plan import FlowPlan

Executor = Literal["forkserver", "multiprocess", "in_process", "k8s"]
Translation = Callable[[dg.AssetSpec, FlowPlan], dg.AssetSpec]


def _template_vars(plan: FlowPlan) -> dict[str, Any]:
    # What a `translation` template sees besides `spec`: {{ plan.name }} (the job name), {{ flow }}...
    return {"plan": plan, "flow": plan.flow, "source": plan.source}


class _Translated(LangflowTranslator):
    """The defs.yaml `translation` applied over the translator's asset spec (dagster-dbt's way)."""

    translation: Translation

    def get_asset_spec(self, plan: FlowPlan, docs: DocumentsConfig) -> dg.AssetSpec:
        return self.translation(super().get_asset_spec(plan, docs), plan)


# The component tree (one per load of a project, loads one after another) whose code location already
# has the run-span sensors: a second LangflowFlows instance in the same project leaves them out (Dagster
# refuses two sensors of one name). A reload is a new tree, whose first instance gives them again.
_span_sensors_tree: list[Any] = [None]


def _first_in_tree(context: dg.ComponentLoadContext) -> bool:
    tree = context.component_tree
    if _span_sensors_tree[0] is tree:
        return False
    _span_sensors_tree[0] = tree
    return True


class LangflowFlowsScaffolder(dg.Scaffolder):
    """`dg scaffold defs stepflow_dagster.LangflowFlows NAME`: a defs.yaml and the flows/ folder it
    names, where the Langflow exports (and their <stem>.yaml deployment files) go."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        dg.scaffold_component(request, {"flows": "flows", "executor": "forkserver"})
        (request.target_path / "flows").mkdir(exist_ok=True)


@dg.scaffold_with(LangflowFlowsScaffolder)
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
    translation: (
        Annotated[
            Translation, TranslationFnResolver[FlowPlan](template_vars_for_translation_fn=_template_vars)
        ]
        | None
    ) = Field(
        default=None,
        description="Asset attributes (key, group_name, tags, kinds, metadata, ...) over an ingestion "
        "flow's asset; templates see {{ spec }}, {{ plan }} and {{ flow }}.",
    )
    deployments: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per flow file stem: deployment settings (run defaults, documents) merged over the "
        "flow's own <stem>.yaml.",
    )

    def get_translator(self) -> LangflowTranslator:
        """Override in a subclass to name, key and tag the definitions your way."""
        return LangflowTranslator()

    def translator(self) -> LangflowTranslator:
        """`get_translator()`'s, with this instance's `translation` over its asset specs."""
        translator = self.get_translator()
        if self.translation is None:
            return translator
        return with_mixin(translator, _Translated, translation=self.translation)

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
            settings = dataclasses.replace(self.settings(folder), span_sensors=_first_in_tree(context))
            return build_location(settings, self.translator())
        except ValueError as exc:  # FlowError and pydantic's errors too: say which defs.yaml
            raise ValueError(f"{folder / 'defs.yaml'}: {exc}") from exc

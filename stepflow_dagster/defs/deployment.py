"""How a flow is deployed, beside its export: `flows/<name>.yaml` next to `flows/<name>.json`.

The export stays untouched; what changes per deployment lives here: default tweaks and variables
(string values may name environment variables, `${NAME}` or `${NAME:-default}`, expanded in the step's
process), per-node code policies, and for ingestion flows the document drop location that a sensor watches.

    run:
      tweaks: {DoclingRemote-Dp3PX: {api_url: "${DOCLING_URL:-http://127.0.0.2:5001}"}}
      variables: {OWNER: alice}
      code_policy: {OpenSearchHybrid-Ve6bS: upgrade-stock}
      secrets: [OPENSEARCH_PASSWORD]   # variables refused in run config: from the environment only
      trust:                           # code that is not stock (edited, custom): runs only if trusted
        nodes: [SplitText-QIKhg]       # by node id,
        code_sha256: [9f86d0...]       # by the sha256 of the node's code (lapses when it changes),
        all: false                     # or every node of the flow
    documents:
      location: "${STEPFLOW_DROP_DIR:-var/drop}"   # a folder or any fsspec URL
      asset_key: [opensearch, documents]
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..flow import FlowError
from ..runtime.trust import Trust

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _env_value(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    return os.environ.get(name, default if default is not None else match.group(0))


def expand_env(value: Any) -> Any:
    """`${NAME}` / `${NAME:-default}` in strings, recursively; an unset name without default stays as is."""
    if isinstance(value, str):
        return _ENV.sub(_env_value, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TrustConfig(BaseModel):
    """Component code the deployment trusts beyond stock code (runtime/trust.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    all: bool = False
    nodes: list[str] = Field(default_factory=list, description="Node ids whose code runs as exported.")
    code_sha256: list[str] = Field(
        default_factory=list,
        description="sha256 (64 hex) of node code that runs wherever it appears (`analyze` prints it).",
    )

    @field_validator("code_sha256")
    @classmethod
    def _digests(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _SHA256.match(value):
                raise ValueError(f"code_sha256 entry {value!r} is not a sha256 digest (64 hex digits)")
        return values

    def policy(self) -> Trust:
        return Trust(all=self.all, nodes=frozenset(self.nodes), code_sha256=frozenset(self.code_sha256))


class RunDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tweaks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    variables: dict[str, str] = Field(default_factory=dict)
    code_policy: dict[str, str] = Field(default_factory=dict)
    # Variables that are secrets besides those of password / SecretStrInput fields: a run may not give
    # them in its config (defs/secret_config.py), only the environment of the step processes.
    secrets: list[str] = Field(default_factory=list)
    trust: TrustConfig = Field(default_factory=TrustConfig)


DocumentAttribute = Literal["path", "name", "size", "mimetype", "sha256", "url"]


def _openrag_document_variables() -> dict[str, DocumentAttribute]:
    # FILENAME is what OpenRAG's chunks carry as `filename`: the document's path in the drop location,
    # so that two report.md in two folders are two documents, each replaced on its own.
    return {"FILENAME": "path", "FILESIZE": "size", "MIMETYPE": "mimetype"}


class DocumentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    location: str = Field(description="Folder or fsspec URL that the sensor watches; ${VAR} expanded.")
    asset_key: list[str] | None = Field(
        default=None, description="The sink's asset key (default: [job name])."
    )
    page_size: int = Field(
        default=1000, description="Documents listed and checked per sensor tick (a pass spans ticks)."
    )
    max_documents_per_run: int = Field(
        default=25,
        description="Documents per run: each op processes them all in one process (the asset's "
        "BackfillPolicy, and the sensor's batches).",
        ge=1,
    )
    concurrency: int = Field(
        default=4,
        ge=1,
        description="Documents of a batch that one step works on side by side (threads in its process).",
    )
    max_attempts: int = Field(
        default=3, description="Runs a failing document gets (the sensor retries it on later passes).", ge=1
    )
    remove_missing: bool = Field(
        default=True, description="A document removed from the location has its chunks removed."
    )
    minimum_interval_seconds: int = Field(default=30, description="Between sensor ticks.")
    # Variables the flow reads that describe the document itself, filled from it unless the run sets them:
    # variable -> path | name | size | mimetype | sha256 | url
    variables: dict[str, DocumentAttribute] = Field(default_factory=_openrag_document_variables)
    # The chunk field that holds the document's path (FILENAME), for replacing and removing its chunks.
    document_field: str = "filename"
    index_body: dict[str, Any] | None = Field(
        default=None, description="Settings and mappings for the sink's index, created when missing."
    )

    def resolved_location(self) -> str:
        return str(expand_env(self.location))


class FlowDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunDefaults = Field(default_factory=RunDefaults)
    documents: DocumentsConfig | None = None


def merge_overrides(base: Any, overrides: Any) -> Any:
    """`overrides` over `base`: mappings merge key by key, anything else (lists too) replaces."""
    if isinstance(base, Mapping) and isinstance(overrides, Mapping):
        merged = dict(base)
        for key, value in overrides.items():
            merged[key] = merge_overrides(base.get(key), value) if key in base else value
        return merged
    return overrides


# Overrides a code location gave over deployment files (the component's `deployments:`), by flow file.
# The default executor's warm-up reads a run's deployment by its flow file in the run worker, which has
# loaded that same code location: it finds them here (`deployment_for_source`).
_OVERRIDES: dict[str, Mapping[str, Any]] = {}


def load_deployment(
    flow_path: Path, flow_name: str, overrides: Mapping[str, Any] | None = None
) -> FlowDeployment:
    """The deployment file beside a flow export (the defaults when there is none), with `overrides`
    merged over it."""
    path = flow_path.with_suffix(".yaml")
    where = path.name + (f" with the overrides deployments.{flow_path.stem}" if overrides else "")
    try:
        doc = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
        if overrides:
            doc = merge_overrides(doc, overrides)
        return FlowDeployment.model_validate(doc)
    except (yaml.YAMLError, ValueError) as exc:
        raise FlowError(flow_name, f"bad deployment file {where}: {exc}", field=path.name) from exc


def use_overrides(flow_path: Path, overrides: Mapping[str, Any] | None) -> None:
    """What the code location being built gives over the file of `flow_path` (None: the file alone)."""
    if overrides:
        _OVERRIDES[str(flow_path)] = overrides
    else:
        _OVERRIDES.pop(str(flow_path), None)


def deployment_for_source(source: str, flow_name: str) -> FlowDeployment:
    """The deployment of a flow file as this process's code location built it."""
    return load_deployment(Path(source), flow_name, _OVERRIDES.get(source))

"""Values between ops as JSON files on a UPath: a local folder, a shared volume, or an object store URL.

Never pickles: an op hands over JSON-ready values (the runtime's codec), and live objects travel as
references that the consumer rebuilds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath


def default_storage() -> str:
    home = os.environ.get("DAGSTER_HOME")
    return os.environ.get("STEPFLOW_STORAGE") or (f"{home}/storage" if home else "var/storage")


class JsonIOManager(dg.ConfigurableIOManager):
    base_path: str = Field(
        default_factory=default_storage, description="Folder or URL (fsspec) for op outputs."
    )

    def _path(self, identifier: Sequence[str]) -> UPath:
        return UPath(self.base_path).joinpath(*identifier).with_suffix(".json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._path(context.get_identifier())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        tmp.rename(path)  # readers never see half a value
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        assert upstream is not None  # every input of our ops comes from an upstream op
        return json.loads(self._path(upstream.get_identifier()).read_text(encoding="utf-8"))

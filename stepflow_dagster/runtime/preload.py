"""Imported once by the default executor's forkserver: step processes fork from it warm.

A step's process would otherwise import lfx (seconds), set up lfx's settings service, import its
component's modules and compile its class. Here that happens once per run (see `runtime.warm`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os

import lfx.custom.custom_component.component  # noqa: F401
import lfx.graph  # noqa: F401
import lfx.schema.dataframe  # noqa: F401
import lfx.schema.message  # noqa: F401

import stepflow_dagster.runtime.component  # noqa: F401
from stepflow_dagster.runtime.warm import WARM_ENV, warm

if __name__ != "__main__" and os.environ.get(WARM_ENV):
    with contextlib.suppress(ValueError):
        warm(json.loads(os.environ[WARM_ENV]))
    gc.collect()
    gc.freeze()  # the warm heap stays shared with the forked steps (copy on write)

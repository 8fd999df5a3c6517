"""Imported once by the multiprocess executor's forkserver (STEPFLOW_EXECUTOR=forkserver).

Step processes fork from a server that has already paid for these imports (most of a step's start-up).
"""

import lfx.custom.custom_component.component  # noqa: F401
import lfx.graph  # noqa: F401
import lfx.schema.dataframe  # noqa: F401
import lfx.schema.message  # noqa: F401

import stepflow_dagster.runtime.component  # noqa: F401

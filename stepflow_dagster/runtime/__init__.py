"""Component runtime: build and run one Langflow component in this process with lfx.

No dagster here. lfx is imported lazily, inside the functions that need it.
"""

from stepflow_dagster.runtime.code_policy import (
    CODE_POLICIES,
    apply_code_policy,
    decide_code,
    describe_code_policy,
)
from stepflow_dagster.runtime.codec import Redacted, decode, encode
from stepflow_dagster.runtime.component import (
    ComponentCall,
    LiveInput,
    build_component,
    run_component,
    secret_fields,
    variable_fields,
)
from stepflow_dagster.runtime.errors import ComponentError
from stepflow_dagster.runtime.loop import run_subgraph

__all__ = [
    "CODE_POLICIES",
    "ComponentCall",
    "ComponentError",
    "LiveInput",
    "Redacted",
    "apply_code_policy",
    "build_component",
    "decide_code",
    "decode",
    "describe_code_policy",
    "encode",
    "run_component",
    "run_subgraph",
    "secret_fields",
    "variable_fields",
]

"""The webserver and daemon of tests/frontends, for the executor's call through a deployment."""

from tests.frontends.conftest import dagster_stack  # noqa: F401

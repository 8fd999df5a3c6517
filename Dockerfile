# The worker image: code server, run worker and step pods all run it (dagster-values.yaml).
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /uvx /bin/
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
# Dependencies first (a layer that survives code changes), from the lock file only.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --extra openrag
COPY stepflow_dagster ./stepflow_dagster
COPY definitions.py workspace.yaml ./
COPY flows ./flows
RUN uv sync --frozen --no-dev --extra openrag
# A pod's step starts as fast as a process here: our bytecode compiled now (the dependencies' was, by
# UV_COMPILE_BYTECODE), not by every pod; the code location loads once now, so a bad flow fails the
# build; each node's code policy decision is made now and kept in the image's cache.
ENV XDG_CACHE_HOME=/app/.cache
RUN .venv/bin/python -m compileall -q stepflow_dagster definitions.py \
 && .venv/bin/python -c "import definitions" \
 && for f in flows/*.json; do .venv/bin/stepflow-dagster analyze --code-policy "$f" > /dev/null; done
ENV PATH=/app/.venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    STEPFLOW_EXECUTOR=k8s \
    DO_NOT_TRACK=true
# lfx's restriction of local files stays on (LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS): a run widens its roots
# to the drop location, its own files and the storage folders only (stepflow_dagster/runtime/file_access.py).
RUN mkdir -p $DAGSTER_HOME && useradd --uid 10001 --create-home stepflow && chown -R stepflow /app $DAGSTER_HOME
USER stepflow
# The chart passes its own args (dagster api grpc ... / dagster api execute_run ... / execute_step ...).
CMD ["dagster", "api", "grpc", "--python-file", "/app/definitions.py", "--working-directory", "/app", "--host", "0.0.0.0", "--port", "3030"]

#!/usr/bin/env bash
# Run the local OpenSearch node in the foreground (services/stack.py runs it in the background).
#   services/opensearch/run.sh [HOME_DIR] [PORT] [HOST]
# Builds first if needed (services/setup.sh opensearch). Extra JVM options: STEPFLOW_OPENSEARCH_JAVA_OPTS.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOME_DIR="${1:-${STEPFLOW_VAR:-$HERE/../../var}/services/opensearch}"
PORT="${2:-${STEPFLOW_OPENSEARCH_PORT:-9200}}"
HOST="${3:-${STEPFLOW_OPENSEARCH_HOST:-127.0.0.1}}"
HEAP="${STEPFLOW_OPENSEARCH_HEAP:-512m}"
bash "$HERE/../setup.sh" opensearch >&2
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
# shellcheck disable=SC2086
exec "$JAVA" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
  ${STEPFLOW_OPENSEARCH_JAVA_OPTS:-} \
  -cp "$HERE/target/classes:$HERE/target/lib/*" stepflow.OpenSearchNode \
  --home "$HOME_DIR" --knn-zip "$HERE/target/opensearch-knn.zip" --host "$HOST" --port "$PORT"

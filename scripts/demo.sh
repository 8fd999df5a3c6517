#!/usr/bin/env bash
# The main command: set up, start the real services on loopback, ingest the bundled documents with the
# unmodified OpenRAG ingestion flow through Dagster, then ask OpenSearch a question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo  # Python and the services: no control plane, collector or browser
services/up
set -a
# shellcheck disable=SC1091
source var/services/services.env
set +a
uv run stepflow-dagster ingest flows/samples/openrag
uv run python scripts/search.py "${1:-How do bees tell each other where flowers are?}"
echo "(services keep running; stop them with services/down)"

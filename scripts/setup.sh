#!/usr/bin/env bash
# Everything the project needs on a fresh machine, idempotent and cached (uv's cache).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv>=0.5"
fi
uv sync --frozen --extra openrag

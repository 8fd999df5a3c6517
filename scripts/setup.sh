#!/usr/bin/env bash
# Everything the project needs on a fresh machine, idempotent and cached (uv's cache, ~/.m2, Go's caches).
# Each stage prints how long it took.
#   scripts/setup.sh          # everything the tests use: Python, services, Kubernetes control plane,
#                             # OpenTelemetry collector, Chromium
#   scripts/setup.sh demo     # what the demo (scripts/demo.sh) uses: Python and the services
#   scripts/setup.sh python   # the Python environment only
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT="${1:-all}"

stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "[setup] $name ..."
  "$@"
  echo "[setup] $name: $((SECONDS - t0)) s"
}

if ! command -v uv >/dev/null 2>&1; then
  stage "uv" python3 -m pip install --quiet "uv>=0.5"
fi
stage "python environment (uv sync)" uv sync --frozen --extra openrag --extra starters
[ "$WHAT" = python ] && exit 0
# OpenSearch + k-NN (Maven), Docling Serve and the embeddings server (their own venv).
stage "services" bash services/setup.sh all
[ "$WHAT" = demo ] && exit 0
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler from Go modules (cached build).
stage "kubernetes control plane" bash services/kube/build.sh
if [ -f services/otel/build.sh ]; then
  stage "otel collector" bash services/otel/build.sh
fi
# Debian's Chromium for the Dagster UI tests (tests/frontends/test_browser.py); Playwright never downloads one.
install_chromium() {
  if command -v chromium >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ]; then echo "[setup] chromium missing: run as root to install it"; return 0; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}
stage "chromium" install_chromium

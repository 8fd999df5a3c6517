#!/usr/bin/env bash
# Download/build everything the local service stack needs, idempotently.
#
#   services/setup.sh [all|opensearch|python]
#
# - opensearch: `mvn package` in services/opensearch (jars + k-NN plugin zip into
#   services/opensearch/target/, artifacts cached in ~/.m2).
# - python: uv venv at services/docling/.venv (Docling Serve + embeddings server),
#   synced to services/docling/requirements.lock (wheels cached in uv's cache).
#
# Each stage prints how long it took; a warm run only checks and returns.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHAT="${1:-all}"
PYTHON_VERSION="${STEPFLOW_SERVICES_PYTHON:-3.11}"

stage() {  # stage NAME CMD...
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  echo "[setup] ${name} ..."
  "$@"
  t1=$(date +%s.%N)
  awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN{printf "[setup] %s done in %.1fs\n", n, b-a}'
}

setup_opensearch() {
  local dir="$HERE/opensearch"
  local stamp="$dir/target/.setup-stamp"
  local sum
  sum="$(cat "$dir/pom.xml" "$dir"/src/main/java/*/*.java 2>/dev/null | sha256sum | cut -c1-16)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" && -d "$dir/target/lib" && -f "$dir/target/opensearch-knn.zip" ]]; then
    echo "[setup] opensearch: up to date ($dir/target)"
    return 0
  fi
  command -v mvn >/dev/null || { echo "[setup] mvn not found (apt-get install maven)" >&2; return 1; }
  (cd "$dir" && mvn -B -q -e package -DskipTests)
  echo "$sum" > "$stamp"
}

setup_python() {
  local dir="$HERE/docling"
  local venv="$dir/.venv"
  local lock="$dir/requirements.lock"
  local stamp="$venv/.setup-stamp"
  local sum
  sum="$(sha256sum "$lock" | cut -c1-16)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" && -x "$venv/bin/docling-serve" ]]; then
    echo "[setup] python: up to date ($venv)"
    return 0
  fi
  command -v uv >/dev/null || { echo "[setup] uv not found (pip install uv)" >&2; return 1; }
  if [[ ! -x "$venv/bin/python" ]]; then
    uv venv --python "$PYTHON_VERSION" "$venv"
  fi
  # torch from PyPI is the CUDA build (nvidia-* wheels, several GB): accepted here,
  # cached by uv so only the first setup downloads it.
  UV_HTTP_TIMEOUT="${UV_HTTP_TIMEOUT:-300}" uv pip sync --python "$venv/bin/python" "$lock"
  echo "$sum" > "$stamp"
}

T0=$(date +%s.%N)
case "$WHAT" in
  all) stage opensearch setup_opensearch; stage python setup_python ;;
  opensearch) stage opensearch setup_opensearch ;;
  python) stage python setup_python ;;
  *) echo "usage: $0 [all|opensearch|python]" >&2; exit 2 ;;
esac
awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "[setup] total %.1fs\n", b-a}'

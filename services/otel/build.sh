#!/usr/bin/env bash
# Builds the OpenTelemetry Collector of services/otel (main.go: OTLP receiver, batch, debug and file
# exporters) from the collector's Go modules, pinned by go.mod/go.sum. Idempotent: rebuilds only when a
# source is newer than the binary. Prints the binary's path. Cold: about 2 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${STEPFLOW_CACHE:-$root/.cache}"
out="$cache/otel/stepflow-otelcol"
if [[ -x "$out" && "$out" -nt "$here/main.go" && "$out" -nt "$here/go.mod" && "$out" -nt "$here/go.sum" ]]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "build.sh: go is not installed" >&2; exit 1; }
mkdir -p "$cache/otel"
export GOMODCACHE="${GOMODCACHE:-$cache/go/mod}" GOCACHE="${GOCACHE:-$cache/go/build}" GOFLAGS=-mod=mod
cd "$here"
go build -trimpath -o "$out.tmp" . >&2
mv "$out.tmp" "$out"
echo "$out"

#!/usr/bin/env bash
# Monitoring's cost (issue 27), one sitting on the release build: pgbench -M prepared
# `SELECT 1` with the series recorded and without ([metrics] series = false), alternating
# rounds, with the gateway's CPU per statement; then the admin page's overview (/ui with
# its charts, each window) rendered by the gateway after a load, and a query profile page.
# BINARY=path measures a given sluice binary instead of building one.
# Usage: bench/monitoring.sh [scale=1] [seconds=10] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${BINARY:-}" ]; then
  cargo build --release --locked --workspace
  BINARY=$CARGO_TARGET_DIR/release/sluice
fi
BINARY=$(realpath "$BINARY")
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F); $(git rev-parse --short HEAD)"
cd bench
../conformance/.venv/bin/python monitoring.py "$BINARY" "${1:-1}" "${2:-10}" "${3:-3}"

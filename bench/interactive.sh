#!/usr/bin/env bash
# Interactive speed (issue 26), one sitting on the release build: pgbench -M prepared
# `SELECT 1` and a point query (result cache off and on) against PostgreSQL on
# 127.0.0.1:5432, the gateway's CPU per statement, TPC-H against DuckDB on the same files,
# then Flight SQL `SELECT * FROM lineitem` through ADBC against a raw pyarrow.flight server
# (bench/flight.py). BINARY=path measures a given sluice binary instead of building one.
# Usage: bench/interactive.sh [scale=1] [seconds=10] [runs=3]
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
../conformance/.venv/bin/python interactive.py "$BINARY" "${1:-1}" "${2:-10}" "${3:-3}"
BINARY=$BINARY ../conformance/.venv/bin/python flight.py "${1:-1}" "${3:-3}"

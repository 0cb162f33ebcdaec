#!/usr/bin/env bash
# The cost of the query history and the metrics (release build): `SELECT 1` throughput
# through pg (pgbench) with both on against both off, alternating runs.
# Usage: bench/operations.sh [clients=8] [seconds=10] [rounds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
cd bench && ../conformance/.venv/bin/python operations.py "${1:-8}" "${2:-10}" "${3:-5}"

#!/usr/bin/env bash
# Flight SQL benchmark (release build): `SELECT * FROM tpch.lineitem` at scale 1 through
# ADBC, vs a plain pyarrow.flight server streaming the same table from memory, vs the pg
# path (sluice-bench stream-pg, binary); gateway peak RSS during the ADBC transfer.
# Usage: bench/flight.sh [scale=1] [runs=3]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/flight.py "${1:-1}" "${2:-3}"

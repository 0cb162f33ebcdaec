#!/usr/bin/env bash
# DataFusion settings measured one by one on the 22 TPC-H queries (issue 26): in-process
# DataFusion configured as sluice's planner is, once per variant, interleaved run by run,
# then DuckDB (2 threads) on the same Parquet files in the same sitting. Each query's row
# count is compared across variants and with DuckDB.
# Usage: bench/settings.sh [scale=1] [runs=3] [variant…]
#   a variant is `base` or `name=value[,name=value…]`; without any, a default list.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F); $(git rev-parse --short HEAD)"
SCALE=${1:-1}
RUNS=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
cd bench
../conformance/.venv/bin/python settings.py "$CARGO_TARGET_DIR/release" "$SCALE" "$RUNS" "$@"

#!/usr/bin/env bash
# Object-storage benchmark (release build), one run on one machine: TPC-H Q1, Q3, Q6 and Q14
# over Parquet files in Azurite (the Azure Blob emulator, from conformance/node), first run
# (empty worker data cache) against repeated runs (warm cache), and warm against the same
# files on local disk. The result cache is off: every run executes.
# Usage: bench/storage.sh [scale=1] [runs=5]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
[ -x conformance/node/node_modules/.bin/azurite-blob ] ||
  npm ci --prefix conformance/node --no-audit --no-fund --loglevel=error
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/storage.py "${1:-1}" "${2:-5}"

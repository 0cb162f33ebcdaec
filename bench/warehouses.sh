#!/usr/bin/env bash
# Warehouse benchmark (release build), one run on one machine:
#   1. cold start: a stopped warehouse -> the first row of a query that needs a worker;
#   2. a burst of 32 clients running TPC-H Q1 and Q6 against min 1 / max 4 workers: time to
#      reach 4 workers, throughput against a pool fixed at 4, p50/p99 latency, errors;
#   3. what the gateway adds per query with a warm pool, against the same SQL in-process.
# Usage: bench/warehouses.sh [scale=1]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/warehouses.py "${1:-1}"

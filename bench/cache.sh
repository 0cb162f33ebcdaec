#!/usr/bin/env bash
# Result-cache benchmark (release build), one run on one machine:
#   1. a dashboard of 12 aggregate queries over TPC-H replayed by 16 concurrent clients:
#      a cold pass (cache cleared) against a warm pass;
#   2. the latency of a cache hit through pg (pgbench, one client, per-statement log);
#   3. hits/s with 16 pgbench clients against PostgreSQL (127.0.0.1:5432) answering the
#      same small result from a table;
#   4. the bytes the cache holds against its budget, and the gateway's RSS.
# Usage: bench/cache.sh [scale=1]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/cache.py "${1:-1}"

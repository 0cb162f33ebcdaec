#!/usr/bin/env bash
# HS2 benchmark (release build): `SELECT * FROM tpch.lineitem` at scale 1 through
# databricks-sql-connector (download links; inline pages with and without LZ4) vs ADBC
# Flight SQL on the same server, and the per-query overhead of `SELECT 1` through the
# connector vs psycopg on sluice's pg front-end and on PostgreSQL.
# Usage: bench/hs2.sh [scale=1] [runs=3] [select-1 queries=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/hs2.py "${1:-1}" "${2:-3}" "${3:-2000}"

#!/usr/bin/env bash
# pg front-end benchmarks (release build): pgbench TPS and p99 for `SELECT 1` and a point
# query at 1, 16 and 64 clients, sluice vs PostgreSQL (127.0.0.1:5432) in the same run;
# gateway RSS with 1,000 idle connections. Usage: bench/pg_frontend.sh [seconds per run=10]
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_SECONDS=${1:-10}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --workspace
OUT=bench/out/pg_frontend
DATA=$OUT/data
mkdir -p "$DATA"
rm -f "$DATA/endpoints.json"
"$TARGET/release/sluice" serve --data-dir "$DATA" --demo-scale 0.01 --pg-addr 127.0.0.1:0 \
  --http-addr 127.0.0.1:0 >"$OUT/sluice.log" 2>&1 &
SLUICE=$!
trap 'kill $SLUICE 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -f "$DATA/endpoints.json" ] && break
  kill -0 $SLUICE 2>/dev/null || { cat "$OUT/sluice.log"; exit 1; }
  sleep 0.5
done
sleep 1
PG_PORT=$(python3 -c "import json;print(json.load(open('$DATA/endpoints.json'))['pg'].rsplit(':',1)[1])")
DSN="host=127.0.0.1 port=$PG_PORT user=bench password=$(cat "$DATA/dev-token") dbname=sluice sslmode=disable"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/pg_frontend.py "$DSN" "$SLUICE" "$OUT"

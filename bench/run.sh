#!/usr/bin/env bash
# The foundation benchmarks, in one run on one machine (release build):
#   1. TPC-H (22 queries) through the gateway vs in-process DataFusion on the same files;
#   2. rows/s of `SELECT * FROM lineitem` to a client, sluice vs PostgreSQL (127.0.0.1:5432)
#      serving the same table, in text (simple protocol) and binary (extended protocol).
# Usage: bench/run.sh [scale=1] [runs=3]. Prints a report; bench/RESULTS.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-1}
RUNS=${2:-3}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --workspace
BIN=$TARGET/release/sluice
BENCH=$TARGET/release/sluice-bench
DATA=bench/data/sf$SCALE
OUT=bench/out
mkdir -p "$DATA" "$OUT"

# Every run must execute: the result cache is off (bench/cache.sh measures it).
printf '[cache]\nenabled = false\n' >"$OUT/nocache.toml"
"$BIN" serve --config "$OUT/nocache.toml" --data-dir "$DATA" --demo-scale "$SCALE" --pg-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  >"$OUT/sluice.log" 2>&1 &
SLUICE=$!
trap 'kill $SLUICE 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
  [ -f "$DATA/endpoints.json" ] && curl -sf "http://$(python3 -c "import json;print(json.load(open('$DATA/endpoints.json'))['http'])")/healthz" >/dev/null && break
  kill -0 $SLUICE 2>/dev/null || { cat "$OUT/sluice.log"; exit 1; }
  sleep 0.5
done
PG_PORT=$(python3 -c "import json;print(json.load(open('$DATA/endpoints.json'))['pg'].rsplit(':',1)[1])")
SLUICE_DSN="host=127.0.0.1 port=$PG_PORT user=bench password=$(cat "$DATA/dev-token") dbname=default sslmode=disable"
POSTGRES_DSN="host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"

echo "== TPC-H SF$SCALE, $RUNS runs per query, in-process and gateway interleaved"
"$BENCH" tpch-compare "$DATA/tpch" "$SLUICE_DSN" conformance/tpch/queries "$RUNS" >"$OUT/tpch.jsonl"

echo "== loading lineitem SF$SCALE into PostgreSQL (once)"
TABLE=bench_lineitem_sf${SCALE//./_}
if ! psql "$POSTGRES_DSN" -Atc "select 1 from $TABLE limit 1" >/dev/null 2>&1; then
  conformance/.venv/bin/python -c "import duckdb; duckdb.sql(\"copy (select * from read_parquet('$DATA/tpch/lineitem/*.parquet')) to '$OUT/lineitem.csv' (header false)\")"
  psql "$POSTGRES_DSN" -v ON_ERROR_STOP=1 -q <<SQL
create table $TABLE (
  l_orderkey bigint, l_partkey bigint, l_suppkey bigint, l_linenumber int,
  l_quantity numeric(15,2), l_extendedprice numeric(15,2), l_discount numeric(15,2), l_tax numeric(15,2),
  l_returnflag text, l_linestatus text, l_shipdate date, l_commitdate date, l_receiptdate date,
  l_shipinstruct text, l_shipmode text, l_comment text);
\copy $TABLE from '$OUT/lineitem.csv' csv
vacuum analyze $TABLE;
SQL
  rm -f "$OUT/lineitem.csv"
fi

echo "== streaming SELECT * FROM lineitem"
: >"$OUT/stream.jsonl"
python3 -c "import json;print(json.dumps({n: round(int(next(l.split()[1] for l in open(f'/proc/{p}/status') if l.startswith('VmRSS')))/1024,1) for n,p in [('gateway',$SLUICE)]}))" >"$OUT/rss-idle.json"
python3 bench/rss.py $SLUICE >"$OUT/rss-peak.json" &
SAMPLER=$!
for run in $(seq 1 "$RUNS"); do
  for format in text binary; do
    "$BENCH" stream-pg "$SLUICE_DSN" "select * from tpch.lineitem" $format | sed "s/^{/{\"server\":\"sluice\",/" >>"$OUT/stream.jsonl"
    "$BENCH" stream-pg "$POSTGRES_DSN" "select * from $TABLE" $format | sed "s/^{/{\"server\":\"postgresql\",/" >>"$OUT/stream.jsonl"
  done
done

kill -TERM $SAMPLER; wait $SAMPLER || true

python3 bench/report.py "$OUT" "$SCALE"

"""What a change (the security work, issue 21; the crate split, issue 25) costs on the hot
paths: two release binaries, before and after, measured alternately in one sitting on one
data dir:

  1. `SELECT 1` through pg with pgbench (simple protocol, N clients): transactions per
     second and the gateway's CPU time per statement;
  2. the 22 TPC-H queries at scale 1 through pg (psycopg, the result cache off): seconds per
     query, median over the runs.

With FRONTEND=hs2 (Databricks SQL, issue 23) the same two measures go through the HS2
front-end instead: `SELECT 1` as the connector's ExecuteStatement sent as one raw HTTP POST
on one kept-alive connection (the server's share: p50 latency and gateway CPU per
statement over `seconds`), and the 22 TPC-H queries through databricks-sql-connector.

Usage: [FRONTEND=pg|hs2] bench/before_after.py BEFORE_BINARY AFTER_BINARY [clients=8] [seconds=10] [rounds=3]
"""
import json
import os
import pathlib
import statistics
import sys
import time

import psycopg

from operations import cpu_seconds
from serving import hs2_raw_select_one, pgbench, sluice, wait_ready

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "security"
DATA = ROOT / "bench" / "data" / "sf1"
QUERIES = ROOT / "conformance" / "tpch" / "queries"
CONFIG = "[cache]\nenabled = false\n\n[warehouses.default]\nworkers = 2\n"


def pg_round(proc, endpoints, token, clients, seconds):
    """`SELECT 1` with pgbench (statements/s, gateway CPU µs per statement) and the 22 TPC-H
    queries through psycopg (seconds each)."""
    host, port = endpoints["pg"].rsplit(":", 1)
    dsn = f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable"
    wait_ready(dsn)
    args = ["-h", host, "-p", port, "-U", "bench", "default"]
    pgbench(OUT, args, token, "SELECT 1", clients, 2)  # warm-up
    used = cpu_seconds(proc.pid)
    t, failed = pgbench(OUT, args, token, "SELECT 1", clients, seconds)
    used = cpu_seconds(proc.pid) - used
    if failed:
        raise SystemExit(f"{failed} failed transactions")
    times = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(1, 23):
            sql = (QUERIES / f"q{n}.sql").read_text()
            started = time.perf_counter()
            conn.execute(sql).fetchall()
            times[n] = time.perf_counter() - started
    return t, used / (t * seconds) * 1e6, times


def hs2_round(proc, endpoints, token, seconds):
    """`SELECT 1` as databricks-sql-connector's ExecuteStatement (direct results), sent as one
    pre-encoded POST on a kept-alive connection for `seconds` (statements/s, gateway CPU µs
    per statement), and the 22 TPC-H queries through the connector (seconds each)."""
    from databricks import sql as dbsql

    host, port = endpoints["pg"].rsplit(":", 1)
    wait_ready(f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable")
    path = "/sql/1.0/warehouses/default"
    select_one = hs2_raw_select_one(endpoints["http"], token)

    for _ in range(200):  # warm-up
        select_one()
    used, count = cpu_seconds(proc.pid), 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        select_one()
        count += 1
    rate = count / (time.perf_counter() - started)
    used = cpu_seconds(proc.pid) - used
    times = {}
    with dbsql.connect(server_hostname=host, http_path=path, access_token=token, enable_telemetry=False,
                       _connection_uri=f"http://{endpoints['http']}{path}") as conn, conn.cursor() as cur:
        for n in range(1, 23):
            sql = (QUERIES / f"q{n}.sql").read_text()
            started = time.perf_counter()
            cur.execute(sql)
            cur.fetchall_arrow()
            times[n] = time.perf_counter() - started
    return rate, used / count * 1e6, times


def main():
    before, after = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    frontend = os.environ.get("FRONTEND", "pg")
    OUT.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    binaries = {"before": before, "after": after}
    tps = {k: [] for k in binaries}
    cpu_us = {k: [] for k in binaries}
    tpch = {k: {n: [] for n in range(1, 23)} for k in binaries}
    for r in range(rounds):
        # Alternate which goes first, so drift on the machine favours neither.
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for name in order:
            with sluice(None, DATA, OUT, 1, CONFIG, binary=binaries[name]) as (proc, endpoints, token):
                if frontend == "hs2":
                    t, per_statement, times = hs2_round(proc, endpoints, token, seconds)
                else:
                    t, per_statement, times = pg_round(proc, endpoints, token, clients, seconds)
                tps[name].append(t)
                cpu_us[name].append(per_statement)
                for n, took in times.items():
                    tpch[name][n].append(took)
            total = sum(v[-1] for v in tpch[name].values())
            print(f"round {r + 1} {name}: SELECT 1 {t:.0f} tps, {cpu_us[name][-1]:.0f} µs CPU/statement; "
                  f"TPC-H SF1 {total:.2f} s", flush=True)
    medians = {k: {n: statistics.median(v) for n, v in per.items()} for k, per in tpch.items()}
    totals = {k: sum(m.values()) for k, m in medians.items()}
    print(json.dumps({
        "frontend": frontend, "clients": clients if frontend == "pg" else 1, "seconds": seconds, "rounds": rounds,
        "select1_tps": tps, "select1_median": {k: statistics.median(v) for k, v in tps.items()},
        "select1_ratio": statistics.median(tps["after"]) / statistics.median(tps["before"]),
        "gateway_cpu_us_per_statement": {k: statistics.median(v) for k, v in cpu_us.items()},
        "tpch_sf1_query_medians_s": {k: {f"q{n}": round(s, 3) for n, s in m.items()} for k, m in medians.items()},
        "tpch_sf1_total_s": totals,
        "tpch_sf1_ratio": totals["after"] / totals["before"],
    }, indent=2))


if __name__ == "__main__":
    main()

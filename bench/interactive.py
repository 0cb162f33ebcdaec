"""Interactive speed (issue 26), one sitting, release build: what a dashboard's small
queries cost through sluice against PostgreSQL on this machine, and TPC-H against DuckDB.

  1. pgbench -M prepared `SELECT 1`, 1 and 16 clients: sluice (result cache off) vs
     PostgreSQL; the gateway's CPU time per statement;
  2. a point query on a 25-row table (`WHERE n_nationkey = :k`, k random), -M prepared,
     1 and 16 clients: sluice with the result cache off, and on (every execution after the
     first 25 a hit), vs PostgreSQL's primary-key lookup on the same rows;
  3. TPC-H SF`scale`, the 22 queries through psycopg (cache off), median of `runs` each,
     vs DuckDB (2 threads) on the same Parquet files; each query's row count compared.

Usage: bench/interactive.py BINARY [scale=1] [seconds=10] [runs=3]
One JSON object per figure on stdout, then the table as Markdown.
"""
import json
import pathlib
import sys

import duckdb
import psycopg

from operations import cpu_seconds
from serving import pgbench, sluice, tpch_duckdb, tpch_times, wait_ready

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINARY = pathlib.Path(sys.argv[1]).resolve()
SCALE = sys.argv[2] if len(sys.argv) > 2 else "1"
SECONDS = int(sys.argv[3]) if len(sys.argv) > 3 else 10
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
OUT = ROOT / "bench" / "out" / "interactive"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
POSTGRES = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "test"]
POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
SELECT_ONE = "SELECT 1"
POINT = "\\set k random(0, 24)\nSELECT * FROM {table} WHERE n_nationkey = :k"

figures = []


def emit(**figure):
    figures.append(figure)
    print(json.dumps(figure), flush=True)


def load_postgres_nation():
    """The demo's nation table in PostgreSQL, with its primary key (the reference lookup)."""
    rows = duckdb.sql(f"select * from read_parquet('{DATA}/tpch/nation/*.parquet') order by 1").fetchall()
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute("drop table if exists bench_nation")
        conn.execute("create table bench_nation (n_nationkey bigint primary key, n_name text, "
                     "n_regionkey bigint, n_comment text)")
        with conn.cursor() as cur:
            cur.executemany("insert into bench_nation values (%s, %s, %s, %s)", rows)
        conn.execute("vacuum analyze bench_nation")


def run_pgbench(name, server, args, password, sql, clients, pid=None):
    pgbench(OUT, args, password, sql, clients, 2, mode="prepared")  # warm-up
    used = cpu_seconds(pid) if pid else 0
    tps, failed = pgbench(OUT, args, password, sql, clients, SECONDS, mode="prepared")
    if failed:
        raise SystemExit(f"{name} on {server}: {failed} failed transactions")
    figure = {"measure": name, "server": server, "clients": clients, "tps": round(tps)}
    if pid:
        figure["gateway_cpu_us_per_statement"] = round((cpu_seconds(pid) - used) / (tps * SECONDS) * 1e6, 1)
    emit(**figure)


def tpch_sluice(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return tpch_times(lambda sql: conn.execute(sql).fetchall(), RUNS)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    # The result cache off: every execution runs.
    with sluice(None, DATA, OUT, SCALE, "[cache]\nenabled = false\n", BINARY) as (proc, endpoints, token):
        host, port = endpoints["pg"].rsplit(":", 1)
        dsn = f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable"
        wait_ready(dsn)
        load_postgres_nation()
        args = ["-h", host, "-p", port, "-U", "bench", "default"]
        for clients in (1, 16):
            run_pgbench("SELECT 1", "sluice", args, token, SELECT_ONE, clients, proc.pid)
            run_pgbench("SELECT 1", "postgres", POSTGRES, None, SELECT_ONE, clients)
            run_pgbench("point query", "sluice", args, token, POINT.format(table="tpch.nation"), clients, proc.pid)
            run_pgbench("point query", "postgres", POSTGRES, None, POINT.format(table="bench_nation"), clients)
        sluice_times, sluice_counts = tpch_sluice(dsn)
    duck_times, duck_counts = tpch_duckdb(DATA, RUNS)
    for n in range(1, 23):
        emit(measure="tpch", query=n, sluice_s=round(sluice_times[n], 4), duckdb_s=round(duck_times[n], 4),
             rows_equal=sluice_counts[n] == duck_counts[n])
    # The result cache on: the point query's executions are hits once each key ran once.
    with sluice(None, DATA, OUT, SCALE, "", BINARY) as (proc, endpoints, token):
        host, port = endpoints["pg"].rsplit(":", 1)
        dsn = f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable"
        wait_ready(dsn)
        args = ["-h", host, "-p", port, "-U", "bench", "default"]
        for clients in (1, 16):
            run_pgbench("point query, cache on", "sluice", args, token, POINT.format(table="tpch.nation"), clients,
                        proc.pid)
            run_pgbench("point query, cache on", "postgres", POSTGRES, None, POINT.format(table="bench_nation"),
                        clients)
    report(sluice_times, duck_times)


def report(sluice_times, duck_times):
    def tps(measure, server, clients):
        return next(f for f in figures if f.get("measure") == measure and f["server"] == server
                    and f.get("clients") == clients)

    print()
    print("| measure | clients | sluice | PostgreSQL | ratio | gateway CPU per statement |")
    print("|---|---|---|---|---|---|")
    for measure in ("SELECT 1", "point query", "point query, cache on"):
        for clients in (1, 16):
            s, p = tps(measure, "sluice", clients), tps(measure, "postgres", clients)
            print(f"| {measure} | {clients} | {s['tps']:,} tps | {p['tps']:,} tps | {s['tps'] / p['tps']:.2f} "
                  f"| {s['gateway_cpu_us_per_statement']} µs |")
    total_s, total_d = sum(sluice_times.values()), sum(duck_times.values())
    print(f"\nTPC-H SF{SCALE}, total of medians: sluice {total_s:.2f} s, DuckDB {total_d:.2f} s, "
          f"{total_s / total_d:.2f}x")
    print("\n| query | sluice s | DuckDB s | ratio |")
    print("|---|---|---|---|")
    for n in range(1, 23):
        print(f"| Q{n} | {sluice_times[n]:.3f} | {duck_times[n]:.3f} | {sluice_times[n] / duck_times[n]:.2f} |")
    differing = [f["query"] for f in figures if f.get("measure") == "tpch" and not f["rows_equal"]]
    if differing:
        print(f"\nrow counts differ from DuckDB's: {differing}")


if __name__ == "__main__":
    main()

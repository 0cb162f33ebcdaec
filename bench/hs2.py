"""The measuring side of bench/hs2.sh. One JSON object per measurement, then a summary.

1. `SELECT * FROM tpch.lineitem` through databricks-sql-connector (`fetchall_arrow`): its
   defaults (download links, LZ4), inline pages with LZ4, inline pages without, against
   ADBC Flight SQL on the same server, in the same run.
2. Per-query overhead of `SELECT 1` (connection open, connect excluded): the connector,
   and the same ExecuteStatement as a raw HTTP POST (the server's share: the connector's
   own Python is most of its time), against psycopg on sluice's pg front-end and on
   PostgreSQL (127.0.0.1:5432).
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
from databricks import sql as dbsql

from serving import hs2_raw_select_one

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ["CARGO_TARGET_DIR"])
SCALE, RUNS = sys.argv[1], int(sys.argv[2])
QUERIES = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
OUT = ROOT / "bench" / "out" / "hs2"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
OUT.mkdir(parents=True, exist_ok=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Peak:
    """Samples a process's resident memory every 20 ms while active."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def measure(label, fetch, pid):
    results = []
    peak = Peak(pid)
    for _ in range(RUNS):
        start = time.perf_counter()
        table = fetch()
        seconds = time.perf_counter() - start
        results.append((seconds, table.num_rows, table.nbytes))
        del table
    peak_mib = round(peak.stop() / 1024, 1)
    seconds, rows, nbytes = min(results)
    figure = {"path": label, "seconds": round(seconds, 3), "rows": rows, "bytes": nbytes,
              "gb_per_s": round(nbytes / seconds / 1e9, 3), "rows_per_s": round(rows / seconds),
              "all_seconds": [round(r[0], 3) for r in results], "gateway_peak_rss_mib": peak_mib}
    print(json.dumps(figure), flush=True)
    return figure


def latencies(label, run_one):
    for _ in range(100):  # warm-up
        run_one()
    times = []
    for _ in range(QUERIES):
        start = time.perf_counter()
        run_one()
        times.append(time.perf_counter() - start)
    times.sort()
    figure = {"path": label, "queries": QUERIES, "p50_ms": round(statistics.median(times) * 1e3, 3),
              "p99_ms": round(times[int(len(times) * 0.99)] * 1e3, 3),
              "mean_ms": round(statistics.fmean(times) * 1e3, 3)}
    print(json.dumps(figure), flush=True)
    return figure


def main():
    sluice = subprocess.Popen([str(TARGET / "release" / "sluice"), "serve", "--data-dir", str(DATA),
                               "--demo-scale", SCALE, "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                               "--flight-addr", "127.0.0.1:0"],
                              stdout=open(OUT / "sluice.log", "w"), stderr=subprocess.STDOUT)
    endpoints = DATA / "endpoints.json"
    try:
        endpoints.unlink(missing_ok=True)
        while not endpoints.exists():
            if sluice.poll() is not None:
                raise SystemExit((OUT / "sluice.log").read_text())
            time.sleep(0.5)
        time.sleep(2)
        ep = json.loads(endpoints.read_text())
        token = (DATA / "dev-token").read_text().strip()

        kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
        flight_conn = flight_sql.connect(f"grpc://{ep['flight']}", db_kwargs=kwargs, autocommit=True)

        def adbc():
            with flight_conn.cursor() as cur:
                cur.execute("SELECT * FROM tpch.lineitem")
                return cur.fetch_arrow_table()

        def connector(**options):
            return dbsql.connect(server_hostname="127.0.0.1", http_path="/sql/1.0/warehouses/default",
                                 access_token=token, enable_telemetry=False,
                                 _connection_uri=f"http://{ep['http']}/sql/1.0/warehouses/default", **options)

        def hs2(**options):
            def fetch():
                with connector(**options) as conn, conn.cursor() as cur:
                    cur.execute("SELECT * FROM tpch.lineitem")
                    return cur.fetchall_arrow()
            return fetch

        flight = measure("sluice Flight SQL (ADBC)", adbc, sluice.pid)
        links = measure("sluice HS2, connector defaults (download links, LZ4)", hs2(), sluice.pid)
        inline = measure("sluice HS2, inline pages, LZ4", hs2(use_cloud_fetch=False), sluice.pid)
        plain = measure("sluice HS2, inline pages, no LZ4",
                        hs2(use_cloud_fetch=False, enable_query_result_lz4_compression=False), sluice.pid)
        flight_conn.close()

        with connector() as conn, conn.cursor() as cur:
            def hs2_select_one():
                cur.execute("SELECT 1")
                cur.fetchall()
            hs2_one = latencies("sluice HS2 (databricks-sql-connector) SELECT 1", hs2_select_one)
        # The same statement as the connector sends it, as one pre-encoded POST.
        raw_select_one = hs2_raw_select_one(ep["http"], token)
        raw_one = latencies("sluice HS2, raw ExecuteStatement POST (direct results) SELECT 1", raw_select_one)

        dsn = f"host=127.0.0.1 port={ep['pg'].rsplit(':', 1)[1]} user=bench password={token} dbname=default sslmode=disable"
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg_one = latencies("sluice pg (psycopg) SELECT 1", lambda: pg.execute("SELECT 1").fetchall())
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable",
                             autocommit=True) as pg:
            postgres_one = latencies("PostgreSQL (psycopg) SELECT 1", lambda: pg.execute("SELECT 1").fetchall())

        summary = {
            "hs2_default_vs_flight": round(links["rows_per_s"] / flight["rows_per_s"], 2),
            "hs2_inline_lz4_vs_flight": round(inline["rows_per_s"] / flight["rows_per_s"], 2),
            "hs2_inline_plain_vs_flight": round(plain["rows_per_s"] / flight["rows_per_s"], 2),
            "select1_hs2_p50_ms": hs2_one["p50_ms"],
            "select1_raw_hs2_p50_ms": raw_one["p50_ms"],
            "select1_raw_hs2_minus_sluice_pg_p50_ms": round(raw_one["p50_ms"] - pg_one["p50_ms"], 3),
            "select1_hs2_minus_sluice_pg_p50_ms": round(hs2_one["p50_ms"] - pg_one["p50_ms"], 3),
            "select1_hs2_vs_sluice_pg_p50": round(hs2_one["p50_ms"] / pg_one["p50_ms"], 2),
            "select1_hs2_vs_postgres_p50": round(hs2_one["p50_ms"] / postgres_one["p50_ms"], 2),
        }
        print(json.dumps(summary), flush=True)
    finally:
        sluice.terminate()
        sluice.wait(30)


if __name__ == "__main__":
    main()

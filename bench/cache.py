"""The measuring side of bench/cache.sh. One JSON object per measurement, then a summary."""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg

import serving

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ["CARGO_TARGET_DIR"])
SCALE = sys.argv[1]
OUT = ROOT / "bench" / "out" / "cache"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
OUT.mkdir(parents=True, exist_ok=True)
QUERIES = ROOT / "conformance" / "tpch" / "queries"
CLIENTS = 16
PASSES = 3
BUDGET = 256 << 20

# A dashboard: twelve aggregates, each a visual, with small results.
DASHBOARD = [(QUERIES / f"q{n}.sql").read_text() for n in (1, 3, 4, 5, 6, 10, 12, 14)] + [
    "select extract(year from o_orderdate) as y, sum(o_totalprice) from tpch.orders group by 1 order by 1",
    "select c_mktsegment, count(*), avg(c_acctbal) from tpch.customer group by 1 order by 1",
    "select l_shipmode, sum(l_quantity), count(*) from tpch.lineitem group by 1 order by 1",
    "select p_brand, count(*) from tpch.part group by 1 order by 2 desc, 1 limit 10",
]
# The hit measured alone: a small result, as a card or a slicer asks for it.
SMALL = "select l_returnflag, l_linestatus, count(*) from tpch.lineitem group by 1, 2 order by 1, 2"

CONFIG = f"""
[warehouses.default]
min_workers = 4
max_workers = 4

[cache]
memory_budget = "{BUDGET}"
"""


def dashboard_pass(dsn):
    """Every client runs the twelve queries (each from a different one); seconds for all."""
    errors = []
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS + 1)

    def client(i):
        barrier.wait()
        try:
            for k in range(len(DASHBOARD)):
                conns[i].execute(DASHBOARD[(i + k) % len(DASHBOARD)]).fetchall()
        except Exception as e:  # counted, reported
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for c in conns:
        c.close()
    return seconds, errors


def pgbench(dsn_args, password, sql, clients, seconds, log_prefix=None):
    return serving.pgbench(OUT, dsn_args, password, sql, clients, seconds, log_prefix)


def latencies(prefix):
    values = []
    for path in OUT.glob(pathlib.Path(prefix).name + "*"):
        for line in path.read_text().splitlines():
            values.append(int(line.split()[2]) / 1000.0)
    values.sort()
    return values


def main():
    with serving.sluice(TARGET, DATA, OUT, SCALE, CONFIG) as (sluice, ep, token):
        host, port = ep["pg"].rsplit(":", 1)
        http = f"http://{ep['http']}"
        dsn = f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable"
        def health():
            # The details of /healthz are for a MONITOR principal (the dev token is one).
            req = urllib.request.Request(f"{http}/healthz", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())

        while True:
            try:
                health_now = health()
                if all(w["state"] == "ready" for w in health_now["warehouses"][0]["workers"]) \
                        and len(health_now["warehouses"][0]["workers"]) == 4:
                    break
            except OSError:
                pass
            time.sleep(0.5)

        def clear():
            req = urllib.request.Request(f"{http}/api/2.0/sluice/cache", method="DELETE",
                                         headers={"Authorization": f"Bearer {token}"})
            urllib.request.urlopen(req, timeout=30).read()

        rss_at_start = serving.rss_bytes(sluice.pid)
        # 1. Dashboard, cold then warm, a few times.
        passes = []
        for _ in range(PASSES):
            clear()
            cold, cold_errors = dashboard_pass(dsn)
            warm, warm_errors = dashboard_pass(dsn)
            figure = {"measure": "dashboard", "clients": CLIENTS, "queries": len(DASHBOARD),
                      "cold_s": round(cold, 3), "warm_s": round(warm, 4), "speedup": round(cold / warm, 1),
                      "errors": len(cold_errors) + len(warm_errors), "cache": health()["cache"]}
            print(json.dumps(figure), flush=True)
            passes.append(figure)

        # 2. One client, hits through pg.
        with psycopg.connect(dsn, autocommit=True) as c:
            rows = c.execute(SMALL).fetchall()
        pg_args = ["-h", host, "-p", port, "-U", "bench", "default"]
        pgbench(pg_args, token, SMALL, 1, 10, log_prefix=str(OUT / "hit"))
        lat = latencies(str(OUT / "hit"))
        hit = {"measure": "hit_latency_pg", "statements": len(lat),
               "p50_ms": round(lat[len(lat) // 2], 3), "p99_ms": round(lat[int(len(lat) * 0.99)], 3)}
        print(json.dumps(hit), flush=True)

        # 3. Hits/s with 16 clients against PostgreSQL answering the same rows from a table.
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as pg:
            pg.execute("drop table if exists bench_cache_small")
            pg.execute("create table bench_cache_small (l_returnflag text, l_linestatus text, count bigint)")
            with pg.cursor() as cur:
                cur.executemany("insert into bench_cache_small values (%s, %s, %s)", rows)
        throughput = []
        for _ in range(2):
            sluice_tps, sluice_failed = pgbench(pg_args, token, SMALL, CLIENTS, 10)
            pg_tps, pg_failed = pgbench(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "test"], None,
                                        "select * from bench_cache_small order by 1, 2", CLIENTS, 10)
            figure = {"measure": "hits_per_s", "clients": CLIENTS, "sluice_tps": round(sluice_tps),
                      "postgres_tps": round(pg_tps), "ratio": round(sluice_tps / pg_tps, 3),
                      "failed": sluice_failed + pg_failed}
            print(json.dumps(figure), flush=True)
            throughput.append(figure)

        # 4. Memory.
        cache = health()["cache"]
        memory = {"measure": "memory", "cache_bytes": cache["bytes"], "budget": cache["budget"],
                  "entries": cache["entries"], "gateway_rss_at_start": rss_at_start,
                  "gateway_rss_bytes": serving.rss_bytes(sluice.pid)}
        print(json.dumps(memory), flush=True)

        summary = {
            "dashboard_cold_s": [p["cold_s"] for p in passes],
            "dashboard_warm_s": [p["warm_s"] for p in passes],
            "dashboard_speedup_median": statistics.median(p["speedup"] for p in passes),
            "hit_p50_ms": hit["p50_ms"], "hit_p99_ms": hit["p99_ms"],
            "hits_per_s_vs_postgres": [t["ratio"] for t in throughput],
            "cache_bytes_vs_budget": f"{cache['bytes']} / {cache['budget']}",
            "errors": sum(p["errors"] for p in passes) + sum(t["failed"] for t in throughput),
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

"""The measuring side of bench/warehouses.sh. One JSON object per measurement, then a summary.
BINARY=path and BENCH=path measure given sluice and sluice-bench binaries (default: the
release build in $CARGO_TARGET_DIR)."""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

import psycopg

import serving

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ["CARGO_TARGET_DIR"])
BINARY = os.environ.get("BINARY")
BENCH = os.environ.get("BENCH") or str(TARGET / "release" / "sluice-bench")
SCALE = sys.argv[1]
OUT = ROOT / "bench" / "out" / "warehouses"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
OUT.mkdir(parents=True, exist_ok=True)
QUERIES = ROOT / "conformance" / "tpch" / "queries"
Q1, Q6 = (QUERIES / "q1.sql").read_text(), (QUERIES / "q6.sql").read_text()
CLIENTS = 32
COLD_RUNS = 5
# Autoscaled and fixed bursts alternate, so that neither always runs on a warmer machine.
BURST_PAIRS = 2

CONFIG = """
# Every query must run on a worker: the result cache is off (bench/cache.sh measures it).
[cache]
enabled = false

[warehouses.default]
workers = 1

[warehouses.cold]
min_workers = 0
max_workers = 1
auto_stop = "1s"

[warehouses.auto]
min_workers = 1
max_workers = 4
max_concurrency_per_worker = 8
auto_stop = "3s"

[warehouses.fixed]
workers = 4
max_concurrency_per_worker = 8
"""


def state(monitor, name):
    return monitor.execute("select state, workers, starting, queued from system.warehouses where name = %s",
                           [name]).fetchone()


def cold_starts(dsn, monitor):
    figures = []
    for _ in range(COLD_RUNS):
        while state(monitor, "cold")[0] != "stopped":
            time.sleep(0.2)
        with psycopg.connect(dsn("cold"), autocommit=True) as conn:
            started = time.perf_counter()
            cur = conn.execute("select r_name from tpch.region limit 1")
            cur.fetchone()
            cold = time.perf_counter() - started
            started = time.perf_counter()
            conn.execute("select r_name from tpch.region limit 1").fetchone()
            warm = time.perf_counter() - started
        figures.append((cold, warm))
    cold = sorted(f[0] for f in figures)
    figure = {"path": "cold start: stopped warehouse -> first row", "runs": COLD_RUNS,
              "median_ms": round(statistics.median(cold) * 1e3, 1), "max_ms": round(cold[-1] * 1e3, 1),
              "all_ms": [round(c * 1e3, 1) for c in cold],
              "same_query_warm_median_ms": round(statistics.median(f[1] for f in figures) * 1e3, 1)}
    print(json.dumps(figure), flush=True)
    return figure


def burst(dsn, monitor, name):
    """32 clients, each Q1 then Q6 (or Q6 then Q1), all starting at once."""
    connections = [psycopg.connect(dsn(name), autocommit=True) for _ in range(CLIENTS)]
    start = threading.Barrier(CLIENTS + 1)
    latencies, errors = [], []
    lock = threading.Lock()

    def client(i, conn):
        start.wait()
        for sql in ([Q1, Q6] if i % 2 == 0 else [Q6, Q1]):
            began = time.perf_counter()
            try:
                conn.execute(sql).fetchall()
                with lock:
                    latencies.append(time.perf_counter() - began)
            except psycopg.Error as e:
                with lock:
                    errors.append(f"{e.sqlstate}: {e}")

    threads = [threading.Thread(target=client, args=(i, c)) for i, c in enumerate(connections)]
    for t in threads:
        t.start()
    workers_at = {}
    start.wait()
    began = time.perf_counter()
    while any(t.is_alive() for t in threads):
        workers = state(monitor, name)[1]
        if workers not in workers_at:
            workers_at[workers] = round(time.perf_counter() - began, 3)
        time.sleep(0.05)
    wall = time.perf_counter() - began
    for conn in connections:
        conn.close()
    latencies.sort()
    figure = {"path": f"burst of {CLIENTS} clients, Q1+Q6 each, warehouse {name}",
              "queries": len(latencies), "errors": len(errors), "first_errors": errors[:3],
              "wall_s": round(wall, 2), "queries_per_s": round(len(latencies) / wall, 3),
              "p50_s": round(statistics.median(latencies), 3),
              "p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
              "seconds_to_reach_n_workers": workers_at}
    print(json.dumps(figure), flush=True)
    return figure


def main():
    with serving.sluice(TARGET, DATA, OUT, SCALE, CONFIG, BINARY) as (_, ep, token):
        time.sleep(3)
        port = ep["pg"].rsplit(":", 1)[1]

        def dsn(db):
            return f"host=127.0.0.1 port={port} user=bench password={token} dbname={db} sslmode=disable"

        monitor = psycopg.connect(dsn("default"), autocommit=True)
        cold = cold_starts(dsn, monitor)
        pairs = []
        for _ in range(BURST_PAIRS):
            # The autoscaled pool starts each burst from min_workers.
            while state(monitor, "auto")[1] != 1:
                time.sleep(0.2)
            pairs.append((burst(dsn, monitor, "auto"), burst(dsn, monitor, "fixed")))
        out = subprocess.run([BENCH, "overhead", str(DATA / "tpch"), dsn("fixed"),
                              "30", "select count(*) from tpch.nation", "select count(*) from tpch.lineitem", Q6],
                             capture_output=True, text=True, check=True)
        overhead = [json.loads(line) for line in out.stdout.strip().splitlines()]
        for figure in overhead:
            print(json.dumps(figure), flush=True)
        ratios = [round(a["queries_per_s"] / f["queries_per_s"], 3) for a, f in pairs]
        summary = {
            "cold_start_median_ms": cold["median_ms"],
            "seconds_to_4_workers": [a["seconds_to_reach_n_workers"].get(4) for a, _ in pairs],
            "autoscaled_vs_fixed_throughput_per_pair": ratios,
            "autoscaled_vs_fixed_throughput_mean": round(statistics.fmean(ratios), 3),
            "errors": sum(a["errors"] + f["errors"] for a, f in pairs),
            "overhead_ms": {f["sql"][:40]: f["overhead_ms"] for f in overhead},
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

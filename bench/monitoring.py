"""Monitoring's cost (issue 27), one sitting, release build.

  1. pgbench -M prepared `SELECT 1` (1 and 16 clients, result cache off): the gateway with
     the series recorded and with them off, alternating `rounds` times; throughput and the
     gateway's CPU per statement. The cost of recording is the difference.
  2. The admin page after a load (the pgbench rounds and TPC-H Q1 a few times): the
     gateway's time to answer /ui for each chart window, /ui/history and a query profile
     page (median of 30, signed in with the dev token's cookie).
  3. What recording one statement in the series costs, alone (`sluice-bench series-cost`,
     next to BINARY): ns per call, from one thread and from one per core at once; as a share
     of the gateway's CPU per `SELECT 1` measured in 1. Fresh gateways differ by a few per
     cent in throughput from run to run, more than recording can cost: 3. is the figure
     that resolves it.

Usage: bench/monitoring.py BINARY [scale=1] [seconds=10] [rounds=3]
One JSON object per figure on stdout, then the tables as Markdown.
"""
import http.cookiejar
import json
import pathlib
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg

from operations import cpu_seconds
from serving import pgbench, sluice, wait_ready

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINARY = pathlib.Path(sys.argv[1]).resolve()
SCALE = sys.argv[2] if len(sys.argv) > 2 else "1"
SECONDS = int(sys.argv[3]) if len(sys.argv) > 3 else 10
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
OUT = ROOT / "bench" / "out" / "monitoring"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
Q1 = (ROOT / "conformance" / "tpch" / "queries" / "q1.sql").read_text()

figures = []


def emit(**figure):
    figures.append(figure)
    print(json.dumps(figure), flush=True)


def select_one(series, clients, rnd):
    config = "[cache]\nenabled = false\n" + ("" if series else "[metrics]\nseries = false\n")
    with sluice(None, DATA, OUT, SCALE, config, BINARY) as (proc, endpoints, token):
        host, port = endpoints["pg"].rsplit(":", 1)
        wait_ready(f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable")
        args = ["-h", host, "-p", port, "-U", "bench", "default"]
        pgbench(OUT, args, token, "SELECT 1", clients, 2, mode="prepared")  # warm-up
        used = cpu_seconds(proc.pid)
        tps, failed = pgbench(OUT, args, token, "SELECT 1", clients, SECONDS, mode="prepared")
        cpu = cpu_seconds(proc.pid) - used
        if failed:
            raise SystemExit(f"{failed} failed transactions")
        emit(measure="SELECT 1", series=series, clients=clients, round=rnd, tps=round(tps),
             gateway_cpu_us_per_statement=round(cpu / (tps * SECONDS) * 1e6, 2))


def page_times():
    with sluice(None, DATA, OUT, SCALE, "", BINARY) as (proc, endpoints, token):
        host, port = endpoints["pg"].rsplit(":", 1)
        dsn = f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable"
        wait_ready(dsn)
        args = ["-h", host, "-p", port, "-U", "bench", "default"]
        pgbench(OUT, args, token, "SELECT 1", 4, 5, mode="prepared")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(3):
                conn.execute(Q1.replace("select", f"select 'bench-{i}' as marker,", 1)).fetchall()
        time.sleep(11)  # a 10-second bucket closes
        jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
        base = f"http://{endpoints['http']}"
        try:
            opener.open(urllib.request.Request(f"{base}/ui/login", data=urllib.parse.urlencode(
                {"token": token}).encode(), method="POST"))
        except urllib.error.HTTPError as e:
            assert e.code == 303, e
        history = opener.open(f"{base}/ui/history?text=bench-").read().decode()
        profile = re.search(r'href="(/ui/queries/[^"]+)"', history).group(1)
        pages = [(f"/ui?window={w}", f"overview, last {w}") for w in ("15m", "1h", "24h", "7d")]
        pages += [("/ui/history", "history (100 rows)"), (profile, "query profile (TPC-H Q1)")]
        for path, name in pages:
            times, size = [], 0
            for _ in range(30):
                start = time.perf_counter()
                body = opener.open(base + path).read()
                times.append(time.perf_counter() - start)
                size = len(body)
            emit(measure="page", page=name, median_ms=round(statistics.median(times) * 1e3, 2),
                 p95_ms=round(sorted(times)[28] * 1e3, 2), bytes=size)


def series_cost():
    run = subprocess.run([str(BINARY.parent / "sluice-bench"), "series-cost", "2000000"], capture_output=True,
                         text=True, check=True)
    figure = json.loads(run.stdout.strip().splitlines()[-1])
    emit(**figure)
    return figure


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    for rnd in range(ROUNDS):
        for clients in (1, 16):
            for series in (True, False):
                select_one(series, clients, rnd)
    page_times()
    cost = series_cost()
    print()
    print("| SELECT 1 | series on | series off | on / off | CPU per statement on | off |")
    print("|---|---|---|---|---|---|")
    for clients in (1, 16) if ROUNDS else ():
        def med(series, key):
            return statistics.median(f[key] for f in figures if f.get("measure") == "SELECT 1"
                                     and f["series"] == series and f["clients"] == clients)
        on, off = med(True, "tps"), med(False, "tps")
        print(f"| {clients} clients | {on:,.0f} tps | {off:,.0f} tps | {on / off:.3f} | "
              f"{med(True, 'gateway_cpu_us_per_statement')} µs | {med(False, 'gateway_cpu_us_per_statement')} µs |")
    cpu = [f["gateway_cpu_us_per_statement"] for f in figures if f.get("measure") == "SELECT 1"]
    if cpu:
        per = round(statistics.median(cpu), 1)
        print(f"\nRecording one statement: {cost['ns_per_call_one_thread']} ns (one thread), "
              f"{cost['thread_ns_per_call_contended']} ns ({cost['threads']} threads at once); "
              f"{cost['thread_ns_per_call_contended'] / (per * 1e3) * 100:.3f} % of the gateway's "
              f"{per} µs of CPU per SELECT 1")
    print()
    print("| page | median | p95 | size |")
    print("|---|---|---|---|")
    for f in figures:
        if f.get("measure") == "page":
            print(f"| {f['page']} | {f['median_ms']} ms | {f['p95_ms']} ms | {f['bytes'] // 1024} KiB |")


if __name__ == "__main__":
    main()

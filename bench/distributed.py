"""The measuring side of bench/distributed.sh. One JSON object per measurement on stdout,
then a summary table (also in bench/out/distributed/summary.md)."""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import psycopg

import serving

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ["CARGO_TARGET_DIR"])
BINARY = TARGET / "release" / "sluice"
SCALE, ROUNDS = sys.argv[1], int(sys.argv[2])
OUT = ROOT / "bench" / "out" / "distributed"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
OUT.mkdir(parents=True, exist_ok=True)
DATA.mkdir(parents=True, exist_ok=True)
QUERIES = {n: (ROOT / "conformance" / "tpch" / "queries" / f"q{n}.sql").read_text() for n in range(1, 23)}
SCAN_HEAVY = [1, 6, 9, 18]
SECRET = "bench-distributed-secret-0123456789"
SMALL = {
    "point": "select n_name from tpch.nation where n_nationkey = 7",
    "count": "select count(*) from tpch.region",
}
SMALL_RUNS, SMALL_BLOCKS = 300, 5


def start_worker(core):
    """`sluice worker` on 127.0.0.1, one query thread, pinned to `core`."""
    addr = f"127.0.0.1:{serving.free_port()}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}, "SLUICE_WORKER_SECRET": SECRET}
    proc = subprocess.Popen(["taskset", "-c", str(core), str(BINARY), "worker", "--listen", addr, "--threads", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=open(OUT / f"worker{core}.log", "w"), text=True)
    line = proc.stdout.readline()
    assert line.startswith("SLUICE_WORKER_LISTENING"), line
    return proc, addr


def wchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def newest(conn, warehouse):
    """stages, tasks, workers of the warehouse's newest history record (written within a
    moment of the query's end)."""
    time.sleep(0.3)
    return conn.execute("select stages, tasks, workers from system.query_history where warehouse = %s "
                        "order by end_time desc limit 1", [warehouse]).fetchone()


def emit(**figure):
    print(json.dumps(figure), flush=True)


def main():
    w0, a0 = start_worker(0)
    w1, a1 = start_worker(1)
    config = f"""
[cache]
enabled = false

[warehouses.default]
workers = 1

[warehouses.one]
worker_addrs = ["{a0}"]
worker_secret = "{SECRET}"
distributed = "off"

[warehouses.two]
worker_addrs = ["{a0}", "{a1}"]
worker_secret = "{SECRET}"
distributed = "always"

[warehouses.auto]
worker_addrs = ["{a0}", "{a1}"]
worker_secret = "{SECRET}"

[warehouses.off]
worker_addrs = ["{a0}", "{a1}"]
worker_secret = "{SECRET}"
distributed = "off"
"""
    try:
        with serving.sluice(TARGET, DATA, OUT, SCALE, config, binary=BINARY) as (gateway, ends, token):
            host, port = ends["pg"].rsplit(":", 1)

            def connect(db):
                return psycopg.connect(host=host, port=port, user="bench", password=token, dbname=db,
                                       sslmode="disable", autocommit=True)

            conns = {name: connect(name) for name in ["one", "two", "auto", "off"]}
            time.sleep(3)  # the static workers' first health checks
            for name, conn in conns.items():
                conn.execute("select count(*) from tpch.nation").fetchall()
            rss_before = serving.rss_bytes(gateway.pid)
            times = {"one": {n: [] for n in QUERIES}, "two": {n: [] for n in QUERIES}}
            moved = {n: [] for n in QUERIES}
            shape = {}
            # Warm the page cache and both paths once.
            for n, sql in QUERIES.items():
                conns["one"].execute(sql).fetchall()
                conns["two"].execute(sql).fetchall()
            for r in range(ROUNDS):
                for n, sql in QUERIES.items():
                    order = ["one", "two"] if r % 2 == 0 else ["two", "one"]
                    for name in order:
                        before = wchar(w0.pid) + wchar(w1.pid)
                        started = time.perf_counter()
                        rows = conns[name].execute(sql).fetchall()
                        took = time.perf_counter() - started
                        times[name][n].append(took)
                        if name == "two":
                            moved[n].append(wchar(w0.pid) + wchar(w1.pid) - before)
                            if r == 0:
                                shape[n] = newest(conns["off"], "two")
                        emit(kind="tpch", round=r, query=n, path=name, seconds=took, rows=len(rows))
            gateway_peak = serving.rss_bytes(gateway.pid, "VmHWM")
            # Small queries: auto (the default) against off, interleaved blocks.
            small = {name: {k: [] for k in SMALL} for name in ["auto", "off"]}
            for b in range(SMALL_BLOCKS):
                for name in (["auto", "off"] if b % 2 == 0 else ["off", "auto"]):
                    for k, sql in SMALL.items():
                        cur = conns[name]
                        started = time.perf_counter()
                        for _ in range(SMALL_RUNS):
                            cur.execute(sql).fetchall()
                        per = (time.perf_counter() - started) / SMALL_RUNS
                        small[name][k].append(per)
                        emit(kind="small", block=b, path=name, query=k, ms=per * 1e3)
            for conn in conns.values():
                conn.close()
    finally:
        w0.kill()
        w1.kill()

    med = lambda xs: statistics.median(xs)
    lines = ["| query | 1 worker (s) | 2 workers distributed (s) | speed-up | stages / tasks / workers | bytes sent by workers |",
             "|---|---|---|---|---|---|"]
    for n in QUERIES:
        one, two = med(times["one"][n]), med(times["two"][n])
        s = shape.get(n)
        lines.append(f"| q{n} | {one:.3f} | {two:.3f} | {one / two:.2f} | "
                     f"{'/'.join(str(x) for x in s) if s else '-'} | {med(moved[n]) / 1e6:.1f} MB |")
    total_one = sum(med(times["one"][n]) for n in QUERIES)
    total_two = sum(med(times["two"][n]) for n in QUERIES)
    heavy_one = sum(med(times["one"][n]) for n in SCAN_HEAVY)
    heavy_two = sum(med(times["two"][n]) for n in SCAN_HEAVY)
    lines.append(f"| **22 total** | {total_one:.3f} | {total_two:.3f} | {total_one / total_two:.2f} | | |")
    lines.append(f"| **Q1+Q6+Q9+Q18** | {heavy_one:.3f} | {heavy_two:.3f} | {heavy_one / heavy_two:.2f} | | |")
    lines.append("")
    lines.append("| small query | auto (ms) | off (ms) | auto / off |")
    lines.append("|---|---|---|---|")
    for k in SMALL:
        a, o = med(small["auto"][k]), med(small["off"][k])
        lines.append(f"| {k} | {a * 1e3:.3f} | {o * 1e3:.3f} | {a / o:.3f} |")
    lines.append("")
    lines.append(f"gateway resident memory: {rss_before / 2**20:.0f} MiB before the TPC-H runs, "
                 f"peak {gateway_peak / 2**20:.0f} MiB (VmHWM) after them")
    summary = "\n".join(lines)
    (OUT / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()

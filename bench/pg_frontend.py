#!/usr/bin/env python3
"""pg front-end benchmarks: pgbench TPS and p99 latency, sluice vs PostgreSQL in the same
run, and the gateway's memory with 1,000 idle connections.

    bench/pg_frontend.sh   (builds the release binary, starts sluice, runs this)

Scripts: `SELECT 1` (answered by the gateway) and a point query on a 25-row table
(`nation`; in sluice it runs on a worker). Clients 1, 16, 64; `-M prepared`; each run
10 s. p99 comes from pgbench's per-transaction log.
"""
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg

SLUICE_DSN, SLUICE_PID, OUT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
PG = dict(host="127.0.0.1", port="5432", user="postgres", dbname="test")


def parse_dsn(dsn):
    return dict(part.split("=", 1) for part in dsn.split())


def pgbench(target, script, clients):
    logdir = tempfile.mkdtemp(prefix="pgbench-", dir=OUT)
    env = dict(os.environ, PGPASSWORD=target.get("password", ""))
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 4)),
           "-T", str(DURATION), "-f", script, "-l", "--log-prefix", f"{logdir}/tx",
           "-h", target["host"], "-p", target["port"], "-U", target["user"], target["dbname"]]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DURATION * 6 + 60)
    if run.returncode != 0:
        sys.exit(run.stdout + run.stderr)
    tps = float(next(l for l in run.stdout.splitlines() if l.startswith("tps")).split()[2])
    failed = next((l for l in run.stdout.splitlines() if "failed transactions" in l), "")
    latencies = []
    for path in glob.glob(f"{logdir}/tx*"):
        with open(path) as f:
            latencies.extend(int(line.split()[2]) for line in f if line.strip())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] / 1000 if latencies else float("nan")
    p50 = statistics.median(latencies) / 1000 if latencies else float("nan")
    return {"tps": tps, "p50_ms": p50, "p99_ms": p99, "failed": failed.strip()}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


def main():
    sluice = parse_dsn(SLUICE_DSN)
    sluice["dbname"] = "sluice"
    # The point-query table in PostgreSQL, with sluice's rows.
    with psycopg.connect(SLUICE_DSN, autocommit=True) as s:
        rows = s.execute("SELECT n_nationkey, n_name, n_regionkey, n_comment FROM tpch.nation").fetchall()
    with psycopg.connect(**PG, autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS tpch")
        c.execute("DROP TABLE IF EXISTS tpch.nation")
        c.execute("CREATE TABLE tpch.nation (n_nationkey bigint PRIMARY KEY, n_name text, "
                  "n_regionkey bigint, n_comment text)")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO tpch.nation VALUES (%s, %s, %s, %s)", rows)
    scripts = {}
    for name, sql in [("select1", "SELECT 1;\n"),
                      ("point", "\\set k random(0, 24)\nSELECT n_name FROM tpch.nation WHERE n_nationkey = :k;\n")]:
        scripts[name] = os.path.join(OUT, f"{name}.sql")
        with open(scripts[name], "w") as f:
            f.write(sql)
    results = []
    for name, script in scripts.items():
        for clients in (1, 16, 64):
            # Interleaved: PostgreSQL, then sluice, for each cell.
            pg = pgbench(PG, script, clients)
            ours = pgbench(sluice, script, clients)
            row = {"script": name, "clients": clients, "postgres": pg, "sluice": ours,
                   "ratio": ours["tps"] / pg["tps"]}
            results.append(row)
            print(f"{name:8} c={clients:3}  postgres {pg['tps']:9.0f} tps p99 {pg['p99_ms']:7.2f} ms"
                  f" | sluice {ours['tps']:9.0f} tps p99 {ours['p99_ms']:7.2f} ms"
                  f" | ratio {row['ratio']:.2f}", flush=True)
    # 1,000 idle connections.
    time.sleep(1)
    idle_before = rss_kib(SLUICE_PID)
    conns = [psycopg.connect(SLUICE_DSN, autocommit=True) for _ in range(1000)]
    for c in conns[:10]:
        c.execute("SELECT 1")
    time.sleep(2)
    with_idle = rss_kib(SLUICE_PID)
    for c in conns:
        c.close()
    extra_mib = (with_idle - idle_before) / 1024
    print(f"gateway RSS: {idle_before / 1024:.1f} MiB idle, {with_idle / 1024:.1f} MiB with 1,000 "
          f"idle connections (+{extra_mib:.1f} MiB, {extra_mib * 1024 / 1000:.1f} KiB each)")
    with open(os.path.join(OUT, "pg_frontend.json"), "w") as f:
        json.dump({"pgbench": results, "rss_idle_kib": idle_before,
                   "rss_1000_idle_kib": with_idle}, f, indent=1)


if __name__ == "__main__":
    main()

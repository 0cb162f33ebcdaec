"""Faults under load: clients on pg (psycopg), Flight SQL (ADBC) and HS2
(databricks-sql-connector) run the 22 TPC-H queries while a worker is killed (SIGKILL)
every few seconds. Every answer must be right (DuckDB's reference answers), every error a
clean one (the worker was lost: a message that says so, never a protocol or internal
error), and no client may hang.

Used by conformance/test_chaos.py (a short run) and bench/chaos.sh (a long one):

    python conformance/chaos.py SECONDS KILL_EVERY_SECONDS
"""
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
from databricks import sql as dbsql

from tpch_answers import QUERIES, assert_matches, query

CONFIG = """
[cache]
enabled = false

[warehouses.default]
min_workers = 2
max_workers = 3
statement_timeout = "120s"
"""

# What a lost worker may be called in an error; what must never show.
CLEAN = ("worker",)
UNCLEAN = ("protocol error", "recordbatch prior to schema", "xx000", "internal error", "panicked")


def classify(message: str, code: str = "") -> str:
    text = message.lower()
    if code == "XX000" or any(m in text for m in UNCLEAN):
        return "unclean"
    return "clean" if any(m in text for m in CLEAN) else "unclean"


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.right = {}
        self.wrong = []
        self.clean = {}
        self.unclean = []

    def add(self, front, outcome, detail=None):
        with self.lock:
            if outcome == "right":
                self.right[front] = self.right.get(front, 0) + 1
            elif outcome == "clean":
                self.clean[front] = self.clean.get(front, 0) + 1
            elif outcome == "wrong":
                self.wrong.append((front, detail))
            else:
                self.unclean.append((front, detail))


def pg_client(server, until, tally):
    while time.time() < until:
        try:
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                for n in QUERIES:
                    if time.time() >= until:
                        return
                    try:
                        rows = conn.execute(query(n)).fetchall()
                    except psycopg.Error as e:
                        tally.add("pg", classify(str(e), e.sqlstate or ""), f"q{n}: {e.sqlstate} {e}")
                        if conn.closed:
                            break
                        continue
                    check(tally, "pg", n, rows)
        except psycopg.Error as e:
            tally.add("pg", classify(str(e), e.sqlstate or ""), f"connect: {e}")


def flight_client(server, until, tally):
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    while time.time() < until:
        with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
            for n in QUERIES:
                if time.time() >= until:
                    return
                try:
                    with conn.cursor() as cur:
                        cur.execute(query(n))
                        rows = cur.fetchall()
                except Exception as e:  # ADBC raises its own error types, gRPC status in text
                    tally.add("flight", classify(str(e)), f"q{n}: {e}")
                    continue
                check(tally, "flight", n, rows)


def hs2_client(server, until, tally):
    while time.time() < until:
        with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                           access_token=server.token,
                           _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default",
                           enable_telemetry=False) as conn:
            for n in QUERIES:
                if time.time() >= until:
                    return
                try:
                    with conn.cursor() as cur:
                        cur.execute(query(n))
                        rows = cur.fetchall()
                except Exception as e:
                    tally.add("hs2", classify(str(e)), f"q{n}: {e}")
                    continue
                check(tally, "hs2", n, [tuple(r) for r in rows])


def check(tally, front, n, rows):
    try:
        assert_matches(n, rows)
    except AssertionError as e:
        tally.add(front, "wrong", str(e))
        return
    tally.add(front, "right")


def workers(server):
    req = urllib.request.Request(f"{server.http_url}/healthz",
                                 headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    return [w["pid"] for w in body["warehouses"][0]["workers"] if w.get("pid")]


def killer(server, until, every, kills):
    rng = random.Random(7)
    while time.time() < until:
        next_kill = time.time() + every
        while time.time() < min(next_kill, until):
            time.sleep(0.1)
        if time.time() >= until:
            return
        try:
            pids = workers(server)
        except OSError:
            continue
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
            except ProcessLookupError:
                pass


def run(server, seconds, every, clients_per_protocol=1):
    """Run the clients and the killer for `seconds`; the tally and the kills. Raises if a
    client is still running long after the end (a hang)."""
    tally, kills = Tally(), []
    until = time.time() + seconds
    threads = [threading.Thread(target=killer, args=(server, until, every, kills), daemon=True)]
    for client in (pg_client, flight_client, hs2_client):
        for _ in range(clients_per_protocol):
            threads.append(threading.Thread(target=client, args=(server, until, tally), daemon=True))
    for t in threads:
        t.start()
    # A query running at the end finishes within the statement timeout.
    for t in threads:
        t.join(max(1, until - time.time()) + 150)
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        raise AssertionError(f"clients still running {seconds + 150} s after the start: {hung}")
    return tally, kills


def summary(tally, kills, seconds):
    return {
        "seconds": seconds,
        "kills": len(kills),
        "right": tally.right,
        "right_total": sum(tally.right.values()),
        "clean_errors": tally.clean,
        "wrong": len(tally.wrong),
        "unclean_errors": len(tally.unclean),
        "examples": (tally.wrong + tally.unclean)[:5],
    }


if __name__ == "__main__":
    import pathlib
    import tempfile

    from conftest import start_sluice

    seconds, every = float(sys.argv[1]), float(sys.argv[2])
    config = pathlib.Path(tempfile.mkdtemp(prefix="sluice-chaos-")) / "sluice.toml"
    config.write_text(CONFIG)
    server = start_sluice("--config", str(config))
    try:
        tally, kills = run(server, seconds, every)
        print(json.dumps(summary(tally, kills, seconds)))
        assert server.proc.poll() is None, "the gateway died"
    finally:
        server.stop()

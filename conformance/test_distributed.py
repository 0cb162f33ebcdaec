"""One query over many workers (datafusion-distributed): the 22 TPC-H queries split into
stages over three local workers and over three remote ones behind TLS, equal to DuckDB's
answers through pg and Flight SQL; EXPLAIN and the history show the stages; `auto` keeps a
small query on one worker and spreads a big one; a worker killed mid-query, a cancel and a
query over its memory share each end cleanly and leave every worker free."""
import json
import os
import threading
import time
import urllib.request

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest
from databricks import sql as dbsql

from conftest import configured_sluice, self_signed, sluice_bin, start_sluice, wait_for
from pgraw import PgRaw
from test_warehouses import (HUNGRY_QUERY, LONG_QUERY, SLOW_QUERY, busy, free_port, reference,
                             run_in_thread, start_worker, workers_of)
from tpch_answers import QUERIES, assert_matches, query

CONFIG = """
# Every query here must run: no answer from the cache.
[cache]
enabled = false

[warehouses.default]
workers = 1

[warehouses.dist]
workers = 3
distributed = "always"

[warehouses.auto]
workers = 2
distributed = "auto"
min_distributed_bytes = "1MiB"

[warehouses.grow]
min_workers = 1
max_workers = 3
distributed = "always"

[warehouses.mem]
workers = 2
distributed = "always"
worker_memory_limit = "16MiB"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with configured_sluice(tmp_path_factory, "distributed", CONFIG) as s:
        yield s


def history_count(monitor, warehouse):
    return monitor.execute("select count(*) from system.query_history where warehouse = %s",
                           [warehouse]).fetchone()[0]


def last_run(monitor, warehouse, before):
    """stages, tasks, workers (ids) and worker_id of the warehouse's newest history record,
    once there are more than `before` records."""
    wait_for(lambda: history_count(monitor, warehouse) > before, 10, f"the history record on {warehouse}")
    return monitor.execute(
        "select stages, tasks, workers, worker_id from system.query_history where warehouse = %s "
        "order by end_time desc limit 1", [warehouse]).fetchone()


@pytest.mark.parametrize("n", QUERIES)
def test_tpch_over_three_workers_through_pg(server, monitor, n):
    before = history_count(monitor, "dist")
    with psycopg.connect(server.dsn(dbname="dist"), autocommit=True) as conn:
        rows = conn.execute(query(n)).fetchall()
    assert_matches(n, rows)
    stages, tasks, workers, _ = last_run(monitor, "dist", before)
    # Split into stages whose tasks ran on more than one worker.
    assert stages is not None and stages >= 2, (stages, tasks, workers)
    assert tasks > stages
    assert len(workers.split(",")) >= 2, workers


@pytest.mark.parametrize("n", QUERIES)
def test_tpch_over_three_workers_through_flight_sql(server, monitor, n):
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
              f"{fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-sluice-warehouse": "dist"}
    before = history_count(monitor, "dist")
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(query(n))
        rows = cur.fetchall()
    assert_matches(n, rows)
    stages, _, workers, _ = last_run(monitor, "dist", before)
    assert stages >= 2 and len(workers.split(",")) >= 2, (stages, workers)


def test_explain_shows_the_stages_and_auto_keeps_small_queries_on_one_worker(server, monitor):
    big = "select l_returnflag, count(*) from tpch.lineitem group by l_returnflag"
    # Over small_query_bytes (256 KiB, it would run in the gateway), under min_distributed_bytes.
    small = "select o_orderpriority, count(*) as auto_small from tpch.orders group by o_orderpriority"
    with psycopg.connect(server.dsn(dbname="dist"), autocommit=True) as conn:
        plan = "\n".join(r[0] for r in conn.execute("explain " + big).fetchall())
    assert "DistributedExec" in plan and "Stage 1" in plan and "tasks=3" in plan, plan
    with psycopg.connect(server.dsn(dbname="auto"), autocommit=True) as conn:
        # lineitem's files are over min_distributed_bytes (1 MiB), orders' below.
        plan_big = "\n".join(r[0] for r in conn.execute("explain " + big).fetchall())
        plan_small = "\n".join(r[0] for r in conn.execute("explain " + small).fetchall())
        assert "DistributedExec" in plan_big and "Stage" in plan_big, plan_big
        assert "DistributedExec" not in plan_small and "Stage" not in plan_small, plan_small
        before = history_count(monitor, "auto")
        assert sorted(conn.execute(big).fetchall()) == sorted(reference(server, big.replace("tpch.", "")))
        stages, _, workers, _ = last_run(monitor, "auto", before)
        assert stages >= 2 and len(workers.split(",")) == 2
        # Its profile (REST) shows where it ran and its stages.
        statement = monitor.execute("select statement_id from system.query_history where warehouse = 'auto' "
                                    "order by end_time desc limit 1").fetchone()[0]
        request = urllib.request.Request(f"{server.http_url}/api/2.0/sluice/queries/{statement}/profile",
                                         headers={"Authorization": f"Bearer {server.token}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            profile = json.loads(r.read())
        assert f"({stages} stages" in profile["ran_on"], profile["ran_on"]

        def details(node):
            yield node["detail"]
            for child in node["children"]:
                yield from details(child)
        assert any("[Stage 1]" in d for d in details(profile["plan"])), profile["plan"]
        assert sorted(conn.execute(small).fetchall()) == sorted(reference(server, small.replace("tpch.", "")))
    # Its own record (another may be written later than it: the history is flushed in batches).
    ((stages, tasks, workers, worker),) = wait_for(lambda: monitor.execute(
        "select stages, tasks, workers, worker_id from system.query_history where warehouse = 'auto' "
        "and statement_text like '%auto_small%' and statement_text not ilike 'explain%' "
        "and statement_text not like '%query_history%'").fetchall(), 10, "the small query's record")
    assert (stages, tasks, workers) == (None, None, None) and worker is not None
    # The other front-ends' EXPLAIN (DataFusion's two rows) shows the same stages.
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
              f"{fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-sluice-warehouse": "dist"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("explain " + big)
        rows = dict(cur.fetchall())
    assert "Stage 1" in rows["physical_plan"], rows


def test_system_queries_shows_the_workers_of_a_running_query(server, monitor):
    conn = psycopg.connect(server.dsn(dbname="dist"), autocommit=True)
    query_thread = run_in_thread(lambda: conn.execute(LONG_QUERY).fetchall())
    row = wait_for(lambda: monitor.execute(
        "select stages, tasks, workers from system.queries where warehouse = 'dist' and workers like '%,%,%'"
    ).fetchone(), 30, "the distributed query on three workers in system.queries")
    ids = sorted(int(w) for w in row[2].split(","))
    assert len(ids) == 3 and row[0] >= 2, row
    assert ids == sorted(w[0] for w in workers_of(monitor, "dist"))
    # Every worker counts it as load while it runs.
    assert all(w[3] >= 1 for w in workers_of(monitor, "dist")), workers_of(monitor, "dist")
    conn.cancel()
    query_thread[0].join(30)
    assert query_thread[1]["error"].sqlstate == "57014"
    conn.close()


def stopped_everywhere(monitor, pids, cancel, query_thread):
    """Run `cancel` once the distributed query computes on the workers: within a second it
    leaves system.queries, every worker's slot is back and no worker spends CPU on it."""
    wait_for(lambda: monitor.execute("select count(*) from system.queries where warehouse = 'dist' "
                                     "and workers like '%,%,%'").fetchone()[0] == 1, 30, "the query to run")
    time.sleep(1.0)
    assert sum(busy(pid, 0.3) for pid in pids) > 0.5, "the query is not computing"
    at = time.monotonic()
    cancel()
    wait_for(lambda: monitor.execute("select count(*) from system.queries where warehouse = 'dist'")
             .fetchone()[0] == 0, 1, "the query to leave system.queries")
    wait_for(lambda: all(w[3] == 0 for w in workers_of(monitor, "dist")), 1, "every worker's slots back")
    time.sleep(max(0.0, 0.5 - (time.monotonic() - at)))
    for pid in pids:
        assert busy(pid, 0.5) < 0.2, f"worker {pid} still computes the cancelled query"
    query_thread.join(30)


def test_cancel_and_timeout_stop_every_task_on_every_worker(server, monitor):
    pids = [w[1] for w in workers_of(monitor, "dist")]
    # pg: CancelRequest.
    conn = psycopg.connect(server.dsn(dbname="dist"), autocommit=True)
    query = run_in_thread(lambda: conn.execute(LONG_QUERY).fetchall())
    stopped_everywhere(monitor, pids, conn.cancel, query[0])
    assert query[1]["error"].sqlstate == "57014"
    # statement_timeout (the session's): the same path, from the gateway's side.
    conn.execute("set statement_timeout = '3s'")
    started = time.monotonic()
    query = run_in_thread(lambda: conn.execute(LONG_QUERY).fetchall())
    stopped_everywhere(monitor, pids, lambda: time.sleep(max(0.0, started + 3.0 - time.monotonic())), query[0])
    assert query[1]["error"].sqlstate == "57014"
    conn.close()
    # Flight SQL: ADBC's cancel (CancelFlightInfo).
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
              f"{fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-sluice-warehouse": "dist"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as flight:
        cur = flight.cursor()
        query = run_in_thread(lambda: (cur.execute(LONG_QUERY), cur.fetchall()))
        stopped_everywhere(monitor, pids, cur.adbc_cancel, query[0])
        assert "cancel" in str(query[1].get("error")).lower()
    # HS2: databricks-sql-connector's cursor.cancel() (CancelOperation).
    with dbsql.connect(server_hostname="x", http_path="/x", access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/dist") as hs2:
        cur = hs2.cursor()
        query = run_in_thread(lambda: (cur.execute(LONG_QUERY), cur.fetchall()))
        stopped_everywhere(monitor, pids, cur.cancel, query[0])
        assert "error" in query[1]
    # The client going away: a pg connection closed while its query computes (no row yet)…
    raw = PgRaw(server.pg_host, server.pg_port, "tester", server.token, database="dist")
    raw.send(b"Q", (LONG_QUERY + "\0").encode())
    nothing = threading.Thread(target=lambda: None)
    nothing.start()
    stopped_everywhere(monitor, pids, raw.sock.close, nothing)
    # …and a Flight SQL client process killed while its query computes.
    import subprocess
    import sys
    client = subprocess.Popen([sys.executable, "-c", f"""
import adbc_driver_flightsql as fs, adbc_driver_flightsql.dbapi as flight_sql
kwargs = {{fs.DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer {server.token}",
          fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "x-sluice-warehouse": "dist"}}
with flight_sql.connect("grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute({LONG_QUERY!r})
    cur.fetchall()
"""])
    gone = threading.Thread(target=client.wait)
    gone.start()
    stopped_everywhere(monitor, pids, client.kill, gone)
    with psycopg.connect(server.dsn(dbname="dist"), autocommit=True) as c:
        assert c.execute("select count(*) from tpch.orders").fetchone() == (15000,)


def test_a_query_over_its_memory_share_fails_alone(server, monitor):
    before = workers_of(monitor, "mem")
    with psycopg.connect(server.dsn(dbname="mem"), autocommit=True) as conn:
        other = run_in_thread(lambda: psycopg.connect(server.dsn(dbname="mem"), autocommit=True)
                              .execute("select count(*), sum(l_quantity) from tpch.lineitem "
                                       "where l_shipdate > date '1995-01-01'").fetchall())
        with pytest.raises(psycopg.Error) as error:
            conn.execute(HUNGRY_QUERY)
        assert error.value.sqlstate == "53200", error.value
        assert "worker_memory_limit" in str(error.value)
        # The session goes on; so does the other query; no worker was lost.
        assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)
    other[0].join(60)
    assert "error" not in other[1], other[1]
    assert other[1]["value"][0][0] > 0
    assert [w[:3] for w in workers_of(monitor, "mem")] == [w[:3] for w in before]


def test_a_big_query_grows_its_warehouse(server, monitor):
    """One worker: nothing to spread over, the query runs on it; but it is big enough to be
    spread, so the warehouse starts workers up to max_workers, and the next one uses them."""
    sql = "select l_returnflag, count(*) from tpch.lineitem group by 1 order by 1"
    assert len(workers_of(monitor, "grow")) == 1
    with psycopg.connect(server.dsn(dbname="grow"), autocommit=True) as conn:
        assert conn.execute(sql).fetchall() == reference(server, sql.replace("tpch.", ""))
        wait_for(lambda: [w[2] for w in workers_of(monitor, "grow")] == ["ready"] * 3, 60, "three workers")
        assert monitor.execute("select scale_ups from system.warehouses where name = 'grow'").fetchone()[0] >= 3
        before = history_count(monitor, "grow")
        assert conn.execute(sql).fetchall() == reference(server, sql.replace("tpch.", ""))
        _, _, workers, _ = last_run(monitor, "grow", before)
        assert len(workers.split(",")) == 3, workers


def test_the_distributed_endpoint_refuses_calls_without_the_secret(tmp_path):
    """A worker's second port (the stages of distributed queries) checks the worker secret on
    every call; garbage on the port leaves the worker up."""
    import socket
    import subprocess

    import grpc
    secret = "distributed-endpoint-secret-0123456789"
    addr = f"127.0.0.5:{free_port('127.0.0.5')}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}, "SLUICE_WORKER_SECRET": secret}
    proc = subprocess.Popen([sluice_bin(), "worker", "--listen", addr, "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "SLUICE_WORKER_LISTENING" and line[1] == addr, line
        stages = line[2]
        assert stages.startswith("127.0.0.5:") and stages != addr
        # A call of the library's worker service (GetWorkerInfo: an empty request).
        channel = grpc.insecure_channel(stages)
        info = channel.unary_unary("/worker.WorkerService/GetWorkerInfo",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for metadata in ([], [("authorization", "Bearer wrong")], [("authorization", secret)]):
            with pytest.raises(grpc.RpcError) as refused:
                info(b"", metadata=metadata, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
            assert secret not in (refused.value.details() or "")
        host, port = stages.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as s:
            s.sendall(os.urandom(64 * 1024))
        # With the secret the call is served.
        assert info(b"", metadata=[("authorization", f"Bearer {secret}")], timeout=5) is not None
        channel.close()
        assert proc.poll() is None
    finally:
        proc.kill()


def test_a_worker_killed_mid_query_fails_it_fast_and_the_next_query_runs(tmp_path):
    """Before any row: the query runs again over the workers left (a correct answer) or fails
    with 57P02; after rows were sent: 57P02 within 2 s, never a short result. The next
    query succeeds and the warehouse replaces the worker."""
    config = tmp_path / "sluice.toml"
    config.write_text('[cache]\nenabled = false\n\n[warehouses.default]\nworkers = 3\ndistributed = "always"\n')
    server = start_sluice("--config", str(config))
    ready = lambda m: [w for w in workers_of(m, "default") if w[2] == "ready"]
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as monitor:
            wait_for(lambda: len(ready(monitor)) == 3, 30, "three workers")
            # 1. Killed before any row (a count): a correct answer, or 57P02 at once.
            pids = [w[1] for w in ready(monitor)]
            conn = psycopg.connect(server.dsn(), autocommit=True)
            query_thread = run_in_thread(lambda: conn.execute(SLOW_QUERY).fetchall())
            wait_for(lambda: monitor.execute("select count(*) from system.queries where workers is not null"
                                             ).fetchone()[0] == 1, 30, "the distributed query to run")
            time.sleep(0.5)
            killed_at = time.monotonic()
            os.kill(pids[1], 9)
            query_thread[0].join(120)
            error = query_thread[1].get("error")
            if error is not None:
                assert error.sqlstate == "57P02", error
                assert time.monotonic() - killed_at < 2.0
            else:
                assert query_thread[1]["value"] == reference(server, SLOW_QUERY.replace("tpch.", ""))
            conn.close()
            wait_for(lambda: len(ready(monitor)) == 3 and pids[1] not in [w[1] for w in ready(monitor)], 30,
                     "a replacement worker")
            # 2. Killed after rows reached the client: 57P02 within 2 s, never a short result.
            pids = [w[1] for w in ready(monitor)]
            raw = PgRaw(server.pg_host, server.pg_port, "tester", server.token)
            raw.send(b"Q", b"SELECT a.o_orderkey, b.n_name FROM tpch.orders a, tpch.nation b\0")
            assert raw.read()[0] == b"T"
            for _ in range(10):
                assert raw.read()[0] == b"D"
            killed_at = time.monotonic()
            os.kill(pids[0], 9)
            rows, kind, body = 10, None, b""
            while kind not in (b"C", b"E"):
                kind, body = raw.read()
                rows += kind == b"D"
            took = time.monotonic() - killed_at
            raw.sock.close()
            if kind == b"E":
                assert b"C57P02" in body, body
                assert took < 2.0, took
            else:
                assert rows == 15000 * 25  # every row, or an error: never fewer
            # The next query succeeds, over the workers there are.
            flags = "select l_returnflag, count(*) from tpch.lineitem group by 1 order by 1"
            with psycopg.connect(server.dsn(), autocommit=True) as c:
                assert c.execute(flags).fetchall() == reference(server, flags.replace("tpch.", ""))
            wait_for(lambda: len(ready(monitor)) == 3, 30, "a replacement worker")
    finally:
        server.stop()


def test_tpch_over_remote_workers_with_tls(tmp_path):
    """Three `sluice worker --listen` processes on other loopback addresses, TLS between the
    gateway and them and between them (one certificate for the three addresses): the 22
    queries through pg and Flight SQL."""
    secret = "distributed-remote-secret-0123456789"
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    tls = self_signed(tmp_path, hosts)
    addrs = [f"{h}:{free_port(h)}" for h in hosts]
    workers = [start_worker(a, secret, tls) for a in addrs]
    config = tmp_path / "sluice.toml"
    addr_list = ", ".join(f'"{a}"' for a in addrs)
    config.write_text(f'[cache]\nenabled = false\n\n[warehouses.default]\nworkers = 1\n\n'
                      f'[warehouses.remote]\nworker_addrs = [{addr_list}]\nworker_secret = "{secret}"\n'
                      f'worker_tls_ca = "{tls[0]}"\ndistributed = "always"\n')
    server = start_sluice("--config", str(config))
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as monitor:
            wait_for(lambda: [w[2] for w in workers_of(monitor, "remote")] == ["ready"] * 3, 15, "the remote workers")
            kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
                      f"{fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-sluice-warehouse": "remote"}
            with psycopg.connect(server.dsn(dbname="remote"), autocommit=True) as conn, \
                    flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as flight:
                cur = flight.cursor()
                for n in QUERIES:
                    before = history_count(monitor, "remote")
                    assert_matches(n, conn.execute(query(n)).fetchall())
                    stages, _, used, _ = last_run(monitor, "remote", before)
                    assert stages >= 2 and len(used.split(",")) >= 2, (n, stages, used)
                    cur.execute(query(n))
                    assert_matches(n, cur.fetchall())
            assert secret not in server.log()
    finally:
        server.stop()
        for proc in workers:
            proc.kill()

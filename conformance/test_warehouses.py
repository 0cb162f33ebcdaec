"""Warehouses: named pools that cold-start, grow under load and shrink when idle, queue with
limits, survive killed workers, isolate a memory-hungry query, cancel promptly from every
front-end, reload on SIGHUP, route sessions, and run on remote workers — watched through
system.warehouses / system.workers / system.queries."""
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
import pytest
from databricks import sql as dbsql

from conftest import configured_sluice, process_gone, self_signed, wait_for, sluice_bin, start_sluice
from pgraw import PgRaw

# A hash join of orders with itself: seconds of work on a worker (debug build), yielding
# between batches, no rows until the end.
SLOW_QUERY = "select count(*) from tpch.orders a join tpch.orders b on a.o_orderpriority = b.o_orderpriority"
LONG_QUERY = "select count(*) from tpch.lineitem a join tpch.lineitem b on a.l_returnflag = b.l_returnflag"
# Nested loops over lineitem: one operator computing a single batch for a long time.
NESTED_LOOPS = "select count(*) from tpch.lineitem a, tpch.lineitem b where a.l_orderkey + b.l_orderkey < 0"
# A few hundred ms each.
SHORT_QUERY = "select count(*) from tpch.lineitem a, tpch.supplier b where a.l_orderkey + b.s_suppkey < 0"
# One array of 1.5 M strings: an accumulator that cannot spill, far over 12 MiB.
HUNGRY_QUERY = "select cardinality(array_agg(concat(a.l_comment, b.n_name))) from tpch.lineitem a, tpch.nation b"
ETL_TOKEN = "warehouse-etl-app-token"

CONFIG = f"""
# These tests count what runs on workers: identical queries must each run, and small ones
# too (small_query_bytes = "0": none is answered in the gateway).
[cache]
enabled = false

[warehouses.default]
small_query_bytes = "0"
workers = 1

[warehouses.burst]
small_query_bytes = "0"
min_workers = 0
max_workers = 3
max_concurrency_per_worker = 1
auto_stop = "3s"

[warehouses.narrow]
small_query_bytes = "0"
workers = 1
max_concurrency_per_worker = 1
max_queued = 2
queue_timeout = "120s"

[warehouses.pair]
small_query_bytes = "0"
workers = 2
max_concurrency_per_worker = 1

[warehouses.small]
small_query_bytes = "0"
workers = 1
max_concurrency_per_worker = 4
worker_memory_limit = "16MiB"

[warehouses.etl]
small_query_bytes = "0"
min_workers = 0
max_workers = 1
statement_timeout = "1s"

[[auth.tokens]]
name = "etl-app"
sha256 = "{hashlib.sha256(ETL_TOKEN.encode()).hexdigest()}"
roles = ["etl"]

[[grants]]
roles = ["etl"]
select = ["tpch.*"]

[[routing]]
roles = ["etl"]
warehouse = "etl"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with configured_sluice(tmp_path_factory, "warehouses", CONFIG) as s:
        yield s


def warehouse(monitor, name):
    row = monitor.execute("select state, workers, starting, queued, running, scale_ups, scale_downs, max_workers "
                          "from system.warehouses where name = %s", [name]).fetchone()
    return dict(zip(["state", "workers", "starting", "queued", "running", "scale_ups", "scale_downs",
                     "max_workers"], row))


def workers_of(monitor, name):
    return monitor.execute("select worker_id, pid, state, running, address from system.workers "
                           "where warehouse = %s order by worker_id", [name]).fetchall()


def queries_of(monitor, name):
    return monitor.execute("select query_id, state, worker_id, protocol, statement_text from system.queries "
                           "where warehouse = %s order by submitted", [name]).fetchall()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy(pid, window=0.5):
    """CPU seconds per second the process used over `window`."""
    before = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - before) / window


def run_in_thread(fn):
    out = {}

    def target():
        try:
            out["value"] = fn()
        except Exception as e:  # the test looks at it
            out["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def reference(server, sql):
    con = duckdb.connect()
    for table in ["orders", "lineitem"]:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{server.data_dir}/tpch/{table}/*.parquet')")
    return con.execute(sql).fetchall()


def test_system_tables_show_every_warehouse(server, monitor):
    names = [r[0] for r in monitor.execute("select name from system.warehouses order by name").fetchall()]
    assert names == ["burst", "default", "etl", "narrow", "pair", "small"]
    row = monitor.execute("select launcher, min_workers, max_workers, max_concurrency_per_worker, max_queued, "
                          "auto_stop_s, worker_memory_limit from system.warehouses where name = 'burst'").fetchone()
    assert row == ("local", 0, 3, 1, 1000, 3.0, None)
    assert warehouse(monitor, "burst")["state"] == "stopped"
    assert len(workers_of(monitor, "pair")) == 2
    # Every front-end reads them.
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from system.workers where state = 'ready'")
        assert cur.fetchall()[0][0] >= 5
    with dbsql.connect(server_hostname="x", http_path="/x", access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default") as conn, conn.cursor() as cur:
        cur.execute("select name from system.warehouses where name = 'small'")
        assert cur.fetchall()[0][0] == "small"


def test_cold_start_burst_and_auto_stop(server, monitor):
    assert warehouse(monitor, "burst")["workers"] == 0
    # The first query starts the stopped warehouse and waits for it: no error.
    started = time.monotonic()
    with psycopg.connect(server.dsn(dbname="burst"), autocommit=True) as conn:
        assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)
    cold = time.monotonic() - started
    assert cold < 10, cold
    # A burst of parallel queries (one per worker at a time) grows it to 3, no further.
    threads = [run_in_thread(lambda: psycopg.connect(server.dsn(dbname="burst"), autocommit=True)
                             .execute(SHORT_QUERY).fetchall()) for _ in range(8)]
    peak = 0
    while any(t.is_alive() for t, _ in threads):
        peak = max(peak, warehouse(monitor, "burst")["workers"])
        time.sleep(0.05)
    assert [out.get("value") for _, out in threads] == [[(0,)]] * 8, [out for _, out in threads]
    assert peak == 3
    # Idle past auto_stop (3 s): back to no workers, stopped.
    wait_for(lambda: warehouse(monitor, "burst")["state"] == "stopped", 20, "the idle warehouse to stop")
    state = warehouse(monitor, "burst")
    assert state["workers"] == 0 and state["scale_ups"] >= 3 and state["scale_downs"] >= 3
    log = server.log()
    assert 'reason="queue"' in log and 'reason="idle"' in log


def test_queue_full_then_queued_queries_complete(server, monitor):
    """One worker, one slot, two places in the queue: the fourth query is refused at once."""
    running = run_in_thread(lambda: psycopg.connect(server.dsn(dbname="narrow"), autocommit=True)
                            .execute(SLOW_QUERY).fetchall())
    wait_for(lambda: [q for q in queries_of(monitor, "narrow") if q[1] == "running"], 30, "the slow query to run")
    queued = [run_in_thread(lambda: psycopg.connect(server.dsn(dbname="narrow"), autocommit=True)
                            .execute("select count(*) from tpch.region").fetchall()) for _ in range(2)]
    wait_for(lambda: warehouse(monitor, "narrow")["queued"] == 2, 30, "two queued queries")
    assert [q[1] for q in queries_of(monitor, "narrow")] == ["running", "queued", "queued"]
    started = time.monotonic()
    with pytest.raises(psycopg.Error) as refused:
        psycopg.connect(server.dsn(dbname="narrow"), autocommit=True).execute("select count(*) from tpch.nation")
    assert refused.value.sqlstate == "53300" and "busy" in str(refused.value)
    assert time.monotonic() - started < 3
    for thread, _ in [running, *queued]:
        thread.join(120)
    assert running[1].get("value") == reference(server, SLOW_QUERY.replace("tpch.", ""))
    assert [out.get("value") for _, out in queued] == [[(5,)], [(5,)]]
    assert warehouse(monitor, "narrow")["queued"] == 0


def test_killed_workers_retry_queued_and_fail_streaming(server, monitor):
    """Two workers, one slot each. A worker killed while its query computes (no rows sent):
    the query runs again on another worker and answers. A worker killed while its query
    streams: that query fails within 2 s. The pool recovers."""
    # A query that streams: rows read, then the client pauses (the worker waits on it).
    streaming = PgRaw(server.pg_host, server.pg_port, "tester", server.token, database="pair")
    streaming.send(b"Q", b"SELECT * FROM tpch.lineitem a, tpch.region b\0")
    assert streaming.read()[0] == b"T"
    for _ in range(10):
        assert streaming.read()[0] == b"D"
    computing = run_in_thread(lambda: psycopg.connect(server.dsn(dbname="pair"), autocommit=True)
                              .execute(SLOW_QUERY).fetchall())
    wait_for(lambda: len([q for q in queries_of(monitor, "pair") if q[1] == "running"]) == 2, 30,
             "both queries running")
    waiting = run_in_thread(lambda: psycopg.connect(server.dsn(dbname="pair"), autocommit=True)
                            .execute("select count(*) from tpch.region").fetchall())
    wait_for(lambda: warehouse(monitor, "pair")["queued"] == 1, 30, "a queued query")
    pids = {w[0]: w[1] for w in workers_of(monitor, "pair")}
    running = [q for q in queries_of(monitor, "pair") if q[1] == "running"]
    compute_worker = next(q[2] for q in running if "o_orderpriority" in q[4])
    stream_worker = next(q[2] for q in running if q[2] != compute_worker)
    time.sleep(0.5)
    os.kill(pids[compute_worker], signal.SIGKILL)
    # The computing query is run again (ahead of the queued one) and answers correctly.
    computing[0].join(120)
    assert computing[1].get("value") == reference(server, SLOW_QUERY.replace("tpch.", "")), computing[1]
    waiting[0].join(60)
    assert waiting[1].get("value") == [(5,)]
    assert "running the query on another worker" in server.log()
    # Now the streaming query's worker.
    killed_at = time.monotonic()
    os.kill(pids[stream_worker], signal.SIGKILL)
    kind = None
    while kind != b"E":
        kind, body = streaming.read()
    assert time.monotonic() - killed_at < 2
    assert b"57P02" in body
    streaming.sock.close()
    # Back to two ready workers, new processes.
    wait_for(lambda: len([w for w in workers_of(monitor, "pair") if w[2] == "ready"]) == 2, 30, "the pool to recover")
    assert not set(pids.values()) & {w[1] for w in workers_of(monitor, "pair")}


def test_a_memory_hungry_query_fails_alone(server, monitor):
    """A query over its share of worker_memory_limit fails with 53200 while another query
    runs on the same worker: that one completes, and the worker stays."""
    (worker_before,) = workers_of(monitor, "small")
    # A query in flight on the same (only) worker: a few rows read, the rest pending (far
    # more than the sockets between the processes hold, so the worker cannot finish).
    other = PgRaw(server.pg_host, server.pg_port, "tester", server.token, database="small")
    other.send(b"Q", b"SELECT a.o_orderkey, b.n_name FROM tpch.orders a, tpch.nation b\0")
    assert other.read()[0] == b"T"
    for _ in range(10):
        assert other.read()[0] == b"D"
    assert len(queries_of(monitor, "small")) == 1
    with psycopg.connect(server.dsn(dbname="small"), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as error:
            conn.execute(HUNGRY_QUERY)
        assert error.value.sqlstate == "53200", error.value
        assert "worker_memory_limit" in str(error.value)
        # The same session goes on; so does the other query.
        assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)
    rows, kind = 10, None
    while kind != b"C":
        kind, body = other.read()
        assert kind in (b"D", b"C"), body
        rows += kind == b"D"
    assert rows == 15000 * 25
    other.sock.close()
    (worker_after,) = workers_of(monitor, "small")
    assert worker_after[:2] == worker_before[:2] and worker_after[2] == "ready"


def cancelled_promptly(monitor, pid, cancel, started_query):
    """Run `cancel` once the query runs; the query leaves system.queries and its worker's
    CPU goes quiet within 1 s."""
    wait_for(lambda: monitor.execute("select count(*) from system.queries where warehouse = 'default' "
                                     "and state = 'running'").fetchone()[0] == 1, 30, "the query to run")
    time.sleep(0.3)
    assert busy(pid, 0.3) > 0.5, "the query is not computing"
    at = time.monotonic()
    cancel()
    wait_for(lambda: monitor.execute("select count(*) from system.queries where warehouse = 'default'")
             .fetchone()[0] == 0, 1, "the query to leave system.queries")
    left = time.monotonic() - at
    # Within the second: no CPU left on the worker (measured over its last half).
    time.sleep(max(0.0, 0.5 - (time.monotonic() - at)))
    assert busy(pid, 0.5) < 0.2, "the worker still computes the cancelled query"
    started_query.join(30)
    return left


def test_cancel_from_pg_flight_and_hs2_stops_the_query_on_its_worker(server, monitor):
    ((_, pid, *_),) = workers_of(monitor, "default")
    # pg: CancelRequest (psycopg's conn.cancel()).
    conn = psycopg.connect(server.dsn(), autocommit=True)
    query = run_in_thread(lambda: conn.execute(LONG_QUERY).fetchall())
    cancelled_promptly(monitor, pid, conn.cancel, query[0])
    assert query[1]["error"].sqlstate == "57014"
    conn.close()
    # Flight SQL: ADBC's cancel (CancelFlightInfo).
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as flight:
        cur = flight.cursor()
        query = run_in_thread(lambda: (cur.execute(LONG_QUERY), cur.fetchall()))
        cancelled_promptly(monitor, pid, cur.adbc_cancel, query[0])
        assert "cancel" in str(query[1].get("error")).lower()
    # HS2: databricks-sql-connector's cursor.cancel() (CancelOperation).
    with dbsql.connect(server_hostname="x", http_path="/x", access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default") as hs2:
        cur = hs2.cursor()
        query = run_in_thread(lambda: (cur.execute(LONG_QUERY), cur.fetchall()))
        wait_for(lambda: cur.active_command_id, 30, "the HS2 statement to start")
        cancelled_promptly(monitor, pid, cur.cancel, query[0])
        assert "error" in query[1]
    # The same worker is still there and answers.
    assert workers_of(monitor, "default")[0][1] == pid
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)


def test_a_cancelled_query_that_cannot_stop_gets_its_worker_replaced(server, monitor):
    """A nested-loop join computes one batch for a long time and cannot stop between
    batches: its worker reports it stuck and is replaced once idle."""
    ((_, pid, *_),) = workers_of(monitor, "default")
    conn = psycopg.connect(server.dsn(), autocommit=True)
    query = run_in_thread(lambda: conn.execute(NESTED_LOOPS).fetchall())
    wait_for(lambda: queries_of(monitor, "default"), 30, "the query to run")
    time.sleep(0.5)
    at = time.monotonic()
    conn.cancel()
    query[0].join(10)
    assert query[1]["error"].sqlstate == "57014"
    wait_for(lambda: process_gone(pid), 5, "the stuck worker to be stopped")
    assert time.monotonic() - at < 4
    assert 'reason="stuck"' in server.log()
    wait_for(lambda: [w for w in workers_of(monitor, "default") if w[2] == "ready"], 30, "a replacement")
    assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
    conn.close()


def test_routing_by_database_options_set_rules_and_headers(server, monitor):
    show = lambda conn: conn.execute("show warehouse").fetchone()[0]
    with psycopg.connect(server.dsn(dbname="pair"), autocommit=True) as conn:
        assert show(conn) == "pair"
        conn.execute("set warehouse = narrow")
        assert show(conn) == "narrow"
        with pytest.raises(psycopg.Error) as unknown:
            conn.execute("set warehouse = nope")
        assert unknown.value.sqlstate == "42704" and "burst" in str(unknown.value)
        conn.execute("reset warehouse")
        assert show(conn) == "pair"
    with psycopg.connect(server.dsn(dbname="tester", options="-cwarehouse=small"), autocommit=True) as conn:
        assert show(conn) == "small"
    # psql names the database after the user: an unknown name is the default warehouse.
    with psycopg.connect(server.dsn(dbname="tester"), autocommit=True) as conn:
        assert show(conn) == "default"
    # A routing rule on the principal's role, and the warehouse's statement_timeout (1 s).
    with psycopg.connect(server.dsn(password=ETL_TOKEN, dbname="tester"), autocommit=True) as conn:
        assert show(conn) == "etl"
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as timed_out:
            conn.execute(LONG_QUERY)
        assert timed_out.value.sqlstate == "57014" and time.monotonic() - started < 5
        conn.execute("set statement_timeout = 0")  # the session's own setting wins
        assert conn.execute("select count(*) from tpch.orders").fetchone() == (15000,)
    # Flight SQL's x-sluice-warehouse header and HS2's path, seen in system.queries.
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
              f"{fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-sluice-warehouse": "narrow"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as flight:
        cur = flight.cursor()
        query = run_in_thread(lambda: (cur.execute(SLOW_QUERY), cur.fetchall()))
        q = wait_for(lambda: [r for r in queries_of(monitor, "narrow") if r[3] == "flight"], 30, "the Flight query")
        cur.adbc_cancel()
        query[0].join(30)
        assert q
    with dbsql.connect(server_hostname="x", http_path="/x", access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/small") as hs2:
        cur = hs2.cursor()
        query = run_in_thread(lambda: (cur.execute(SLOW_QUERY), cur.fetchall()))
        assert wait_for(lambda: [r for r in queries_of(monitor, "small") if r[3] == "hs2"], 30, "the HS2 query")
        query[0].join(60)


def test_sighup_reloads_warehouses_without_dropping_sessions(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text("[warehouses.default]\nworkers = 1\n\n[warehouses.grow]\nmin_workers = 0\nmax_workers = 3\n")
    server = start_sluice("--config", str(config))
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            assert warehouse(conn, "grow")["max_workers"] == 3
            config.write_text("[warehouses.default]\nworkers = 1\n\n[warehouses.grow]\nmin_workers = 0\n"
                              "max_workers = 2\n\n[warehouses.added]\nworkers = 1\n")
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: warehouse(conn, "grow")["max_workers"] == 2, 10, "the new max_workers")
            wait_for(lambda: conn.execute("select workers from system.warehouses where name = 'added'").fetchall()
                     == [(1,)], 30, "the added warehouse")
            # The session that was open all along still works.
            assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
            # A broken file is refused and changes nothing.
            config.write_text("[warehouses.grow]\nmax_workerz = 1\n")
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload refused" in server.log(), 10, "the refusal in the log")
            assert warehouse(conn, "grow")["max_workers"] == 2
            assert "max_workerz" in server.log()
    finally:
        server.stop()


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_worker(addr, secret, tls=None):
    args = [sluice_bin(), "worker", "--listen", addr, "--threads", "2"]
    if tls:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}, "SLUICE_WORKER_SECRET": secret}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("SLUICE_WORKER_LISTENING"), line
    return proc


def test_static_warehouse_on_remote_workers_survives_a_restart(tmp_path):
    """A static warehouse over two `sluice worker --listen` processes on other loopback
    addresses answers queries, keeps answering while one restarts and takes it back; a
    third worker serves a warehouse over TLS."""
    secret = "remote-worker-secret-0123456789"
    a, b = f"127.0.0.2:{free_port('127.0.0.2')}", f"127.0.0.3:{free_port('127.0.0.3')}"
    c = f"127.0.0.4:{free_port('127.0.0.4')}"
    tls = self_signed(tmp_path, "127.0.0.4")
    workers = {a: start_worker(a, secret), b: start_worker(b, secret), c: start_worker(c, secret, tls)}
    config = tmp_path / "sluice.toml"
    config.write_text(f'[cache]\nenabled = false\n\n[warehouses.default]\nworkers = 1\n\n[warehouses.remote]\nworker_addrs = ["{a}", "{b}"]\n'
                      f'worker_secret = "{secret}"\nmax_concurrency_per_worker = 1\n\n'
                      f'[warehouses.secure]\nworker_addrs = ["{c}"]\nworker_secret = "{secret}"\n'
                      f'worker_tls_ca = "{tls[0]}"\n')
    server = start_sluice("--config", str(config))
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as monitor:
            ready = lambda: {w[4]: w[2] for w in workers_of(monitor, "remote")}
            wait_for(lambda: set(ready().values()) == {"ready"}, 15, "both remote workers")
            assert set(ready()) == {a, b}
            assert [w[1] for w in workers_of(monitor, "remote")] == [None, None]  # not our processes
            assert monitor.execute("select launcher, workers from system.warehouses where name = 'remote'"
                                   ).fetchone() == ("static", 2)
            # Two queries at once: one on each worker (one slot each).
            both = [run_in_thread(lambda: psycopg.connect(server.dsn(dbname="remote"), autocommit=True)
                                  .execute(SLOW_QUERY).fetchall()) for _ in range(2)]
            wait_for(lambda: len({q[2] for q in queries_of(monitor, "remote") if q[1] == "running"}) == 2, 30,
                     "a query on each remote worker")
            for thread, _ in both:
                thread.join(120)
            want = reference(server, SLOW_QUERY.replace("tpch.", ""))
            assert [out.get("value") for _, out in both] == [want, want]
            with psycopg.connect(server.dsn(dbname="secure"), autocommit=True) as conn:
                assert conn.execute("select count(*) from tpch.orders").fetchone() == (15000,)
            # One remote worker restarts: while it is down the other answers; then it is back.
            workers[a].kill()
            workers[a].wait()
            wait_for(lambda: ready()[a] == "down", 15, "the stopped worker to be seen down")
            with psycopg.connect(server.dsn(dbname="remote"), autocommit=True) as conn:
                for _ in range(3):
                    assert conn.execute("select count(*) from tpch.orders").fetchone() == (15000,)
            workers[a] = start_worker(a, secret)
            wait_for(lambda: ready()[a] == "ready", 15, "the restarted worker")
            both = [run_in_thread(lambda: psycopg.connect(server.dsn(dbname="remote"), autocommit=True)
                                  .execute(SLOW_QUERY).fetchall()) for _ in range(2)]
            wait_for(lambda: len({q[2] for q in queries_of(monitor, "remote") if q[1] == "running"}) == 2, 30,
                     "both workers in use again")
            for thread, _ in both:
                thread.join(120)
            assert [out.get("value") for _, out in both] == [want, want]
            # The channel secret never reaches the log.
            assert secret not in server.log()
    finally:
        server.stop()
        for proc in workers.values():
            proc.kill()

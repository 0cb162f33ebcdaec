"""Worker processes: a worker killed while its query streams fails that query fast and is
replaced (a query whose worker dies before it sent rows runs again elsewhere: see
test_warehouses.py)."""
import os
import signal
import threading
import time

import duckdb
import psycopg
import pytest

from conftest import process_gone, wait_for, start_sluice

# A hash join of lineitem with itself on a three-valued key: minutes of work, no rows until
# the end, and it stops between batches when cancelled.
LONG_QUERY = "select count(*) from tpch.lineitem a join tpch.lineitem b on a.l_returnflag = b.l_returnflag"
# Seconds of work (debug build).
SLOW_QUERY = "select count(*) from tpch.orders a join tpch.orders b on a.o_orderpriority = b.o_orderpriority"


@pytest.fixture
def server():
    s = start_sluice("--workers", "2")
    yield s
    s.stop()


def workers(server):
    return server.health()["warehouses"][0]["workers"]


def test_kill_worker_while_its_query_streams(server):
    assert len(workers(server)) == 2
    conn = psycopg.connect(server.dsn(), autocommit=True)
    rows = conn.cursor().stream("select * from tpch.lineitem a, tpch.region b")
    for _ in range(10):
        next(rows)
    busy = wait_for(lambda: [w for w in workers(server) if w["running"] > 0], 30, "the query to stream")
    victim = busy[0]["pid"]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(psycopg.Error) as error:
        for _ in rows:
            pass
    assert error.value.sqlstate == "57P02", error.value
    assert time.monotonic() - killed_at < 2.0, f"error took {time.monotonic() - killed_at:.2f}s"

    # The same connection runs the next query.
    assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)
    conn.close()

    # The pool is back to its size, with a new process in place of the killed one.
    pids = wait_for(lambda: (lambda ws: [w["pid"] for w in ws] if len(ws) == 2 else None)(workers(server)),
                    30, "the pool to recover")
    assert victim not in pids


def test_query_after_idle_worker_killed(server):
    for w in workers(server):
        os.kill(w["pid"], signal.SIGKILL)
    # Whatever state the pool is in, a new query waits for a replacement and runs.
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
    wait_for(lambda: len(workers(server)) == 2, 30, "the pool to recover")


def test_queue_full_then_queued_query_runs(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text(
        "[warehouses.default]\nworkers = 1\nmax_concurrency_per_worker = 1\nmax_queued = 1\nqueue_timeout = \"60s\"\n"
        # The queued query reads a small table: it must wait for the worker, not run here.
        "small_query_bytes = \"0\"\n"
    )
    server = start_sluice("--config", str(config))
    try:
        results = {}

        def run(name, sql):
            try:
                with psycopg.connect(server.dsn(), autocommit=True) as conn:
                    results[name] = conn.execute(sql).fetchall()
            except psycopg.Error as e:
                results[name] = e

        long_query = threading.Thread(target=run, args=("long", SLOW_QUERY))
        long_query.start()
        wait_for(lambda: any(w["running"] for w in workers(server)), 30, "the long query to start")
        queued = threading.Thread(target=run, args=("queued", "select count(*) from tpch.region"))
        queued.start()
        wait_for(lambda: server.health()["warehouses"][0]["queued"] == 1, 30, "a queued query")

        # The queue is full: the next query is refused at once with a clear error.
        started = time.monotonic()
        # (A query that reads a table: table-free ones are answered by the gateway.)
        run("refused", "select count(*) from tpch.nation")
        assert isinstance(results["refused"], psycopg.Error)
        assert results["refused"].sqlstate == "53300", results["refused"]
        assert "busy" in str(results["refused"])
        assert time.monotonic() - started < 5

        # When the running query ends, the queued one runs.
        long_query.join(timeout=120)
        queued.join(timeout=60)
        con = duckdb.connect()
        orders = f"read_parquet('{server.data_dir}/tpch/orders/*.parquet')"
        want = con.execute(f"select count(*) from {orders} a join {orders} b "
                           "on a.o_orderpriority = b.o_orderpriority").fetchall()
        assert results["long"] == want, results["long"]
        assert results["queued"] == [(5,)]
        assert server.health()["warehouses"][0]["queued"] == 0
    finally:
        server.stop()


def test_workers_exit_when_gateway_is_killed():
    server = start_sluice("--workers", "2")
    pids = [w["pid"] for w in workers(server)]
    server.proc.kill()  # SIGKILL: no chance to stop its workers itself
    server.proc.wait()

    def gone():
        return all(process_gone(pid) for pid in pids)

    try:
        wait_for(gone, 10, "the workers to exit after their gateway died")
    finally:
        server.stop()


def test_cancel_request_stops_a_running_query(server):
    """psycopg's conn.cancel() (extended protocol) and psql's Ctrl-C (simple protocol) send
    a CancelRequest: the query ends with 57014 and its worker slot is freed."""
    import subprocess

    conn = psycopg.connect(server.dsn(), autocommit=True)
    result = {}

    def run():
        try:
            conn.execute(LONG_QUERY).fetchall()
        except psycopg.Error as e:
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: any(w["running"] for w in workers(server)), 30, "the query to start")
    started = time.monotonic()
    conn.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert result["error"].sqlstate == "57014", result["error"]
    assert time.monotonic() - started < 2
    wait_for(lambda: not any(w["running"] for w in workers(server)), 2, "the worker slot to be freed")
    assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
    conn.close()

    # Two statements in one simple Query message: the cancel must reach the running one.
    psql = subprocess.Popen(["psql", "-X", "-c", LONG_QUERY + "; select 1", server.dsn()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(w["running"] for w in workers(server)), 30, "the psql query to start")
    psql.send_signal(signal.SIGINT)  # what Ctrl-C does: psql sends a CancelRequest
    _, stderr = psql.communicate(timeout=10)
    assert "canceling statement due to user request" in stderr, stderr
    wait_for(lambda: not any(w["running"] for w in workers(server)), 2, "the worker slot to be freed")


def test_statement_timeout_stops_a_long_query(server):
    """`SET statement_timeout` (PostgreSQL units) ends a query that runs too long with
    57014, frees its worker slot, and leaves the session usable."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("SET statement_timeout = '500ms'")
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as err:
            conn.execute(LONG_QUERY).fetchall()
        assert err.value.sqlstate == "57014", err.value
        assert "statement timeout" in str(err.value)
        assert time.monotonic() - started < 3
        wait_for(lambda: not any(w["running"] for w in workers(server)), 5, "the worker slot to be freed")
        assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
        with pytest.raises(psycopg.Error) as err:
            conn.execute("SET statement_timeout = 'soon'")
            conn.execute("select count(*) from tpch.region")
        assert err.value.sqlstate == "22023", err.value
        conn.execute("SET statement_timeout = 0")
        assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)


def test_client_disconnect_mid_result_stops_the_query(server):
    """A client that goes away while rows stream: the gateway's next write fails, the
    stream is dropped and the query stops on its worker (its slot is freed)."""
    from pgraw import PgRaw

    conn = PgRaw(server.pg_host, server.pg_port, "tester", server.token)
    conn.send(b"Q", b"SELECT * FROM tpch.lineitem a, tpch.region b\0")
    kind, _ = conn.read()
    assert kind == b"T"
    for _ in range(10):
        assert conn.read()[0] == b"D"
    wait_for(lambda: any(w["running"] for w in workers(server)), 10, "the query to run")
    conn.sock.close()
    wait_for(lambda: not any(w["running"] for w in workers(server)), 10,
             "the worker slot to be freed after the client left")
    with psycopg.connect(server.dsn(), autocommit=True) as other:
        assert other.execute("select count(*) from tpch.region").fetchone() == (5,)

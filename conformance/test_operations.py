"""Operating sluice: the query history every front-end writes (persisted, redacted, visible
by grant), Prometheus /metrics, the admin page in headless Chromium, the Statement Execution
API through databricks-sdk, SIGTERM draining, SIGHUP reloading grants, /readyz, and the
docker-compose file. Reference answers come from DuckDB over the same Parquet files."""
import hashlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
import pyarrow as pa
import pyarrow.csv
import pytest
import yaml
from databricks import sql as dbsql
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.sql import (Disposition, ExecuteStatementRequestOnWaitTimeout, Format,
                                        StatementParameterListItem, StatementState)
from prometheus_client.parser import text_string_to_metric_families

from conftest import HERE, ROOT, self_signed, start_sluice, wait_for

ALICE = "alice-analyst-token"
OPS = "ops-monitor-token"
# Seconds of work on a worker in a debug build, no rows until the end.
SLOW_QUERY = ("select count(*) from tpch.orders a join tpch.orders b "
              "on a.o_orderpriority = b.o_orderpriority")
LONG_QUERY = ("select count(*) from tpch.lineitem a join tpch.lineitem b "
              "on a.l_returnflag = b.l_returnflag")


def token_entry(name, token, role):
    return (f'[[auth.tokens]]\nname = "{name}"\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            f'roles = ["{role}"]\n\n')


GRANTS = ('[[grants]]\nroles = ["analyst"]\nselect = ["tpch.*"]\n\n'
          '[[grants]]\nroles = ["ops"]\nselect = ["tpch.*"]\nprivileges = ["MONITOR"]\n\n')
# The history and metrics checked here are a worker's (queue wait, worker_id): small queries
# too run on the workers.
CONFIG = (token_entry("alice", ALICE, "analyst") + token_entry("ops", OPS, "ops") + GRANTS
          + '[warehouses.default]\nsmall_query_bytes = "0"\n')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("ops")
    config = d / "sluice.toml"
    config.write_text(CONFIG)
    s = start_sluice("--config", str(config), data_dir=d / "data")
    yield s
    s.stop()


def reference(server, sql):
    con = duckdb.connect()
    for t in ["nation", "region", "orders", "lineitem", "customer", "supplier", "part", "partsupp"]:
        files = sorted((server.data_dir / "tpch" / t).rglob("*.parquet"))
        con.execute(f"create view {t} as select * from read_parquet({[str(f) for f in files]})")
    return con.execute(sql).fetchall()


def pg(server, token=None, **extra):
    return psycopg.connect(server.dsn(password=token or server.token, **extra), autocommit=True)


def history(server, where, token=None):
    with pg(server, token) as conn:
        cur = conn.execute(f"select * from system.query_history where {where} order by end_time")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def http(server, method, path, body=None, token=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json", **(headers or {})}
    if token is not False:
        h["Authorization"] = f"Bearer {token or server.token}"
    req = urllib.request.Request(f"{server.http_url}{path}", data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(server):
    status, body = http(server, "GET", "/metrics", token=False)
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == str(val) for k, val in labels.items()))


def workspace(server, token=None):
    return WorkspaceClient(host=server.http_url, token=token or server.token, auth_type="pat")


# ── history ─────────────────────────────────────────────────────────────────────────────


def test_every_front_end_writes_history_and_it_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    server = start_sluice(data_dir=data)
    # orders is over small_query_bytes: these run on a worker, whose id the history keeps.
    expected = reference(server, "select count(*) from orders where o_orderpriority = '1-URGENT'")[0][0]
    try:
        with pg(server) as conn:
            assert conn.execute("select count(*), 'via-pg' from tpch.orders where o_orderpriority = '1-URGENT'").fetchone()[0] == expected
            with pytest.raises(psycopg.Error) as failed:
                conn.execute("select nope, 'via-pg-error' from tpch.nation where n_name = 'x' and secret = 'hunter2'")
            assert failed.value.sqlstate == "42703"
        kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
        with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("select count(*), 'via-flight' from tpch.orders where o_orderpriority = '1-URGENT'")
                assert cur.fetchall()[0][0] == expected
        with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                           access_token=server.token, enable_telemetry=False,
                           _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default") as conn:
            with conn.cursor() as cur:
                cur.execute("select count(*), 'via-hs2' from tpch.orders where o_orderpriority = '1-URGENT'")
                assert cur.fetchall()[0][0] == expected
        r = workspace(server).statement_execution.execute_statement(
            statement="select count(*), 'via-rest' from tpch.orders where o_orderpriority = '1-URGENT'",
            warehouse_id="default", wait_timeout="30s")
        assert int(r.result.data_array[0][0]) == expected

        def records():
            rows = history(server, "statement_text like '%via-%' and statement_text not like '%query_history%'")
            return rows if len(rows) >= 5 else None
        rows = wait_for(records, 10, "five history records")
        by = {next(p for p in ["pg-error", "pg", "flight", "hs2", "rest"] if f"via-{p}" in r["statement_text"]): r
              for r in rows}
        for protocol in ["pg", "flight", "hs2", "rest"]:
            r = by[protocol]
            assert r["protocol"] == protocol, r
            assert r["state"] == "FINISHED" and r["sqlstate"] is None, r
            assert r["rows"] == 1 and r["bytes"] > 0, r
            assert r["warehouse"] == "default" and r["worker_id"] is not None, r
            assert r["principal"] == "dev" and r["statement_id"], r
            assert r["total_s"] >= r["executing_s"] >= 0 and r["queued_s"] >= 0, r
            assert r["end_time"] >= r["start_time"], r
            assert r["from_cache"] in ("none", "miss", "hit", "shared"), r
        # The same statement again from another front-end was answered by the cache.
        assert {by[p]["from_cache"] for p in ["pg", "flight", "hs2", "rest"]} >= {"miss"}
        error = by["pg-error"]
        assert error["state"] == "FAILED" and error["sqlstate"] == "42703", error
        assert "No field named" in error["error_message"], error
        # The secret in the text never reaches the history.
        assert "hunter2" not in error["statement_text"] and "'***'" in error["statement_text"], error
        ids = {r["statement_id"] for r in rows}
    finally:
        server.stop()
    assert "hunter2" not in server.log()
    # Persisted in the embedded store: a restarted gateway reads the same records.
    again = start_sluice(data_dir=data)
    try:
        rows = history(again, "statement_text like '%via-%' and statement_text not like '%query_history%'")
        assert ids <= {r["statement_id"] for r in rows}
    finally:
        again.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_a_principal_sees_its_own_history_unless_granted_monitor(server):
    with pg(server, ALICE) as conn:
        conn.execute("select 'alice-own', count(*) from tpch.region").fetchall()
    with pg(server, OPS) as conn:
        conn.execute("select 'ops-own', count(*) from tpch.region").fetchall()
    wait_for(lambda: history(server, "statement_text like '%ops-own%' and statement_text not like '%query_history%'"),
             10, "the ops record")
    mine = history(server, "statement_text not like '%query_history%'", ALICE)
    assert mine and {r["principal"] for r in mine} == {"alice"}, mine
    everyone = history(server, "statement_text like '%-own%' and statement_text not like '%query_history%'", OPS)
    assert {r["principal"] for r in everyone} >= {"alice", "ops"}
    # system.queries follows the same rule.
    with pg(server, ALICE) as conn:
        assert conn.execute("select count(*) from system.queries where principal <> 'alice'").fetchone() == (0,)


def test_history_in_postgresql_is_shared_by_two_gateways(tmp_path):
    url = "postgres://postgres@127.0.0.1:5432/test"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute("drop table if exists sluice_query_history")
    config = tmp_path / "sluice.toml"
    config.write_text(f'[metadata]\nurl = "{url}"\n')
    first = start_sluice("--config", str(config), data_dir=tmp_path / "one")
    second = start_sluice("--config", str(config), data_dir=tmp_path / "two")
    try:
        with pg(first) as conn:
            conn.execute("select 'from-gateway-one', count(*) from tpch.nation").fetchall()
        # The second gateway reads what the first wrote (one store).
        rows = wait_for(lambda: history(second, "statement_text like '%from-gateway-one%' and "
                                                "statement_text not like '%query_history%'"), 10, "the shared record")
        assert rows[0]["gateway"].endswith(f":{first.proc.pid}"), rows
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as admin:
            stored = admin.execute("select count(*) from sluice_query_history where record like '%from-gateway-one%'").fetchone()
        assert stored[0] >= 1
    finally:
        first.stop()
        second.stop()
    # An unreachable store is a clear start-up error that shows no password.
    config.write_text('[metadata]\nurl = "postgres://sluice:s3cret-pw@127.0.0.1:1/none"\n')
    with pytest.raises(RuntimeError) as failed:
        start_sluice("--config", str(config), data_dir=tmp_path / "three", timeout=30)
    assert "metadata store (postgresql): 127.0.0.1:1/none" in str(failed.value)
    assert "s3cret-pw" not in str(failed.value)


# ── metrics and logs ────────────────────────────────────────────────────────────────────


def test_metrics_parse_and_move_with_queries(server):
    before = scrape(server)
    with pg(server) as conn:
        for _ in range(3):
            conn.execute("select count(*) from tpch.supplier").fetchall()
        with pytest.raises(psycopg.Error):
            conn.execute("select * from tpch.no_such_table")
        open_now = scrape(server)
        assert total(open_now, "sluice_open_connections", protocol="pg") >= 1
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("select count(*) from tpch.region")
            cur.fetchall()
            assert total(scrape(server), "sluice_open_connections", protocol="flight") >= 1
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn(password="not-a-token")).close()
    after = scrape(server)
    finished = lambda s: total(s, "sluice_queries_total", protocol="pg", outcome="finished")
    failed = lambda s: total(s, "sluice_queries_total", protocol="pg", outcome="failed")
    assert finished(after) - finished(before) >= 3
    assert failed(after) - failed(before) >= 1
    assert (total(after, "sluice_query_duration_seconds_count", protocol="pg")
            - total(before, "sluice_query_duration_seconds_count", protocol="pg")) >= 4
    # Buckets are cumulative and end with +Inf = count.
    inf = total(after, "sluice_query_duration_seconds_bucket", protocol="pg", le="+Inf")
    assert inf == total(after, "sluice_query_duration_seconds_count", protocol="pg")
    assert total(after, "sluice_auth_failures_total") - total(before, "sluice_auth_failures_total") >= 1
    assert total(after, "sluice_workers", warehouse="default", state="ready") >= 1
    assert total(after, "sluice_queue_wait_seconds_count", warehouse="default") >= 1
    assert total(after, "sluice_cache_lookups_total") > total(before, "sluice_cache_lookups_total")
    assert ("sluice_scale_events_total", (("reason", "min_workers"), ("warehouse", "default"))) in after
    assert total(after, "sluice_result_rows_total") > total(before, "sluice_result_rows_total")
    # The history writer catches up within a few ticks, committing batches, not records.
    deadline = time.time() + 10
    while time.time() < deadline:
        now = scrape(server)
        if total(now, "sluice_history_written_total") >= total(now, "sluice_queries_total"):
            break
        time.sleep(0.25)
    assert total(now, "sluice_history_written_total") >= total(now, "sluice_queries_total")
    commits = total(now, "sluice_history_batches_total") - total(before, "sluice_history_batches_total")
    assert 1 <= commits <= total(now, "sluice_history_written_total") - total(before, "sluice_history_written_total")


def test_json_logs_carry_the_query_id(tmp_path):
    server = start_sluice("--log-format", "json", env={"SLUICE_LOG": "info,gateway=debug"})
    try:
        with pg(server) as conn:
            conn.execute("select 'json-log-marker', count(*) from tpch.region").fetchall()
        ids = history_ids = wait_for(lambda: history(server, "statement_text like '%json-log-marker%' and "
                                                             "statement_text not like '%query_history%'"), 10, "record")
        query_id = ids[0]["statement_id"]
        ended = [json.loads(line) for line in server.log().splitlines()
                 if line.startswith("{") and "statement ended" in line]
        assert any(e["fields"].get("query_id") == query_id for e in ended), ended[-3:]
        assert history_ids
    finally:
        server.stop()


# ── the Statement Execution API ─────────────────────────────────────────────────────────


def test_statement_execution_api_through_databricks_sdk(server):
    w = workspace(server)
    api = w.statement_execution
    # INLINE JSON_ARRAY with a named parameter, checked against DuckDB.
    r = api.execute_statement(
        statement="select n_nationkey, n_name from tpch.nation where n_regionkey = :region order by n_nationkey",
        warehouse_id="default", wait_timeout="30s",
        parameters=[StatementParameterListItem(name="region", value="2", type="INT")])
    assert r.status.state == StatementState.SUCCEEDED
    want = reference(server, "select n_nationkey, n_name from nation where n_regionkey = 2 order by 1")
    assert [(int(a), b) for a, b in r.result.data_array] == want
    cols = r.manifest.schema.columns
    assert [c.name for c in cols] == ["n_nationkey", "n_name"]
    assert cols[0].type_name.value == "LONG" and cols[1].type_name.value == "STRING"
    assert r.manifest.total_row_count == len(want)

    # A result of many chunks, fetched asynchronously (wait_timeout 0s) then chunk by chunk.
    r = api.execute_statement(statement="select l_orderkey, l_linenumber, l_shipdate, l_extendedprice "
                                        "from tpch.lineitem order by 1, 2", warehouse_id="default", wait_timeout="0s")
    assert r.status.state in (StatementState.PENDING, StatementState.RUNNING, StatementState.SUCCEEDED)
    g = wait_for(lambda: (lambda s: s if s.status.state not in (StatementState.PENDING, StatementState.RUNNING) else None)(
        api.get_statement(r.statement_id)), 120, "the statement to finish")
    assert g.status.state == StatementState.SUCCEEDED
    assert g.manifest.total_chunk_count > 1
    rows = list(g.result.data_array)
    chunk = g.result
    while chunk.next_chunk_index is not None:
        chunk = api.get_statement_result_chunk_n(r.statement_id, chunk.next_chunk_index)
        assert chunk.row_offset == len(rows)
        rows.extend(chunk.data_array)
    want = reference(server, "select l_orderkey, l_linenumber, cast(l_shipdate as varchar), "
                             "cast(l_extendedprice as varchar) from lineitem order by 1, 2")
    assert len(rows) == g.manifest.total_row_count == len(want)
    assert [(int(a), int(b), c, d) for a, b, c, d in rows[:100]] == [(a, b, c, d) for a, b, c, d in want[:100]]

    # EXTERNAL_LINKS: signed links that need no token, Arrow IPC streams and CSV.
    r = api.execute_statement(statement="select o_orderkey, o_totalprice from tpch.orders",
                              warehouse_id="default", wait_timeout="30s",
                              disposition=Disposition.EXTERNAL_LINKS, format=Format.ARROW_STREAM)
    assert r.status.state == StatementState.SUCCEEDED
    tables, chunk = [], r.result
    while True:
        link = chunk.external_links[0]
        with urllib.request.urlopen(link.external_link, timeout=30) as resp:
            tables.append(pa.ipc.open_stream(resp.read()).read_all())
        if chunk.next_chunk_index is None:
            break
        chunk = api.get_statement_result_chunk_n(r.statement_id, chunk.next_chunk_index)
    got = pa.concat_tables(tables)
    assert got.num_rows == reference(server, "select count(*) from orders")[0][0]
    assert float(pa.compute.sum(got.column("o_totalprice")).as_py()) == pytest.approx(
        float(reference(server, "select sum(o_totalprice) from orders")[0][0]))
    tampered = link.external_link.replace("sig=", "sig=00")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)
    assert refused.value.code == 403
    r = api.execute_statement(statement="select r_regionkey, r_name from tpch.region order by 1",
                              warehouse_id="default", wait_timeout="30s",
                              disposition=Disposition.EXTERNAL_LINKS, format=Format.CSV)
    with urllib.request.urlopen(r.result.external_links[0].external_link, timeout=30) as resp:
        csv = pa.csv.read_csv(io.BytesIO(resp.read()))
    assert [tuple(x.values()) for x in csv.to_pylist()] == reference(server, "select r_regionkey, r_name from region order by 1")

    # row_limit truncates and says so.
    r = api.execute_statement(statement="select * from tpch.nation", warehouse_id="default",
                              wait_timeout="30s", row_limit=7)
    assert r.manifest.total_row_count == 7 and r.manifest.truncated
    # byte_limit keeps the rows that fit.
    r = api.execute_statement(statement="select n_name from tpch.nation order by n_nationkey",
                              warehouse_id="default", wait_timeout="30s", byte_limit=100)
    assert r.manifest.truncated and 0 < r.manifest.total_row_count < 25
    assert sum(len(json.dumps(row)) for row in r.result.data_array) <= 100
    # An INLINE result over 25 MiB is refused with what to do instead.
    r = api.execute_statement(statement="select repeat('x', 2000000) from tpch.nation",
                              warehouse_id="default", wait_timeout="50s")
    assert r.status.state == StatementState.FAILED and "EXTERNAL_LINKS" in r.status.error.message
    assert r.status.error.error_code.value == "RESOURCE_EXHAUSTED" and r.status.sql_state == "53200"

    # SQL errors: FAILED with the SQLSTATE; the API stays fine.
    r = api.execute_statement(statement="select nope from tpch.nation", warehouse_id="default", wait_timeout="30s")
    assert r.status.state == StatementState.FAILED
    assert r.status.sql_state == "42703" and "nope" in r.status.error.message

    # Cancel: a long statement left running (0s), then cancelled; on_wait_timeout=CANCEL.
    r = api.execute_statement(statement=LONG_QUERY, warehouse_id="default", wait_timeout="0s")
    api.cancel_execution(r.statement_id)
    assert api.get_statement(r.statement_id).status.state == StatementState.CANCELED
    r = api.execute_statement(statement=LONG_QUERY, warehouse_id="default", wait_timeout="5s",
                              on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CANCEL)
    assert r.status.state == StatementState.CANCELED
    # The worker query stopped too.
    wait_for(lambda: scrape(server)[("sluice_running_queries", (("warehouse", "default"),))] == 0, 30,
             "the cancelled queries to leave the worker")

    # Bad requests are 400s with a message; other principals' statements do not exist.
    with pytest.raises(DatabricksError) as bad:
        api.execute_statement(statement="select 1", warehouse_id="default", wait_timeout="3s")
    assert "wait_timeout" in str(bad.value)
    with pytest.raises(DatabricksError) as missing:
        api.execute_statement(statement="select 1", warehouse_id="no-such-warehouse")
    assert "no-such-warehouse" in str(missing.value)
    r = api.execute_statement(statement="select 1", warehouse_id="default", wait_timeout="30s")
    with pytest.raises(DatabricksError):
        workspace(server, ALICE).statement_execution.get_statement(r.statement_id)


def test_statement_execution_api_with_curl(server):
    """The raw API: what curl sends and gets, including 401 and 400 bodies."""
    base = f"{server.http_url}/api/2.0/sql/statements"
    body = json.dumps({"statement": "select count(*) as n from tpch.region", "warehouse_id": "default",
                       "wait_timeout": "10s"})
    out = subprocess.run(["curl", "-sS", "-X", "POST", base, "-H", f"Authorization: Bearer {server.token}",
                          "-H", "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(out.stdout)
    assert answer["status"]["state"] == "SUCCEEDED" and answer["result"]["data_array"] == [["5"]]
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", base, "-d", body],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "401"
    status, raw = http(server, "POST", "/api/2.0/sql/statements", {"statement": "select 1"})
    assert status == 400 and "warehouse_id" in json.loads(raw)["message"]
    status, raw = http(server, "POST", "/api/2.0/sql/statements",
                       {"statement": "select 1", "warehouse_id": "default", "format": "ARROW_STREAM"})
    assert status == 400 and "EXTERNAL_LINKS" in json.loads(raw)["message"]
    # The server is fine after all that.
    with pg(server) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# ── the admin page in a browser ─────────────────────────────────────────────────────────


def test_admin_page_in_headless_chromium(server):
    node_dir = HERE / "node"
    assert (node_dir / "node_modules" / "playwright-core").exists(), "run ./test.sh (npm ci in conformance/node)"
    shots = ROOT / "conformance" / "artifacts" / "ui"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    marker = f"ui-cancel-{time.time_ns()}"
    outcome = {}

    def long_query():
        try:
            with pg(server) as conn:
                conn.execute(f"select '{marker}', count(*) from tpch.lineitem a join tpch.lineitem b "
                             "on a.l_returnflag = b.l_returnflag").fetchall()
            outcome["result"] = "finished"
        except psycopg.Error as e:
            outcome["result"] = e.sqlstate
            outcome["message"] = str(e)
    thread = threading.Thread(target=long_query)
    thread.start()
    env = dict(os.environ, SLUICE_HTTP=server.http_url, SLUICE_TOKEN=server.token, SLUICE_OTHER_TOKEN=ALICE,
               SLUICE_MARKER=marker, SLUICE_SHOTS=str(shots))
    run = subprocess.run(["node", "ui.mjs"], cwd=node_dir, env=env, capture_output=True, text=True, timeout=240)
    thread.join(60)
    assert run.returncode == 0, run.stderr + run.stdout
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert "MONITOR" in seen["refused"] and "alice" in seen["refused"]
    assert "default" in seen["warehouses"] and seen["workers"] >= 1
    assert seen["notice"] == "Cancel requested."
    assert outcome.get("result") == "57014", outcome
    assert "canceled by dev" in outcome["message"]
    assert len(seen["history"]) == 1 and seen["history"][0][1] == seen["running"], seen
    assert "CANCELED" in seen["history"][0] and "state=CANCELED" in seen["url"]
    assert seen["signedOut"]
    for name in ["1-login", "2-overview", "3-running", "4-history"]:
        assert (shots / f"{name}.png").stat().st_size > 1000
    # Without the cookie, the page asks for a token; a forged cross-site cancel is refused.
    status, page = http(server, "GET", "/ui", token=False)
    assert status == 200 and b'id="token"' in page
    status, _ = http(server, "POST", "/ui/queries/q1/cancel", token=False,
                     headers={"Origin": "https://evil.example", "Cookie": f"sluice_ui={server.token}"})
    assert status == 403


# ── lifecycle ───────────────────────────────────────────────────────────────────────────


def test_readyz_and_healthz(server):
    status, body = http(server, "GET", "/readyz", token=False)
    assert status == 200 and json.loads(body)["status"] == "ready"
    status, _ = http(server, "GET", "/healthz", token=False)
    assert status == 200


def test_sigterm_drains_an_in_flight_query_to_completion(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[shutdown]\ndrain_timeout = "120s"\n\n[cache]\nenabled = false\n')
    data = tmp_path / "data"
    server = start_sluice("--config", str(config), data_dir=data)
    expected = reference(server, SLOW_QUERY.replace("tpch.", ""))[0][0]
    outcome = {}
    idle = pg(server)  # an open session with nothing running

    def slow():
        with pg(server) as conn:
            outcome["rows"] = conn.execute(SLOW_QUERY.replace("count(*)", "count(*), 'drain-marker'")).fetchall()
    thread = threading.Thread(target=slow)
    thread.start()
    wait_for(lambda: json.loads(http(server, "GET", "/readyz", token=False)[1])["running"] >= 1, 30,
             "the query to run")
    server.proc.send_signal(signal.SIGTERM)
    # Draining: not ready, no new connections, no new statements on open sessions.
    wait_for(lambda: http(server, "GET", "/readyz", token=False)[0] == 503, 10, "/readyz to turn 503")
    assert json.loads(http(server, "GET", "/readyz", token=False)[1])["status"] == "draining"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn(), connect_timeout=3).close()
    with pytest.raises(psycopg.Error) as refused:
        idle.execute("select count(*) from tpch.region")
    assert refused.value.sqlstate == "57P03" and "shutting down" in str(refused.value)
    thread.join(300)
    assert outcome.get("rows") == [(expected, "drain-marker")], outcome
    assert server.proc.wait(timeout=60) == 0
    assert "draining" in server.log()
    # Its history record was written before the process ended.
    again = start_sluice(data_dir=data)
    try:
        rows = history(again, "statement_text like '%drain-marker%' and statement_text not like '%query_history%'")
        assert [r["state"] for r in rows] == ["FINISHED"]
    finally:
        again.stop()


def test_sigterm_cancels_what_outlasts_the_drain_timeout(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[shutdown]\ndrain_timeout = "1s"\n\n[cache]\nenabled = false\n')
    server = start_sluice("--config", str(config), data_dir=tmp_path / "data")
    outcome = {}

    def long():
        try:
            with pg(server) as conn:
                conn.execute(LONG_QUERY).fetchall()
            outcome["result"] = "finished"
        except psycopg.Error as e:
            outcome["result"] = e.sqlstate
    thread = threading.Thread(target=long)
    thread.start()
    wait_for(lambda: json.loads(http(server, "GET", "/readyz", token=False)[1])["running"] >= 1, 30,
             "the query to run")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    thread.join(30)
    assert time.monotonic() - started < 15
    assert outcome.get("result") in ("57014", "57P01", "08006", None) and outcome.get("result") != "finished", outcome
    assert "drain timeout passed" in server.log()


def test_sighup_reloads_grants_for_open_sessions(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text(token_entry("alice", ALICE, "analyst") + GRANTS)
    server = start_sluice("--config", str(config), data_dir=tmp_path / "data")
    try:
        with pg(server, ALICE) as conn:
            assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)
            # A statement prepared (and its plans kept) under the old grants.
            lookup = "select n_name from tpch.nation where n_nationkey = %s"
            for _ in range(2):
                assert conn.execute(lookup, [7], prepare=True).fetchone() == ("GERMANY",)
            # The grant now covers one table; the open session sees it at its next statement.
            config.write_text(token_entry("alice", ALICE, "analyst")
                              + '[[grants]]\nroles = ["analyst"]\nselect = ["tpch.region"]\n')
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in server.log(), 10, "the reload")
            with pytest.raises(psycopg.Error) as denied:
                conn.execute("select count(*) from tpch.nation")
            assert denied.value.sqlstate == "42501"
            # The prepared statement too: it is planned (and authorized) again.
            with pytest.raises(psycopg.Error) as denied:
                conn.execute(lookup, [7], prepare=True)
            assert denied.value.sqlstate == "42501"
            assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
            # A grant that cannot work is refused whole; the previous grants stay.
            config.write_text(token_entry("alice", ALICE, "analyst")
                              + '[[grants]]\nroles = ["analyst"]\nprivileges = ["SUPERUSER"]\n')
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "SUPERUSER" in server.log(), 10, "the refusal")
            assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
    finally:
        server.stop()


def test_sighup_reloads_tables(tmp_path):
    (tmp_path / "trips.csv").write_text("id,city\n1,Oslo\n2,Lima\n3,Oslo\n")
    (tmp_path / "fares.csv").write_text("id,amount\n1,10.5\n2,7.25\n")
    config = tmp_path / "sluice.toml"
    table = '[[tables]]\nname = "mobility.{0}"\nlocation = "{0}.csv"\nformat = "csv"\n\n'
    config.write_text(table.format("trips"))
    server = start_sluice("--config", str(config), data_dir=tmp_path / "data")
    try:
        with pg(server) as conn:
            query = "select city, count(*) from mobility.trips group by city order by city"
            assert conn.execute(query).fetchall() == [("Lima", 1), ("Oslo", 2)]
            # A table added and one removed, seen by the open session after SIGHUP.
            config.write_text(table.format("fares"))
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "tables reloaded" in server.log(), 30, "the reload")
            assert conn.execute("select sum(amount) from mobility.fares").fetchone()[0] == pytest.approx(17.75)
            with pytest.raises(psycopg.Error) as gone:
                conn.execute(query)  # answered from the cache before: not any more
            assert gone.value.sqlstate == "42P01"
            assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
            # A table that cannot load refuses the whole reload.
            config.write_text(table.format("fares") + table.format("missing"))
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload failed" in server.log(), 30, "the refusal")
            assert conn.execute("select count(*) from mobility.fares").fetchone() == (2,)
    finally:
        server.stop()


def test_sighup_reloads_the_tls_certificate(tmp_path):
    cert, key = self_signed(tmp_path, "127.0.0.1", "first")
    live_cert, live_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    server = start_sluice("--tls-cert", str(live_cert), "--tls-key", str(live_key), data_dir=tmp_path / "data")

    def pg_tls(root):
        return psycopg.connect(server.dsn(sslmode="verify-full", sslrootcert=str(root)), autocommit=True)

    def flight_tls(root):
        kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
                  "adbc.flight.sql.client_option.tls_root_certs": pathlib.Path(root).read_text()}
        return flight_sql.connect(f"grpc+tls://{server.flight}", db_kwargs=kwargs, autocommit=True)

    try:
        held = pg_tls(cert)
        with flight_tls(cert) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from tpch.region")
            assert cur.fetchall() == [(5,)]
        # A new certificate (another key) in the same files, then SIGHUP.
        second, second_key = self_signed(tmp_path, "127.0.0.1", "second")
        shutil.copy(second, live_cert)
        shutil.copy(second_key, live_key)
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate reloaded" in server.log(), 10, "the reload")
        with pg_tls(second) as conn:
            assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)
        with pytest.raises(psycopg.OperationalError):
            pg_tls(cert).close()
        with flight_tls(second) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from tpch.nation")
            assert cur.fetchall() == [(25,)]
        status = urllib.request.urlopen(f"{server.http_url}/readyz", timeout=10,
                                        context=__import__("ssl").create_default_context(cafile=str(second))).status
        assert status == 200
        # The session opened before the reload goes on.
        assert held.execute("select count(*) from tpch.region").fetchone() == (5,)
        held.close()
        # A key that does not go with the certificate is refused; the old one stays.
        shutil.copy(cert, live_cert)
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "do not go together" in server.log(), 10, "the refusal")
        with pg_tls(second) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        server.stop()


# ── docker-compose ──────────────────────────────────────────────────────────────────────


def test_docker_compose_file_is_well_formed():
    """No container engine here: the file is checked for shape, not run."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"gateway", "worker-1", "worker-2", "oidc", "azurite"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    gateway = services["gateway"]
    assert gateway["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / gateway["build"].get("context", ".") / "Dockerfile").exists()
    command = " ".join(gateway["command"]) if isinstance(gateway["command"], list) else gateway["command"]
    assert "serve" in command
    for worker in ["worker-1", "worker-2"]:
        cmd = services[worker]["command"]
        cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
        assert "worker" in cmd and "--listen" in cmd
        assert worker in gateway.get("depends_on", [])
    ports = [str(p) for p in gateway["ports"]]
    assert any(p.endswith(":5433") for p in ports) and any(p.endswith(":8080") for p in ports)
    assert "10000" in " ".join(str(p) for p in services["azurite"].get("ports", [])) or \
           "azurite" in str(services["azurite"].get("command", ""))
    # The config the gateway mounts exists, names both workers, and parses as TOML.
    import tomllib
    mounted = [v.split(":")[0] for v in gateway.get("volumes", []) if str(v).endswith(".toml") or ".toml:" in str(v)]
    assert mounted, gateway.get("volumes")
    config = tomllib.loads((ROOT / mounted[0]).read_text())
    addrs = " ".join(w for wh in config["warehouses"].values() for w in wh.get("worker_addrs", []))
    assert "worker-1" in addrs and "worker-2" in addrs
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "cargo build --release" in dockerfile and "ENTRYPOINT" in dockerfile
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in readme and "not run here" in readme

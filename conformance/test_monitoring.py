"""Monitoring: the admin page's charts over time and query profiles in headless Chromium
after a scripted load (finished, failed and canceled statements, cache hits, a burst that
makes the warehouse scale), EXPLAIN ANALYZE with operator metrics through pg, Flight SQL
and HS2, and the REST API's profile JSON (the principal's own statements, or MONITOR).
Series storage staying bounded over a long run is a Rust test (gateway::series)."""
import json
import os
import shutil
import subprocess
import threading
import time

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pytest
from databricks import sql as dbsql

from conftest import HERE, ROOT, start_sluice, wait_for
from test_operations import ALICE, GRANTS, OPS, history, http, pg, reference, token_entry

# Small queries run on the workers too; the default warehouse grows from one worker to
# three under a queue and shrinks back after 4 idle seconds.
CONFIG = (token_entry("alice", ALICE, "analyst") + token_entry("ops", OPS, "ops") + GRANTS
          + '[warehouses.default]\nsmall_query_bytes = "0"\nmin_workers = 1\nmax_workers = 3\n'
            'max_concurrency_per_worker = 1\nauto_stop = "4s"\n')
# TPC-H Q1 (pricing summary), marked so the history finds it (the history keeps the
# statement as parsed: a literal, not a comment).
Q1 = """select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
  sum(l_extendedprice) as sum_base_price, sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
  avg(l_quantity) as avg_qty, count(*) as count_order, '{marker}' as marker
from tpch.lineitem where l_shipdate <= date '1998-12-01' - interval '90' day
group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus"""
Q1_REFERENCE = """select l_returnflag, l_linestatus, count(*) from lineitem
where l_shipdate <= date '1998-12-01' - interval '90' day group by 1, 2 order by 1, 2"""
BURST = ("select count(*) from tpch.orders a join tpch.orders b "
         "on a.o_orderpriority = b.o_orderpriority where a.o_orderkey % {n} = 0")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("monitoring")
    config = d / "sluice.toml"
    config.write_text(CONFIG)
    s = start_sluice("--config", str(config), data_dir=d / "data")
    yield s
    s.stop()


def scripted_load(server, marker):
    """Finished, failed and canceled statements, a cache miss then hits, and a burst of
    slow queries that queue and start workers."""
    with pg(server) as conn:
        for i in range(5):
            conn.execute(f"select count(*) from tpch.nation where n_regionkey = {i % 5}").fetchall()
        for _ in range(3):
            conn.execute("select count(*), 'cached' from tpch.region").fetchall()
        with pytest.raises(psycopg.Error) as failed:
            conn.execute("select cast(o_comment as int) from tpch.orders").fetchall()
        assert failed.value.sqlstate.startswith("22"), failed.value
        conn.execute("set statement_timeout = '300ms'")
        with pytest.raises(psycopg.Error) as canceled:
            conn.execute("select count(*) from tpch.lineitem a join tpch.lineitem b "
                         "on a.l_returnflag = b.l_returnflag").fetchall()
        assert canceled.value.sqlstate == "57014", canceled.value
        conn.execute("reset statement_timeout")
        rows = conn.execute(Q1.format(marker=marker)).fetchall()
    assert [(r[0], r[1], r[6]) for r in rows] == reference(server, Q1_REFERENCE)
    errors = []

    def slow(n):
        try:
            with pg(server) as c:
                c.execute(BURST.format(n=n)).fetchall()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=slow, args=(n,)) for n in range(2, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors


def test_charts_and_profile_in_headless_chromium(server):
    node_dir = HERE / "node"
    assert (node_dir / "node_modules" / "playwright-core").exists(), "run ./test.sh (npm ci in conformance/node)"
    shots = ROOT / "conformance" / "artifacts" / "monitoring"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    marker = f"profile-{time.time_ns()}"
    scripted_load(server, marker)

    # The burst started workers, which stop after 4 idle seconds; the sampler (every 2 s)
    # has seen both.
    def scaled():
        with pg(server, OPS) as conn:
            ups, downs = conn.execute("select scale_ups, scale_downs from system.warehouses "
                                      "where name = 'default'").fetchone()
            return ups > 0 and downs > 0
    wait_for(scaled, 60, "the burst to start workers and idle ones to stop")
    time.sleep(3)
    env = dict(os.environ, SLUICE_HTTP=server.http_url, SLUICE_TOKEN=OPS, SLUICE_MARKER=marker,
               SLUICE_SHOTS=str(shots))
    run = subprocess.run(["node", "ui_monitoring.mjs"], cwd=node_dir, env=env, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stderr + run.stdout
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["window"] == "15m" and seen["warehouse"] == "default", seen
    expected = {
        "chart-statements": ["finished", "failed", "canceled"],
        "chart-latency": ["p50", "p95", "p99"],
        "chart-queue": ["average", "most"],
        "chart-wait": ["mean", "longest"],
        "chart-workers": ["running", "min", "max"],
        "chart-cache": ["hit rate"],
        "chart-rows": ["rows"],
        "chart-bytes": ["bytes"],
    }
    for chart, names in expected.items():
        assert sorted(seen["series"][chart]) == sorted(names), (chart, seen["series"])
        for name in names:
            assert seen["series"][chart][name] > 0, (chart, name, seen["series"][chart])
    # Workers started for the queue, marked on the workers chart with their reason.
    assert any(m["up"] and "started (queue" in m["title"] for m in seen["scaleMarks"]), seen["scaleMarks"]
    assert any(not m["up"] and "stopped (idle" in m["title"] for m in seen["scaleMarks"]), seen["scaleMarks"]
    assert "max" in seen["legend"]
    # Human units: the cache budget is 1 GiB, not 1073741824.
    assert seen["cacheBudget"].strip() == "1.0 GiB", seen["cacheBudget"]

    assert seen["switched"] == "1h" and "window=1h" in seen["url"]
    assert all(n > 0 for n in seen["switchedSeries"]["chart-statements"].values())
    assert seen["week"] == "1800"

    assert "ago" in seen["historyEnded"], seen["historyEnded"]
    assert "/ui/queries/q" in seen["profileUrl"]
    assert seen["ranOn"].startswith("worker "), seen["ranOn"]
    ops = seen["operators"]
    names = [o["name"] for o in ops]
    assert "AggregateExec" in names and "DataSourceExec" in names, names
    assert any(o["timeNs"] > 0 for o in ops) and sum(o["timeNs"] > 0 for o in ops) >= 3, ops
    slowest = [o for o in ops if o["slowest"]]
    assert len(slowest) == 1 and slowest[0]["timeNs"] == max(o["timeNs"] for o in ops), ops
    assert "slowest" in slowest[0]["share"] and "%" in slowest[0]["share"]
    for name in ["1-charts-15m", "2-charts-1h", "3-profile"]:
        assert (shots / f"{name}.png").stat().st_size > 5000


def statement_id(server, marker, token=OPS):
    def found():
        return history(server, f"statement_text like '%{marker}%' and state = 'FINISHED'", token)
    rows = wait_for(found, 30, "the statement in the history")
    return rows[-1]["statement_id"]


def test_rest_profile_json_for_its_principal_and_monitors(server):
    marker = f"rest-profile-{time.time_ns()}"
    with pg(server, ALICE) as conn:
        rows = conn.execute(Q1.format(marker=marker)).fetchall()
    assert len(rows) == 4
    sid = statement_id(server, marker)
    for token in [ALICE, OPS]:
        status, body = http(server, "GET", f"/api/2.0/sluice/queries/{sid}/profile", token=token)
        assert status == 200, body
        profile = json.loads(body)
        assert profile["statement_id"] == sid and profile["principal"] == "alice"
        assert profile["state"] == "FINISHED" and profile["ran_on"].startswith("worker ")
        assert profile["rows"] == 4 and marker in profile["statement_text"]

        def walk(node):
            yield node
            for child in node["children"]:
                yield from walk(child)
        nodes = list(walk(profile["plan"]))
        assert profile["plan"]["rows"] == 4
        assert any(n["operator"] == "AggregateExec" and n["time_ns"] > 0 for n in nodes), nodes
        assert any(n["operator"] == "DataSourceExec" and n["rows"] > 0 and n["output_bytes"] > 0
                   and "bytes_scanned" in n["metrics"] for n in nodes), nodes
        assert sum(n["slowest"] for n in nodes) == 1
        shares = [n["time_share"] for n in nodes if n["time_share"] is not None]
        assert abs(sum(shares) - 1.0) < 1e-6
        assert profile["operators_time_ns"] == sum(n["time_ns"] or 0 for n in nodes)
    # Another principal's statement: the same 404 as one that does not exist.
    mine = f"ops-profile-{time.time_ns()}"
    with pg(server, OPS) as conn:
        conn.execute(Q1.format(marker=mine)).fetchall()
    other = statement_id(server, mine)
    status, refused = http(server, "GET", f"/api/2.0/sluice/queries/{other}/profile", token=ALICE)
    status_missing, missing = http(server, "GET", "/api/2.0/sluice/queries/q-none/profile", token=ALICE)
    assert status == status_missing == 404
    assert json.loads(refused)["error_code"] == json.loads(missing)["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    status, _ = http(server, "GET", f"/api/2.0/sluice/queries/{other}/profile", token=False)
    assert status == 401
    # A statement whose text holds a secret: the history hides it, and so does the profile
    # (its operators' descriptions would print the literal).
    alias = f"jwt_check_{time.time_ns()}"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
    with pg(server, ALICE) as conn:
        conn.execute(f"select count(*) as {alias} from tpch.orders where o_comment <> '{jwt}'").fetchall()
    sid = statement_id(server, alias)
    status, body = http(server, "GET", f"/api/2.0/sluice/queries/{sid}/profile", token=OPS)
    assert status == 200, body
    assert jwt.encode() not in body and "'***'" in json.loads(body)["statement_text"], body


EXPLAIN = "explain analyze select o_orderpriority, count(*) from tpch.orders group by o_orderpriority"


def has_operator_metrics(plan_text):
    # The plan as it ran, without the worker's yield points.
    return ("AggregateExec" in plan_text and "output_rows=" in plan_text
            and "elapsed_compute=" in plan_text and "DataSourceExec" in plan_text
            and "Yielding" not in plan_text)


def test_explain_analyze_reports_operator_metrics_on_every_front_end(server):
    with pg(server) as conn:
        cur = conn.execute(EXPLAIN)
        pg_text = "\n".join(str(c) for row in cur.fetchall() for c in row)
    assert has_operator_metrics(pg_text), pg_text
    # pgAdmin's and DBeaver's "explain analyze": PostgreSQL's options list, FORMAT JSON
    # (answered in DataFusion's two columns, the plan last).
    with pg(server) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON, ANALYZE true, VERBOSE false, COSTS true, BUFFERS false, "
                           "TIMING true, SUMMARY true) " + EXPLAIN.removeprefix("explain analyze ")).fetchone()
    text = row[-1] if isinstance(row[-1], str) else json.dumps(row[-1])
    assert '"Actual Rows"' in text and "AggregateExec" in text and "Yielding" not in text, text

    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(EXPLAIN)
            flight_text = "\n".join(str(c) for row in cur.fetchall() for c in row)
    assert has_operator_metrics(flight_text), flight_text

    with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                       access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default") as conn:
        with conn.cursor() as cur:
            cur.execute(EXPLAIN)
            hs2_text = "\n".join(str(c) for row in cur.fetchall() for c in row)
    assert has_operator_metrics(hs2_text), hs2_text

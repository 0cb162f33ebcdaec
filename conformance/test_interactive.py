"""Interactive speed (issue 26): prepared statements keep their plans, and small queries run
in the gateway. Answers are checked against DuckDB over the same files; what ran where
and which plans served again are read from the query history and /metrics."""
import time
import urllib.request

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import configured_sluice, start_sluice, wait_for, write_parquet

# How long a table's listing may be trusted (cache.metadata_refresh): kept plans are
# checked against the same versions.
REFRESH = 1.0


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("interactive-lake")
    write_parquet(lake / "events" / "part-0.parquet", "select i as k, i * 10 as v from range(0, 100) t(i)")
    return lake


@pytest.fixture(scope="module")
def server(lake, tmp_path_factory):
    # The result cache off: every execution runs (and the memo of repeated texts is off,
    # so only the statements clients prepare keep plans).
    config = f"""
[[tables]]
name = "lake.events"
location = "{lake}/events"
format = "parquet"

[warehouses.default]
workers = 1

[warehouses.everything]
workers = 1
small_query_bytes = "0"

[cache]
enabled = false
metadata_refresh = "{REFRESH}s"
"""
    with configured_sluice(tmp_path_factory, "interactive", config) as s:
        yield s


def metric(server, name, **labels):
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as r:
        body = r.read().decode()
    return sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def nation_reference(server, k):
    files = sorted(str(f) for f in (server.data_dir / "tpch" / "nation").rglob("*.parquet"))
    return duckdb.execute(f"select n_nationkey, n_name, n_regionkey from read_parquet({files}) "
                          "where n_nationkey = ?", [k]).fetchall()


def history_of(server, marker):
    """(warehouse, worker_id) of the statements whose text holds `marker`, once written."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return wait_for(lambda: conn.execute(
            "select warehouse, worker_id from system.query_history where statement_text like %s "
            "and statement_text not like '%%query_history%%'", [f"%{marker}%"]).fetchall(),
            10, f"the history of {marker}")


def test_a_prepared_point_query_reuses_its_plans_and_answers_as_duckdb(server):
    sql = "select n_nationkey, n_name, n_regionkey from tpch.nation where n_nationkey = %s"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        # Every value once: each plans (a statement keeps the plans of its last 32 values).
        made = metric(server, "sluice_kept_plans_total", plan="made")
        for k in range(25):
            assert conn.execute(sql, [k], prepare=True).fetchall() == nation_reference(server, k)
        assert metric(server, "sluice_kept_plans_total", plan="made") - made == 25
        # A dashboard's filter takes a few values over and over: those plans serve again.
        for k in (3, 7, 11, 24):
            assert conn.execute(sql, [k], prepare=True).fetchall() == nation_reference(server, k)
        reused = metric(server, "sluice_kept_plans_total", plan="reused")
        made = metric(server, "sluice_kept_plans_total", plan="made")
        for _ in range(3):
            for k in (3, 7, 11, 24):
                assert conn.execute(sql, [k], prepare=True).fetchall() == nation_reference(server, k)
        assert metric(server, "sluice_kept_plans_total", plan="reused") - reused == 12
        assert metric(server, "sluice_kept_plans_total", plan="made") == made
        # A value with no row, and a NULL.
        assert conn.execute(sql, [99], prepare=True).fetchall() == []
        assert conn.execute(sql, [None], prepare=True).fetchall() == []


def tpch_reference(server, sql, params):
    con = duckdb.connect()
    con.execute("create schema tpch")
    for t in ["nation", "customer", "orders"]:
        files = sorted(str(f) for f in (server.data_dir / "tpch" / t).rglob("*.parquet"))
        con.execute(f"create view tpch.{t} as select * from read_parquet({files})")
    return con.execute(sql.replace("%s", "?"), params).fetchall()


def test_a_prepared_join_with_a_top_k_answers_the_same_every_time(server):
    """A hash join and a TopK push dynamic filters into their scans: such plans are built
    anew at each execution (their optimized plan is what is kept)."""
    sql = ("select n_name, count(*) as orders, sum(o_totalprice) as total from tpch.orders "
           "join tpch.customer on o_custkey = c_custkey join tpch.nation on c_nationkey = n_nationkey "
           "where o_totalprice > %s group by n_name order by total desc, n_name limit 5")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for price in (1000, 250000, 1000, 250000, 1000):
            rows = conn.execute(sql, [price], prepare=True).fetchall()
            expected = tpch_reference(server, sql, [price])
            assert [(n, c, float(t)) for n, c, t in rows] == \
                [(n, c, pytest.approx(float(t))) for n, c, t in expected]


def test_select_one_prepared_reuses_its_plan(server):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("select 1 as one", prepare=True).fetchall()
        reused = metric(server, "sluice_kept_plans_total", plan="reused")
        for _ in range(5):
            assert conn.execute("select 1 as one", prepare=True).fetchall() == [(1,)]
        assert metric(server, "sluice_kept_plans_total", plan="reused") - reused == 5


def test_a_kept_plan_sees_files_added_and_removed(server, lake):
    sql = "select count(*), sum(v) from lake.events where k >= %s"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.execute(sql, [0], prepare=True).fetchone() == (100, 49500)
        assert conn.execute(sql, [0], prepare=True).fetchone() == (100, 49500)
        write_parquet(lake / "events" / "part-1.parquet", "select i as k, i * 10 as v from range(100, 150) t(i)")
        time.sleep(REFRESH + 0.3)
        assert conn.execute(sql, [0], prepare=True).fetchone() == (150, 111750)
        (lake / "events" / "part-1.parquet").unlink()
        time.sleep(REFRESH + 0.3)
        assert conn.execute(sql, [0], prepare=True).fetchone() == (100, 49500)


def test_statements_that_read_the_time_are_planned_each_time(server):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        made = metric(server, "sluice_kept_plans_total", plan="made")
        reused = metric(server, "sluice_kept_plans_total", plan="reused")
        first = conn.execute("select now(), count(*) from tpch.nation", prepare=True).fetchone()
        time.sleep(0.05)
        second = conn.execute("select now(), count(*) from tpch.nation", prepare=True).fetchone()
        assert second[0] > first[0] and first[1] == second[1] == 25
        # Neither kept nor reused: now() is read when the statement is optimized.
        assert metric(server, "sluice_kept_plans_total", plan="made") == made
        assert metric(server, "sluice_kept_plans_total", plan="reused") == reused


def test_small_queries_run_in_the_gateway_and_big_ones_on_a_worker(server):
    small = metric(server, "sluice_small_queries_total")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.execute("select sum(n_regionkey) as small_marker from tpch.nation").fetchone() == (50,)
        big = conn.execute("select sum(l_quantity) as big_marker from tpch.lineitem").fetchone()[0]
    assert big > 0
    assert metric(server, "sluice_small_queries_total") - small == 1
    assert history_of(server, "small_marker") == [("default", None)]
    ((warehouse, worker),) = history_of(server, "big_marker")
    assert warehouse == "default" and worker is not None


def test_a_join_of_small_tables_runs_on_a_worker(server):
    """Small inputs, unbounded work: a join (here a cross join, 25^3 rows) is never
    answered in the gateway."""
    small = metric(server, "sluice_small_queries_total")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.execute("select count(*) as join_marker from tpch.nation a, tpch.nation b, tpch.region c "
                            "where a.n_nationkey + b.n_nationkey + c.r_regionkey >= 0").fetchone() == (25 * 25 * 5,)
    assert metric(server, "sluice_small_queries_total") == small
    ((warehouse, worker),) = history_of(server, "join_marker")
    assert warehouse == "default" and worker is not None


def test_small_query_bytes_zero_sends_every_query_to_a_worker(server):
    small = metric(server, "sluice_small_queries_total")
    with psycopg.connect(server.dsn(dbname="everything"), autocommit=True) as conn:
        assert conn.execute("select sum(n_regionkey) as everything_marker from tpch.nation").fetchone() == (50,)
    assert metric(server, "sluice_small_queries_total") == small
    ((warehouse, worker),) = history_of(server, "everything_marker")
    assert warehouse == "everything" and worker is not None


def test_flight_sql_prepared_point_query_answers_as_duckdb(server):
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        cur = conn.cursor()
        for k in (0, 5, 5, 24, 5):
            cur.execute("select n_nationkey, n_name, n_regionkey from tpch.nation where n_nationkey = ?",
                        parameters=(k,))
            assert [tuple(r) for r in cur.fetchall()] == nation_reference(server, k)


def test_a_bad_small_query_bytes_is_refused_at_start(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[warehouses.default]\nsmall_query_bytes = "lots"\n')
    with pytest.raises(RuntimeError) as refused:
        start_sluice("--config", str(config), timeout=60)
    assert "small_query_bytes" in str(refused.value)

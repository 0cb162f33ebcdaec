"""The result cache: never stale (files added, replaced, removed; tables read only in a
subquery), shared by spellings of one plan, safe across principals, never for
non-deterministic plans, one execution for 50 identical concurrent queries, bypass from pg,
Flight SQL and HS2, a size limit, an admin clear, catalog answers, and a persistent tier
that survives a restart (and is not served once the data changed). Reference answers come
from DuckDB over the same files."""
import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
import pytest
from databricks import sql as dbsql

from conftest import start_sluice, write_parquet

ANALYST = "cache-analyst-token"
# How long a table's listing may be trusted (the server's cache.metadata_refresh).
REFRESH = 1.0


def config(lake, extra=""):
    return f"""
[[tables]]
name = "lake.events"
location = "{lake}/events"
format = "parquet"

[[tables]]
name = "lake.keys"
location = "{lake}/keys"
format = "parquet"

[[tables]]
name = "lake.single"
location = "{lake}/single.csv"
format = "csv"

[[tables]]
name = "secret.salaries"
location = "{lake}/salaries.csv"
format = "csv"

[warehouses.default]
workers = 1
# Executions are counted on the workers: small queries too run there.
small_query_bytes = "0"

[[auth.tokens]]
name = "analyst"
sha256 = "{hashlib.sha256(ANALYST.encode()).hexdigest()}"
roles = ["analyst"]

[[grants]]
roles = ["analyst"]
select = ["tpch.*", "lake.*"]

[cache]
metadata_refresh = "{REFRESH}s"
{extra}
"""


def make_lake(lake):
    write_parquet(f"{lake}/events/part-0.parquet", "select i as k, i * 10 as v from range(0, 100) t(i)")
    write_parquet(f"{lake}/events/part-1.parquet", "select i as k, i * 10 as v from range(100, 150) t(i)")
    write_parquet(f"{lake}/keys/k.parquet", "select i as k from range(0, 20) t(i)")
    (lake / "single.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    (lake / "salaries.csv").write_text("name,salary\nada,100\nbob,90\n")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    make_lake(lake)
    return lake


@pytest.fixture(scope="module")
def server(lake, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache-config") / "sluice.toml"
    path.write_text(config(lake, 'max_entry_size = "256KiB"'))
    s = start_sluice("--config", str(path))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def admin(server):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def analyst(server):
    with psycopg.connect(server.dsn(password=ANALYST), autocommit=True) as conn:
        yield conn


def stats(server):
    return server.health()["cache"]


def executions(server):
    """Queries the workers ran, as they reported at their last health check (every 1 s)."""
    def read():
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            return conn.execute("select coalesce(sum(queries_executed), 0) from system.workers").fetchone()[0]
    # Wait until two reports agree: nothing is in flight and the last one is in.
    last = read()
    while True:
        time.sleep(1.2)
        now = read()
        if now == last:
            return now
        last = now


def duck(sql, lake):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{lake}/events/*.parquet')")
    con.execute(f"CREATE VIEW keys AS SELECT * FROM read_parquet('{lake}/keys/*.parquet')")
    con.execute(f"CREATE VIEW single AS SELECT * FROM read_csv('{lake}/single.csv')")
    return [tuple(r) for r in con.execute(sql).fetchall()]


def answer(conn, sql):
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def served_twice(server, conn, sql):
    """Run `sql` twice; the second answer must come from the cache. Returns the answer."""
    first = answer(conn, sql)
    hits = stats(server)["hits"]
    second = answer(conn, sql)
    assert stats(server)["hits"] == hits + 1, f"not served from the cache: {sql}"
    assert second == first
    return second


EVENTS = "select count(*), sum(v) from lake.events"
EVENTS_REF = "select count(*), sum(v) from events"


def test_a_directory_table_sees_added_replaced_and_removed_files(server, admin, lake):
    assert served_twice(server, admin, EVENTS) == duck(EVENTS_REF, lake)

    write_parquet(f"{lake}/events/part-2.parquet", "select i as k, i * 10 as v from range(150, 170) t(i)")
    time.sleep(REFRESH + 0.2)
    assert answer(admin, EVENTS) == duck(EVENTS_REF, lake) == [(170, 143650)]

    write_parquet(f"{lake}/events/part-1.parquet", "select i as k, 7::bigint as v from range(100, 150) t(i)")
    time.sleep(REFRESH + 0.2)
    assert answer(admin, EVENTS) == duck(EVENTS_REF, lake)

    os.remove(f"{lake}/events/part-2.parquet")
    time.sleep(REFRESH + 0.2)
    assert answer(admin, EVENTS) == duck(EVENTS_REF, lake) == [(150, 49500 + 350)]
    # And the new state is cached in turn.
    assert served_twice(server, admin, EVENTS) == duck(EVENTS_REF, lake)


def test_a_single_file_table_sees_rewrites_in_place_and_by_rename(server, admin, lake):
    sql, ref = "select sum(amount) from lake.single", "select sum(amount) from single"
    assert served_twice(server, admin, sql) == duck(ref, lake) == [(60,)]
    # Same size, same name, same inode: only the modification time tells.
    with open(lake / "single.csv", "r+") as f:
        f.seek(0)
        f.write("id,amount\n1,40\n2,20\n3,30\n")
    time.sleep(REFRESH + 0.2)
    assert answer(admin, sql) == duck(ref, lake) == [(90,)]
    # Replaced by rename.
    (lake / "single.tmp").write_text("id,amount\n1,1\n")
    os.replace(lake / "single.tmp", lake / "single.csv")
    time.sleep(REFRESH + 0.2)
    assert answer(admin, sql) == duck(ref, lake) == [(1,)]


def test_spellings_of_one_plan_share_an_entry(server, admin):
    a = "select l_returnflag, count(*) from tpch.lineitem group by 1"
    b = "SELECT L_RETURNFLAG,   COUNT(*)\n FROM TPCH.LINEITEM GROUP BY L_RETURNFLAG"
    before = stats(server)
    first = sorted(answer(admin, a))
    middle = stats(server)
    assert middle["stored"] == before["stored"] + 1
    second = sorted(answer(admin, b))
    after = stats(server)
    assert second == first
    assert after["hits"] == middle["hits"] + 1 and after["stored"] == middle["stored"], \
        "the second spelling ran again instead of sharing the entry"
    # One entry, hit once; it shows the statement as first planned.
    entries = admin.execute("select hits, statement_text from system.cache "
                            "where statement_text ilike '%l_returnflag%'").fetchall()
    assert entries == [(1, "SELECT l_returnflag, count(*) FROM tpch.lineitem GROUP BY 1")]


def test_a_table_read_only_in_a_subquery_invalidates(server, admin, lake):
    sql = "select count(*), sum(v) from lake.events where k in (select k from lake.keys)"
    ref = "select count(*), sum(v) from events where k in (select k from keys)"
    assert served_twice(server, admin, sql) == duck(ref, lake)
    write_parquet(f"{lake}/keys/k.parquet", "select i as k from range(0, 40) t(i)")
    time.sleep(REFRESH + 0.2)
    assert answer(admin, sql) == duck(ref, lake) == [(40, 7800)]
    # The same through a CTE.
    cte = "with k as (select k from lake.keys where k < 5) select count(*) from lake.events e join k using (k)"
    assert served_twice(server, admin, cte) == [(5,)]


def test_a_principal_without_a_grant_is_refused_not_served(server, admin, analyst):
    sql = "select count(*) from secret.salaries"
    assert served_twice(server, admin, sql) == [(2,)]
    hits = stats(server)["hits"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute(sql)
    assert stats(server)["hits"] == hits
    # The analyst does not see the entry either; the admin does.
    assert analyst.execute("select count(*) from system.cache where tables = 'secret.salaries'").fetchone() == (0,)
    assert admin.execute("select count(*) from system.cache where tables = 'secret.salaries'").fetchone() == (1,)
    # What the analyst may read, it shares with the admin's entry.
    shared = "select count(*) from tpch.nation"
    assert served_twice(server, admin, shared) == [(25,)]
    hits = stats(server)["hits"]
    assert answer(analyst, shared) == [(25,)]
    assert stats(server)["hits"] == hits + 1


def test_non_deterministic_plans_are_never_cached(server, admin):
    for sql in ["select random() as r, count(*) from tpch.nation",
                "select now(), count(*) from tpch.region",
                "select current_user, count(*) from tpch.region",
                "select count(*) from tpch.nation where n_nationkey < random() * 100"]:
        before = stats(server)
        answer(admin, sql)
        answer(admin, sql)
        after = stats(server)
        assert after["hits"] == before["hits"] and after["stored"] == before["stored"], sql
    a = admin.execute("select random() from tpch.nation limit 1").fetchone()
    b = admin.execute("select random() from tpch.nation limit 1").fetchone()
    assert a != b
    # Live tables are not kept either.
    before = stats(server)["stored"]
    admin.execute("select count(*) from system.workers").fetchone()
    assert stats(server)["stored"] == before


def test_fifty_identical_concurrent_queries_run_once(server, lake):
    # A query nobody has run yet, a second or so of work on a debug worker.
    sql = ("select l_returnflag, l_linestatus, sum(l_quantity * l_extendedprice), count(*) "
           "from tpch.lineitem a where l_discount < 0.0731 group by 1, 2 order by 1, 2")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{server.data_dir}/tpch/lineitem/*.parquet')")
    expected = con.execute(sql.replace("tpch.", "")).fetchall()
    conns = [psycopg.connect(server.dsn(), autocommit=True) for _ in range(50)]
    try:
        before = executions(server)
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda c: c.execute(sql).fetchall(), conns))
        assert executions(server) == before + 1
    finally:
        for c in conns:
            c.close()
    for rows in results:
        assert len(rows) == len(expected)
        for got, want in zip(rows, expected):
            assert got[:2] == want[:2] and got[3] == want[3]
            assert abs(float(got[2]) - float(want[2])) <= 1e-6 * abs(float(want[2]))


def test_bypass_from_pg_flight_and_hs2(server, admin):
    sql = "select count(*) from tpch.supplier"
    assert served_twice(server, admin, sql) == [(100,)]
    before = executions(server)
    hits = stats(server)["hits"]
    # pg: SET use_cached_result = false
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute("SET use_cached_result = false")
        assert c.execute(sql).fetchone() == (100,)
    # Flight SQL: a header
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs={
            fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}",
            f"{fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-sluice-use-cached-result": "false"}) as c:
        with c.cursor() as cur:
            cur.execute(sql)
            assert cur.fetchall() == [(100,)]
    # HS2: the session configuration
    with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                       access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default",
                       session_configuration={"use_cached_result": "false"}) as c:
        with c.cursor() as cur:
            cur.execute(sql)
            assert cur.fetchall()[0][0] == 100
    assert stats(server)["hits"] == hits
    assert executions(server) == before + 3
    # Without the bypass every front-end is served from the entry.
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs={
            fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}) as c:
        with c.cursor() as cur:
            cur.execute(sql)
            assert cur.fetchall() == [(100,)]
    assert stats(server)["hits"] == hits + 1


def test_results_over_the_size_limit_stream_without_being_kept(server, admin):
    sql = "select o_orderkey, o_comment from tpch.orders order by o_orderkey"
    before = stats(server)
    rows = admin.execute(sql).fetchall()
    assert len(rows) == 15000 and rows[0][0] == 1
    after = stats(server)
    assert after["too_large"] == before["too_large"] + 1
    assert after["stored"] == before["stored"]
    assert after["bytes"] <= after["budget"]


def test_catalog_answers_are_cached_per_principal(server, admin, analyst):
    sql = "select count(*) from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')"
    a = served_twice(server, admin, sql)
    b = served_twice(server, analyst, sql)
    assert a != b, "the analyst must not get the admin's listing (it includes secret.salaries)"
    assert answer(analyst, "select count(*) from information_schema.tables where table_schema = 'secret'") == [(0,)]
    # A plan over a data table and the catalog is the asker's too.
    mixed = ("select count(*) from tpch.nation where n_nationkey < (select count(*) from information_schema.tables "
             "where table_schema not in ('pg_catalog', 'information_schema'))")
    a, b = served_twice(server, admin, mixed), served_twice(server, analyst, mixed)
    assert a != b
    # An empty catalog answer, kept and served again over Flight SQL (schema, no rows).
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs={
            fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {ANALYST}"}) as c:
        for _ in range(2):
            with c.cursor() as cur:
                hits = stats(server)["hits"]
                cur.execute("select table_name from information_schema.tables where table_name = 'nope'")
                table = cur.fetch_arrow_table()
                assert table.num_rows == 0 and table.column_names == ["table_name"]
        assert stats(server)["hits"] == hits + 1
    # Metadata calls of the Databricks drivers are catalog answers: the second is a hit.
    with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                       access_token=ANALYST, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default") as c:
        with c.cursor() as cur:
            cur.tables(schema_name="lake")
            first = cur.fetchall()
            hits = stats(server)["hits"]
            cur.tables(schema_name="lake")
            assert cur.fetchall() == first and len(first) == 3
            assert stats(server)["hits"] > hits


def delete_cache(server, token):
    request = urllib.request.Request(f"{server.http_url}/api/2.0/sluice/cache", method="DELETE",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_an_admin_clears_the_cache(server, admin):
    answer(admin, "select count(*) from tpch.region")
    status, body = delete_cache(server, ANALYST)
    assert status == 403 and "admin" in body["message"]
    assert admin.execute("select count(*) from system.cache").fetchone()[0] > 0
    status, body = delete_cache(server, server.token)
    assert status == 200 and body["cleared"] > 0
    assert admin.execute("select count(*) from system.cache").fetchone() == (0,)
    assert stats(server)["entries"] == 0


def test_the_persistent_tier_survives_a_restart_unless_the_data_changed(tmp_path):
    lake = tmp_path / "lake"
    make_lake(lake)
    store = tmp_path / "results"
    path = tmp_path / "sluice.toml"
    path.write_text(config(lake, f'persistent = "{store}"'))
    data = tmp_path / "data"
    sql = "select count(*), sum(v) from lake.events where k >= 10"
    expected = duck("select count(*), sum(v) from events where k >= 10", lake)

    s = start_sluice("--config", str(path), data_dir=data)
    try:
        with psycopg.connect(s.dsn(), autocommit=True) as c:
            assert answer(c, sql) == expected
        deadline = time.time() + 10
        while not list(store.glob("*.arrow")) and time.time() < deadline:
            time.sleep(0.1)
        assert len(list(store.glob("*.arrow"))) == 1
    finally:
        s.stop()

    s = start_sluice("--config", str(path), data_dir=data)
    try:
        with psycopg.connect(s.dsn(), autocommit=True) as c:
            assert answer(c, sql) == expected
            assert stats(s)["restored"] == 1
            assert c.execute("select origin, tables from system.cache").fetchall() == [("restored", "lake.events")]
        assert executions(s) == 0, "a restored answer needs no worker"
    finally:
        s.stop()

    write_parquet(f"{lake}/events/part-0.parquet", "select i as k, 1::bigint as v from range(0, 100) t(i)")
    s = start_sluice("--config", str(path), data_dir=data)
    try:
        with psycopg.connect(s.dsn(), autocommit=True) as c:
            changed = duck("select count(*), sum(v) from events where k >= 10", lake)
            assert changed != expected
            assert answer(c, sql) == changed
            assert stats(s)["restored"] == 0
    finally:
        s.stop()


def test_gateways_sharing_a_persistent_directory_share_entries(tmp_path):
    lake = tmp_path / "lake"
    make_lake(lake)
    path = tmp_path / "sluice.toml"
    path.write_text(config(lake, f'persistent = "{tmp_path / "shared-results"}"'))
    sql = "select k % 3 as g, count(*), sum(v) from lake.events group by 1 order by 1"
    expected = duck("select k % 3 as g, count(*), sum(v) from events group by 1 order by 1", lake)
    a = start_sluice("--config", str(path), data_dir=tmp_path / "a")
    b = start_sluice("--config", str(path), data_dir=tmp_path / "b")
    try:
        with psycopg.connect(a.dsn(), autocommit=True) as c:
            assert answer(c, sql) == expected
        deadline = time.time() + 10
        while not list((tmp_path / "shared-results").glob("*.arrow")) and time.time() < deadline:
            time.sleep(0.1)
        before = executions(b)
        with psycopg.connect(b.dsn(), autocommit=True) as c:
            assert answer(c, sql) == expected
            assert answer(c, sql) == expected
        assert (stats(b)["restored"], stats(b)["hits"]) == (1, 1)
        assert executions(b) == before, "gateway b answered from a's entry without a worker"
    finally:
        a.stop()
        b.stop()

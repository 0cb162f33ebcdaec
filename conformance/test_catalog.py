"""The catalog managed with SQL: CREATE EXTERNAL TABLE / CREATE VIEW / CREATE SCHEMA and
DROP by a principal with the MANAGE privilege, kept in the metadata store across restarts
(embedded) and shared by two gateways on one PostgreSQL store. Answers are checked against
DuckDB over the same files."""
import hashlib

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
import pytest

from conftest import start_sluice, wait_for

ANALYST = "analyst-token-0123456789abcdef0123456789"
MANAGER = "manager-token-0123456789abcdef0123456789"


def config(lake, extra=""):
    return f"""
[[tables]]
name = "conf.small"
location = "{lake}/small.csv"
format = "csv"

[[auth.tokens]]
name = "analyst"
sha256 = "{hashlib.sha256(ANALYST.encode()).hexdigest()}"
roles = ["analyst"]

[[auth.tokens]]
name = "manager"
sha256 = "{hashlib.sha256(MANAGER.encode()).hexdigest()}"
roles = ["manager"]

[[grants]]
roles = ["analyst"]
select = ["lake.*", "conf.*"]

[[grants]]
roles = ["manager"]
select = ["*.*"]
privileges = ["MANAGE"]

[storage]
allowed_locations = ["{lake}"]
{extra}
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("managed")
    db = duckdb.connect()
    (root / "trips").mkdir()
    for part in range(2):
        db.execute(f"""copy (select {part} * 1000 + i as id, (i * 37) % 50 as km,
                             case when i % 2 = 0 then 'bike' else 'car' end as mode
                             from range(1000) t(i))
                       to '{root}/trips/part-{part}.parquet' (format parquet)""")
    db.execute(f"copy (select i as id, 'n' || i as name from range(40) t(i)) to '{root}/small.csv' (header)")
    db.execute(f"copy (select i as id, i % 7 as code from range(70) t(i)) to '{root}/events.csv' (header, delimiter ';')")
    from deltalake import write_deltalake
    import pyarrow as pa
    write_deltalake(str(root / "delta"), pa.table({"id": list(range(30)), "kind": ["a", "b", "c"] * 10}))
    return root


def pg(server, token):
    return psycopg.connect(server.dsn(password=token), autocommit=True)


def rows(conn, sql):
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def duck(lake, sql):
    db = duckdb.connect()
    db.execute(f"create view trips as select * from read_parquet('{lake}/trips/*.parquet')")
    db.execute(f"create view events as select * from read_csv('{lake}/events.csv', header = true, delim = ';')")
    return [tuple(r) for r in db.execute(sql).fetchall()]


def refused(conn, sql, sqlstate):
    with pytest.raises(psycopg.Error) as failed:
        conn.execute(sql)
    assert failed.value.sqlstate == sqlstate, (sql, failed.value.sqlstate, str(failed.value))
    return failed.value.diag.message_primary


TRIPS = "select mode, count(*), sum(km), max(id) from {}trips group by mode order by mode"
LONG = "select mode, count(*) from {} group by mode order by mode"


def create_all(conn, lake):
    conn.execute("create schema lake")
    conn.execute(f"create external table lake.trips stored as parquet location '{lake}/trips/'")
    conn.execute(f"create external table lake.events stored as csv location '{lake}/events.csv' "
                 "options ('has_header' 'true', 'delimiter' ';')")
    conn.execute(f"create external table lake.history stored as delta location '{lake}/delta'")
    conn.execute("create view lake.long_trips as select id, mode from lake.trips where km > 40")


def test_manage_creates_what_survives_a_restart_and_drops_it(lake, tmp_path):
    (tmp_path / "sluice.toml").write_text(config(lake))
    data = tmp_path / "data"
    server = start_sluice("--config", str(tmp_path / "sluice.toml"), data_dir=data)
    try:
        with pg(server, MANAGER) as conn:
            create_all(conn, lake)
            assert rows(conn, TRIPS.format("lake.")) == duck(lake, TRIPS.format(""))
            assert rows(conn, "select code, count(*) from lake.events group by code order by code") == \
                duck(lake, "select code, count(*) from events group by code order by code")
            assert rows(conn, "select kind, count(*), sum(id) from lake.history group by kind order by kind") == \
                [("a", 10, 135), ("b", 10, 145), ("c", 10, 155)]
            assert rows(conn, LONG.format("lake.long_trips")) == \
                duck(lake, LONG.format("(select * from trips where km > 40)"))
            # BI tools see them in the catalog.
            listed = rows(conn, "select table_name from information_schema.tables "
                                "where table_schema = 'lake' order by 1")
            assert listed == [("events",), ("history",), ("long_trips",), ("trips",)]

            # Mistakes: clear errors, nothing changed, the session still works.
            assert "already exists" in refused(
                conn, f"create external table lake.trips stored as parquet location '{lake}/trips/'", "42P07")
            conn.execute(f"create external table if not exists lake.trips stored as parquet location '{lake}/x/'")
            assert "config file" in refused(conn, "drop table conf.small", "25006")
            assert "config file" in refused(
                conn, f"create external table conf.small stored as csv location '{lake}/small.csv'", "25006")
            refused(conn, "drop table lake.nope", "42P01")
            conn.execute("drop table if exists lake.nope")
            conn.execute(f"create external table loose.t stored as parquet location '{lake}/trips/'")
            assert "not empty" in refused(conn, "drop schema loose", "22023")  # never created, not empty
            conn.execute("drop table loose.t")
            assert "DROP VIEW" in refused(conn, "drop table lake.long_trips", "22023")
            assert "not empty" in refused(conn, "drop schema lake", "22023")
            message = refused(conn, f"create external table lake.broken stored as parquet "
                                    f"location '{lake}/no-such-dir/'", "22023")
            assert "lake.broken" in message and "does not exist" in message, message
            refused(conn, "select * from lake.broken", "42P01")  # not kept
            assert "[storage]" in refused(
                conn, "create external table lake.s stored as parquet location 'az://c/p/' "
                      "options ('account_key' 'hunter2')", "0A000")
            refused(conn, "create view lake.bad as select nope from lake.trips", "42703")
            assert rows(conn, "select count(*) from conf.small") == [(40,)]

        # Through Flight SQL, DDL is an update (CommandStatementUpdate).
        kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {MANAGER}"}
        with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as fconn:
            with fconn.cursor() as cur:
                cur.adbc_statement.set_sql_query("create view lake.via_flight as select 1 as one")
                cur.adbc_statement.execute_update()
                with pytest.raises(Exception) as as_query:
                    cur.execute("drop view lake.via_flight")
                assert "update" in str(as_query.value)
        with pg(server, MANAGER) as conn:
            assert rows(conn, "select * from lake.via_flight") == [(1,)]
            conn.execute("drop view lake.via_flight")

        with pg(server, ANALYST) as conn:
            # Reading needs a SELECT grant, changing the catalog the MANAGE privilege.
            assert rows(conn, "select count(*) from lake.trips") == [(2000,)]
            assert "MANAGE" in refused(conn, "drop table lake.trips", "42501")
            refused(conn, f"create external table lake.mine stored as parquet location '{lake}/trips/'", "42501")
    finally:
        server.stop()
    assert "hunter2" not in server.log()

    # Kept in the embedded store: a restarted gateway has them.
    again = start_sluice("--config", str(tmp_path / "sluice.toml"), data_dir=data)
    try:
        with pg(again, MANAGER) as conn:
            assert rows(conn, TRIPS.format("lake.")) == duck(lake, TRIPS.format(""))
            assert rows(conn, LONG.format("lake.long_trips")) == \
                duck(lake, LONG.format("(select * from trips where km > 40)"))
            # A statement prepared before a DROP is planned again after it: an error now.
            prepared = "select count(*) from lake.events"
            for _ in range(2):
                assert conn.execute(prepared, prepare=True).fetchone() == (70,)
            conn.execute("drop view lake.long_trips")
            for table in ["trips", "events", "history"]:
                conn.execute(f"drop table lake.{table}")
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute(prepared, prepare=True)
            conn.execute("drop schema lake")
            refused(conn, "select count(*) from lake.trips", "42P01")
    finally:
        again.stop()


def test_dbt_builds_a_view_model_as_dbt_postgres_does(lake, tmp_path):
    """dbt-postgres (macros postgres__create_view_as, postgres__rename_relation) names every
    relation "database"."schema"."name", creates a model as `<name>__dbt_tmp` and renames it
    with ALTER TABLE … RENAME TO; the renamed view survives a restart."""
    (tmp_path / "sluice.toml").write_text(config(lake))
    data = tmp_path / "data"
    server = start_sluice("--config", str(tmp_path / "sluice.toml"), data_dir=data)
    db = "analytics"
    try:
        with psycopg.connect(server.dsn(password=MANAGER, dbname=db), autocommit=True) as conn:
            conn.execute("create schema lake")
            conn.execute(f'create external table "{db}"."lake"."trips" stored as parquet '
                         f"location '{lake}/trips/'")
            conn.execute(f'create view "{db}"."lake"."long_trips__dbt_tmp" as (\n'
                         f'  select id, mode from "{db}"."lake"."trips" where km > 40\n)')
            cur = conn.execute(f'alter table "{db}"."lake"."long_trips__dbt_tmp" rename to "long_trips"')
            assert cur.statusmessage == "ALTER TABLE"
            want = duck(lake, LONG.format("(select * from trips where km > 40)"))
            assert rows(conn, LONG.format(f'"{db}"."lake"."long_trips"')) == want
            refused(conn, "select count(*) from lake.long_trips__dbt_tmp", "42P01")
            # A table renames too; the view reads it by the name it was bound to, as a
            # PostgreSQL view would not: renaming it back restores the view.
            conn.execute("alter table lake.trips rename to trips_v2")
            assert rows(conn, "select count(*) from lake.trips_v2") == [(2000,)]
            conn.execute("alter table lake.trips_v2 rename to trips")

            # Mistakes: clear errors, nothing changed.
            assert "cross-database" in refused(
                conn, 'alter table "elsewhere"."lake"."long_trips" rename to "x"', "0A000")
            assert "cross-database" in refused(
                conn, 'create view "elsewhere"."lake"."x" as select 1', "0A000")
            assert "already exists" in refused(
                conn, "alter table lake.long_trips rename to trips", "42P07")
            refused(conn, "alter table lake.nope rename to nope2", "42P01")
            conn.execute("alter table if exists lake.nope rename to nope2")
            assert "config file" in refused(conn, "alter table conf.small rename to big", "25006")
            assert "RENAME TO" in refused(conn, "alter table lake.trips add column x int", "0A000")
            assert "without a schema" in refused(
                conn, "alter table lake.long_trips rename to other.long_trips", "22023")
            assert rows(conn, LONG.format("lake.long_trips")) == want
        with pg(server, ANALYST) as conn:
            assert "MANAGE" in refused(conn, "alter table lake.long_trips rename to mine", "42501")
    finally:
        server.stop()
    again = start_sluice("--config", str(tmp_path / "sluice.toml"), data_dir=data)
    try:
        with pg(again, MANAGER) as conn:
            assert rows(conn, LONG.format("lake.long_trips")) == want
            refused(conn, "select count(*) from lake.long_trips__dbt_tmp", "42P01")
    finally:
        again.stop()


def test_two_gateways_on_postgresql_share_the_catalog(lake, tmp_path):
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute("drop table if exists sluice_catalog")
    (tmp_path / "sluice.toml").write_text(
        config(lake, '[metadata]\nurl = "postgres://postgres@127.0.0.1:5432/test"\n'))
    first = start_sluice("--config", str(tmp_path / "sluice.toml"), data_dir=tmp_path / "one")
    second = start_sluice("--config", str(tmp_path / "sluice.toml"), data_dir=tmp_path / "two")
    try:
        with pg(first, MANAGER) as one, pg(second, ANALYST) as two:
            one.execute(f"create external table lake.shared stored as parquet location '{lake}/trips/'")

            def seen():
                try:
                    return rows(two, "select count(*) from lake.shared")
                except psycopg.Error:
                    return None
            assert wait_for(seen, 10, "the other gateway's table") == [(2000,)]
            with pg(second, MANAGER) as manager:
                manager.execute("drop table lake.shared")

            def gone():
                try:
                    one.execute("select count(*) from lake.shared")
                    return False
                except psycopg.errors.UndefinedTable:
                    return True
            assert wait_for(gone, 10, "the drop on the other gateway")
    finally:
        first.stop()
        second.stop()

"""Databricks SQL on the Databricks paths (HS2, the Statement Execution API): SHOW, DESCRIBE,
USE, Spark's literals and parameter markers, through databricks-sql-connector and the
SQLAlchemy dialect Superset and Airflow use for Databricks (databricks-sqlalchemy), against a
running `sluice serve`. Result columns are the ones Databricks documents for each statement
(docs.databricks.com, SQL language reference: SHOW SCHEMAS, SHOW TABLES, SHOW VIEWS,
SHOW COLUMNS, DESCRIBE TABLE)."""
import json
import urllib.request

import pytest
import sqlalchemy
from databricks import sql as dbsql

from test_hs2 import OTHER_TOKEN, configured, connect, duck  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def cur(sluice):
    with connect(sluice) as c, c.cursor() as cur:
        yield cur


def rows(cur, sql, *args):
    cur.execute(sql, *args)
    if cur.description is None:  # a command: no result set
        return [], []
    return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]


def test_show_schemas_tables_views_and_catalogs(cur):
    names, schemas = rows(cur, "SHOW SCHEMAS")
    assert names == ["databaseName"]
    assert ("tpch",) in schemas and ("information_schema",) in schemas
    assert ("pg_catalog",) not in schemas
    assert rows(cur, "SHOW DATABASES LIKE 'tp*'") == (["databaseName"], [("tpch",)])
    assert rows(cur, "show schemas in sluice like 'TPCH|nothing'")[1] == [("tpch",)]
    names, tables = rows(cur, "SHOW TABLES FROM `sluice`.`tpch`")
    assert names == ["database", "tableName", "isTemporary"]
    assert [t[1] for t in tables] == sorted(
        ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"])
    assert all(t[0] == "tpch" and t[2] is False for t in tables)
    assert rows(cur, "SHOW TABLES IN tpch LIKE 'n*|re*'")[1] == [
        ("tpch", "nation", False), ("tpch", "region", False)]
    assert rows(cur, "SHOW VIEWS FROM `sluice`.`tpch`") == (
        ["namespace", "viewName", "isTemporary", "isMaterialized"], [])
    assert rows(cur, "SHOW CATALOGS") == (["catalog"], [("sluice",)])
    assert rows(cur, "SHOW CATALOGS LIKE 'hive*'") == (["catalog"], [])


def test_describe_table_and_columns(cur):
    names, described = rows(cur, "DESCRIBE TABLE `sluice`.`tpch`.`nation`")
    assert names == ["col_name", "data_type", "comment"]
    assert described == [("n_nationkey", "bigint", None), ("n_name", "string", None),
                         ("n_regionkey", "bigint", None), ("n_comment", "string", None)]
    assert rows(cur, "DESC tpch.orders o_totalprice") == (
        ["info_name", "info_value"],
        [("col_name", "o_totalprice"), ("data_type", "decimal(15,2)"), ("comment", "NULL")])
    assert rows(cur, "SHOW COLUMNS IN nation IN tpch") == (
        ["col_name"], [("n_nationkey",), ("n_name",), ("n_regionkey",), ("n_comment",)])
    _, extended = rows(cur, "DESCRIBE TABLE EXTENDED `sluice`.`tpch`.`nation`")
    detail = {r[0]: r[1] for r in extended[extended.index(("# Detailed Table Information", "", "")):]}
    assert (detail["Catalog"], detail["Database"], detail["Table"], detail["Type"]) == (
        "sluice", "tpch", "nation", "EXTERNAL")
    assert ("nation_pkey", "PRIMARY KEY (`n_nationkey`)", "") in extended
    assert any(r[1] == "FOREIGN KEY (`n_regionkey`) REFERENCES `sluice`.`tpch`.`region` (`r_regionkey`)"
               for r in extended)
    with pytest.raises(dbsql.exc.DatabaseError) as missing:
        cur.execute("DESCRIBE TABLE EXTENDED `sluice`.`tpch`.`no_such_table`")
    assert "TABLE_OR_VIEW_NOT_FOUND" in str(missing.value)
    with pytest.raises(dbsql.exc.DatabaseError) as column:
        cur.execute("DESCRIBE tpch.nation no_such_column")
    assert "UNRESOLVED_COLUMN" in str(column.value)


def test_use_current_catalog_and_spark_literals(sluice):
    with connect(sluice) as c, c.cursor() as cur:
        assert rows(cur, "USE `tpch`")[1] == []
        assert rows(cur, "SELECT count(*) FROM nation")[1] == [(25,)]
        assert rows(cur, "SELECT current_schema()")[1] == [("tpch",)]
        cur.execute("SELECT current_catalog(), current_user() IS NOT NULL")
        assert cur.fetchall()[0][1] is True
        # Backslash escapes, double-quoted strings, backtick identifiers.
        assert rows(cur, r"SELECT 'O\'BRIEN', 'a\\b', " + '"it\'s"')[1] == [("O'BRIEN", "a\\b", "it's")]
        assert rows(cur, "SELECT `n_name` FROM `tpch`.`nation` WHERE `n_nationkey` = 3")[1] == [("CANADA",)]
        # Named markers, plain and with a quoted name (the SQLAlchemy dialect's form).
        cur.execute("SELECT n_name FROM nation WHERE n_nationkey = :`k` OR n_nationkey = :j ORDER BY 1",
                    {"k": 3, "j": 4})
        assert [r[0] for r in cur.fetchall()] == ["CANADA", "EGYPT"]
        assert rows(cur, "USE SCHEMA sluice.information_schema")[1] == []
        assert rows(cur, "SELECT current_schema()")[1] == [("information_schema",)]
        with pytest.raises(dbsql.exc.DatabaseError) as catalog:
            cur.execute("USE CATALOG hive_elsewhere")
        assert "not found" in str(catalog.value)
        # Databricks' other names of the one catalog: the legacy Hive metastore, Spark's
        # session catalog, a workspace's default Unity Catalog.
        assert rows(cur, "USE CATALOG hive_metastore")[1] == []
        assert rows(cur, "SELECT count(*) FROM main.tpch.region")[1] == [(5,)]
        assert rows(cur, "SELECT count(*) FROM `spark_catalog`.`tpch`.`nation`")[1] == [(25,)]
        assert ("tpch",) in rows(cur, "SHOW SCHEMAS IN hive_metastore")[1]
        assert rows(cur, "DESCRIBE TABLE main.tpch.region r_name")[1][0] == ("col_name", "r_name")
        # SET answers Spark's (key, value) rows; what sluice cannot honour is refused.
        assert rows(cur, "SET ANSI_MODE = true") == (["key", "value"], [("ANSI_MODE", "true")])
        assert rows(cur, "SET spark.sql.session.timeZone")[1] == [("spark.sql.session.timeZone", "UTC")]
        for refused in ["SET TIME ZONE 'America/Los_Angeles'", "SET spark.sql.ansi.enabled = false",
                        "SET no_such_conf = 1"]:
            with pytest.raises(dbsql.exc.DatabaseError):
                cur.execute(refused)
        with pytest.raises(dbsql.exc.DatabaseError) as schema:
            cur.execute("USE no_such_schema")
        assert "SCHEMA_NOT_FOUND" in str(schema.value)
        # A Spark function and a DataFusion builtin of the same name: on a data query (a
        # worker answers it) the worker runs the one the gateway planned — `concat` of
        # arrays is an array (DataFusion's would print '[1][2]').
        _, answer = rows(cur, "SELECT concat(array(o_orderkey), array(2)) AS b "
                              "FROM tpch.orders WHERE o_orderkey = 1")
        assert [list(r[0]) for r in answer] == [[1, 2]]
        # Forms not built yet are refused by name; the connection goes on.
        with pytest.raises(dbsql.exc.DatabaseError) as unsupported:
            cur.execute("DESCRIBE FUNCTION upper")
        assert "DESCRIBE FUNCTION is not supported" in str(unsupported.value)
        # SHOW CREATE TABLE in Spark's layout: columns, keys, format.
        assert rows(cur, "SHOW CREATE TABLE hive_metastore.tpch.nation") == (["createtab_stmt"], [(
            "CREATE TABLE `sluice`.`tpch`.`nation` (\n  `n_nationkey` BIGINT NOT NULL,\n"
            "  `n_name` STRING NOT NULL,\n  `n_regionkey` BIGINT NOT NULL,\n  `n_comment` STRING NOT NULL,\n"
            "  CONSTRAINT `nation_pkey` PRIMARY KEY (`n_nationkey`),\n  CONSTRAINT `nation_n_regionkey_fkey` "
            "FOREIGN KEY (`n_regionkey`) REFERENCES `sluice`.`tpch`.`region` (`r_regionkey`))\nUSING parquet\n",)])
        # DESCRIBE QUERY, DESCRIBE SCHEMA / CATALOG, SHOW FUNCTIONS, SHOW TBLPROPERTIES.
        assert rows(cur, "DESCRIBE QUERY SELECT n_name, n_nationkey + 1 AS k FROM tpch.nation") == (
            ["col_name", "data_type", "comment"], [("n_name", "string", None), ("k", "bigint", None)])
        assert rows(cur, "DESC SELECT 1 AS one")[1] == [("one", "int", None)]
        assert rows(cur, "DESCRIBE SCHEMA tpch")[1][:2] == [("Catalog Name", "sluice"), ("Namespace Name", "tpch")]
        with pytest.raises(dbsql.exc.DatabaseError) as schema:
            cur.execute("DESCRIBE DATABASE EXTENDED no_such_schema")
        assert "SCHEMA_NOT_FOUND" in str(schema.value)
        assert rows(cur, "DESCRIBE CATALOG hive_metastore")[1][0] == ("Catalog Name", "sluice")
        names, functions = rows(cur, "SHOW FUNCTIONS LIKE 'date_*|months_between'")
        assert names == ["function"]
        assert {"date_add", "date_format", "date_trunc", "months_between"} <= {f[0] for f in functions}
        assert all(f[0].startswith("date_") or f[0] == "months_between" for f in functions)
        assert rows(cur, "SHOW TBLPROPERTIES tpch.nation") == (["key", "value"], [])
        assert rows(cur, "SELECT 1")[1] == [(1,)]


def test_information_schema_show_table_extended_and_output_names(cur):
    """Databricks' information_schema (`system`.`information_schema`, what dbt-databricks and
    BI tools read) and SHOW TABLE EXTENDED in Databricks' documented shapes; unaliased output
    columns named as Spark names them (each name below as PySpark 4.3 printed it)."""
    names, tables = rows(cur, "SELECT table_catalog, table_schema, table_name, table_type, table_owner, "
                              "data_source_format FROM `system`.`information_schema`.`tables` "
                              "WHERE table_schema = 'tpch' ORDER BY table_name")
    assert [t[2] for t in tables] == ["customer", "lineitem", "nation", "orders", "part", "partsupp",
                                      "region", "supplier"]
    assert tables[2] == ("sluice", "tpch", "nation", "EXTERNAL", "sluice", None)
    names, columns = rows(cur, "SELECT column_name, ordinal_position, full_data_type, data_type, is_nullable "
                               "FROM main.information_schema.columns "
                               "WHERE table_schema = 'tpch' AND table_name = 'orders' ORDER BY ordinal_position")
    assert columns[:5] == [("o_orderkey", 0, "bigint", "LONG", "NO"), ("o_custkey", 1, "bigint", "LONG", "NO"),
                           ("o_orderstatus", 2, "string", "STRING", "NO"),
                           ("o_totalprice", 3, "decimal(15,2)", "DECIMAL", "NO"),
                           ("o_orderdate", 4, "date", "DATE", "NO")]
    # The informational keys, as the Databricks JDBC driver and BI tools read them.
    assert rows(cur, "SELECT k.constraint_name, c.constraint_type, k.column_name, k.ordinal_position "
                     "FROM system.information_schema.key_column_usage k "
                     "JOIN system.information_schema.table_constraints c USING (constraint_name) "
                     "WHERE k.table_schema = 'tpch' AND k.table_name = 'nation' ORDER BY 1")[1] == [
        ("nation_n_regionkey_fkey", "FOREIGN KEY", "n_regionkey", 0),
        ("nation_pkey", "PRIMARY KEY", "n_nationkey", 0)]
    schemas = [r[0] for r in rows(cur, "SELECT schema_name FROM system.information_schema.schemata")[1]]
    assert "tpch" in schemas and "pg_catalog" not in schemas
    # Every table and column the session may read, with the one catalog's name.
    assert rows(cur, "SELECT count(*) FROM system.information_schema.columns "
                     "WHERE table_catalog <> 'sluice' OR table_schema LIKE 'pg\\_%'")[1] == [(0,)]

    names, extended = rows(cur, "SHOW TABLE EXTENDED IN tpch LIKE 'nation|reg*'")
    assert names == ["database", "tableName", "isTemporary", "information"]
    assert [r[:3] for r in extended] == [("tpch", "nation", False), ("tpch", "region", False)]
    assert extended[1][3] == ("Catalog: sluice\nDatabase: tpch\nTable: region\nOwner: sluice\nType: EXTERNAL\n"
                              "Schema: root\n |-- r_regionkey: long (nullable = false)\n"
                              " |-- r_name: string (nullable = false)\n |-- r_comment: string (nullable = false)\n")
    with pytest.raises(dbsql.exc.DatabaseError):
        cur.execute("SHOW TABLE EXTENDED IN tpch")  # Databricks requires the pattern

    cur.execute("SELECT 1, 'abc', n_nationkey + 1, upper(n_name), count(*), CAST(n_regionkey AS STRING), "
                "n_nationkey <> 2, 1.50 FROM tpch.nation GROUP BY n_nationkey, n_name, n_regionkey LIMIT 1")
    assert [d[0] for d in cur.description] == [
        "1", "abc", "(n_nationkey + 1)", "upper(n_name)", "count(1)", "n_regionkey",
        "(NOT (n_nationkey = 2))", "1.50"]
    # Columns Spark would name alike get distinct names (DataFusion needs them).
    cur.execute("SELECT 1, 1, n_name, n_name FROM tpch.nation LIMIT 1")
    assert [d[0] for d in cur.description] == ["1", "1_2", "n_name", "n_name_2"]


def test_views_are_databricks_sql_for_every_reader(sluice):
    """A view created in Databricks SQL keeps Spark's meaning: read through HS2 and through
    the pg front-end alike (Spark's date_format pattern, a backslash in a string)."""
    import psycopg
    with connect(sluice) as c, c.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS hive_metastore.spark_views")
        cur.execute("CREATE OR REPLACE VIEW `main`.`spark_views`.`years` AS "
                    r"SELECT o_orderkey, date_format(o_orderdate, 'yyyy/MM') AS ym, 'a\\b' AS s "
                    "FROM tpch.orders WHERE o_orderkey = 1")
        spark = rows(cur, "SELECT ym, s FROM spark_views.years")[1]
        created = rows(cur, "SHOW CREATE TABLE spark_views.years")[1][0][0]
        assert created.startswith("CREATE VIEW `sluice`.`spark_views`.`years` (\n  `o_orderkey`,\n  `ym`,\n"
                                  "  `s`)\nAS SELECT o_orderkey, date_format(o_orderdate, 'yyyy/MM')"), created
    with psycopg.connect(sluice.dsn(), autocommit=True) as pg:
        from_pg = pg.execute("SELECT ym, s FROM spark_views.years").fetchall()
        pg.execute("DROP VIEW spark_views.years")
        pg.execute("DROP SCHEMA spark_views")
    want = duck(sluice, "SELECT strftime(o_orderdate, '%Y/%m'), 'a\\b' FROM orders WHERE o_orderkey = 1")
    assert spark == from_pg == want and want[0][1] == "a\\b"


def test_statement_execution_api_speaks_databricks_sql(sluice):
    body = json.dumps({"statement": "DESCRIBE TABLE `sluice`.`tpch`.`region`",
                       "warehouse_id": "default", "wait_timeout": "30s"}).encode()
    request = urllib.request.Request(f"http://{sluice.http}/api/2.0/sql/statements", data=body,
                                     headers={"Authorization": f"Bearer {sluice.token}",
                                              "Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=60))
    assert answer["status"]["state"] == "SUCCEEDED", answer
    assert [c["name"] for c in answer["manifest"]["schema"]["columns"]] == [
        "col_name", "data_type", "comment"]
    assert [r[:2] for r in answer["result"]["data_array"]] == [
        ["r_regionkey", "bigint"], ["r_name", "string"], ["r_comment", "string"]]


def engine(server, token=None):
    host, port = server.http.split(":")
    return sqlalchemy.create_engine(
        f"databricks://token:{token or server.token}@{host}:{port}"
        "?http_path=/sql/1.0/warehouses/default&catalog=sluice&schema=tpch",
        connect_args={"_connection_uri": f"http://{server.http}/sql/1.0/warehouses/default",
                      "enable_telemetry": False})


@pytest.fixture
def sqlalchemy_engine(sluice):
    e = engine(sluice)
    yield e
    # Pooled connections hold the connector's threads: close them, or the run never ends.
    e.dispose()


def test_sqlalchemy_inspector_and_bound_parameters(sqlalchemy_engine):
    e = sqlalchemy_engine
    inspector = sqlalchemy.inspect(e)
    assert "tpch" in inspector.get_schema_names()
    assert sorted(inspector.get_table_names(schema="tpch")) == sorted(
        ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"])
    assert inspector.get_view_names(schema="tpch") == []
    columns = inspector.get_columns("nation", schema="tpch")
    assert [c["name"] for c in columns] == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
    assert inspector.get_pk_constraint("nation", schema="tpch") == {
        "constrained_columns": ["n_nationkey"], "name": "nation_pkey"}
    [fk] = inspector.get_foreign_keys("nation", schema="tpch")
    assert (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) == (
        ["n_regionkey"], "region", ["r_regionkey"])
    assert inspector.has_table("nation", schema="tpch")
    assert not inspector.has_table("no_such_table", schema="tpch")
    assert inspector.get_table_comment("nation", schema="tpch") == {"text": None}
    nation = sqlalchemy.Table("nation", sqlalchemy.MetaData(), autoload_with=e, schema="tpch")
    assert [c.name for c in nation.columns] == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
    with e.connect() as conn:
        got = conn.execute(sqlalchemy.select(nation.c.n_name).where(nation.c.n_nationkey == 3)).all()
        assert got == [("CANADA",)]
        got = conn.execute(sqlalchemy.text("SELECT n_name FROM tpch.nation WHERE n_regionkey = :r "
                                           "ORDER BY n_name LIMIT 2"), {"r": 1}).all()
        assert got == [("ARGENTINA",), ("BRAZIL",)]


def test_show_and_describe_follow_the_grants(configured):
    # test_hs2's server, where a second principal may read tpch.nation only.
    with connect(configured, token=OTHER_TOKEN) as c, c.cursor() as cur:
        assert rows(cur, "SHOW TABLES IN tpch")[1] == [("tpch", "nation", False)]
        _, extended = rows(cur, "DESCRIBE TABLE EXTENDED tpch.nation")
        # The key to region, a table this principal may not read, is not shown.
        assert ("nation_pkey", "PRIMARY KEY (`n_nationkey`)", "") in extended
        assert not any("FOREIGN KEY" in r[1] for r in extended)
        with pytest.raises(dbsql.exc.DatabaseError) as denied:
            cur.execute("DESCRIBE TABLE tpch.orders")
        assert "permission denied" in str(denied.value)
        with pytest.raises(dbsql.exc.DatabaseError):
            cur.execute("SHOW COLUMNS IN tpch.region")


def test_spark_function_errors_are_the_users(sluice):
    """A bad argument to a Spark function is the user's mistake, with its SQLSTATE from the
    one error table (never XX000); element_at reads arrays and maps."""
    import test_hs2
    ttypes = test_hs2.ttypes
    client = test_hs2.raw_client(sluice)
    session = test_hs2.open_session(client).sessionHandle
    for sql, state in [
            ("SELECT timestampadd(FORTNIGHT, 1, TIMESTAMP'2024-01-01 00:00:00')", "22023"),
            ("SELECT timestampadd(YEAR, n_nationkey * 100000000, TIMESTAMP'2024-01-01 00:00:00') "
             "FROM tpch.nation", "22003"),
            ("SELECT regexp_extract(n_name, '(a)\\\\1', 1) FROM tpch.nation", "22023"),
            ("SELECT regexp_extract(n_name, '(a)', 3) FROM tpch.nation", "22023"),
            ("SELECT assert_true(n_nationkey > 100) FROM tpch.nation", "22023"),
            ("SELECT date_format(DATE'2024-01-01', 'QQQ')", "0A000"),
            ("SELECT no_such_function(1)", "42883")]:
        resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=session, statement=sql,
                                                                   runAsync=True))
        status = resp.status
        if status.statusCode != ttypes.TStatusCode.ERROR_STATUS:
            op = resp.operationHandle
            status = client.GetOperationStatus(ttypes.TGetOperationStatusReq(operationHandle=op))
            while status.operationState in (ttypes.TOperationState.PENDING_STATE,
                                            ttypes.TOperationState.RUNNING_STATE,
                                            ttypes.TOperationState.INITIALIZED_STATE):
                status = client.GetOperationStatus(ttypes.TGetOperationStatusReq(operationHandle=op))
            assert status.operationState == ttypes.TOperationState.ERROR_STATE, (sql, status)
        assert status.sqlState == state, (sql, status)
    client.CloseSession(ttypes.TCloseSessionReq(sessionHandle=session))
    with connect(sluice) as c, c.cursor() as cur:
        assert rows(cur, "SELECT element_at(array(10, 20, 30), 2) AS a, element_at(array(10, 20, 30), -1) AS b, "
                         "element_at(map('k', 'v'), 'k') AS c")[1] == [(20, 30, "v")]


def test_the_catalog_name_is_configurable(tmp_path):
    """`catalog = "lakehouse"`: the one name every front-end shows and accepts (GetCatalogs
    through HS2 and Flight SQL, SHOW CATALOGS, current_catalog(), three-part names,
    information_schema), Databricks' aliases still meaning it; a bad name refuses to start."""
    import subprocess

    import adbc_driver_flightsql.dbapi as flight_sql
    import psycopg
    from adbc_driver_flightsql import DatabaseOptions

    from conftest import sluice_bin, start_sluice
    config = tmp_path / "sluice.toml"
    config.write_text('catalog = "lakehouse"\n')
    server = start_sluice("--config", str(config))
    try:
        with connect(server) as c, c.cursor() as cur:
            assert rows(cur, "SHOW CATALOGS")[1] == [("lakehouse",)]
            assert rows(cur, "SELECT current_catalog()")[1] == [("lakehouse",)]
            assert rows(cur, "SELECT count(*) FROM lakehouse.tpch.region")[1] == [(5,)]
            assert rows(cur, "SELECT count(*) FROM hive_metastore.tpch.region")[1] == [(5,)]
            assert rows(cur, "SELECT DISTINCT table_catalog FROM system.information_schema.tables")[1] == \
                [("lakehouse",)]
            with pytest.raises(dbsql.exc.DatabaseError):
                cur.execute("SELECT count(*) FROM sluice.tpch.region")
            cur.catalogs()
            assert [r[0] for r in cur.fetchall()] == ["lakehouse"]
        with psycopg.connect(server.dsn(), autocommit=True) as pg:
            assert pg.execute("SELECT count(*) FROM lakehouse.tpch.region").fetchone() == (5,)
        kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
        with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as fc:
            catalogs = fc.adbc_get_objects(depth="catalogs").read_all().to_pylist()
            assert [c["catalog_name"] for c in catalogs] == ["lakehouse"]
    finally:
        server.stop()
    config.write_text('catalog = "Lake-House"\n')
    out = subprocess.run([sluice_bin(), "serve", "--config", str(config), "--data-dir", str(tmp_path),
                          "--no-demo", "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Lake-House" in out.stderr


def test_describe_history_of_a_delta_table(tmp_path):
    """DESCRIBE HISTORY lists a Delta table's commits, newest first, as the deltalake package
    (delta-rs, the reference) reads the same log; LIMIT; a table of another format is refused
    by name, a table the principal may not read is not described."""
    import datetime

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    events = tmp_path / "events"
    write_deltalake(str(events), pa.table({"id": [1, 2], "kind": ["a", "b"]}))
    write_deltalake(str(events), pa.table({"id": [3], "kind": ["c"]}), mode="append")
    write_deltalake(str(events), pa.table({"id": [4], "kind": ["d"]}), mode="overwrite")
    config = tmp_path / "sluice.toml"
    config.write_text(f'[[tables]]\nname = "lake.events"\nlocation = "{events}"\nformat = "delta"\n\n'
                      f'[[auth.tokens]]\nname = "analyst"\nsha256 = "{__import__("hashlib").sha256(OTHER_TOKEN.encode()).hexdigest()}"\n'
                      'roles = ["analyst"]\n\n[[grants]]\nroles = ["analyst"]\nselect = ["tpch.nation"]\n')
    from conftest import start_sluice
    server = start_sluice("--config", str(config))
    try:
        with connect(server) as c, c.cursor() as cur:
            names, history = rows(cur, "DESCRIBE HISTORY main.lake.events")
            assert names == ["version", "timestamp", "userId", "userName", "operation", "operationParameters",
                             "job", "notebook", "clusterId", "readVersion", "isolationLevel", "isBlindAppend",
                             "operationMetrics", "userMetadata", "engineInfo"]
            want = DeltaTable(str(events)).history()
            assert [h[0] for h in history] == [w["version"] for w in want] == [2, 1, 0]
            for got, w in zip(history, want):
                assert got[1] == datetime.datetime.fromtimestamp(w["timestamp"] / 1000, datetime.timezone.utc), \
                    (got, w)
                assert got[4] == w["operation"]
                assert dict(got[5] or []) == {k: v if isinstance(v, str) else json.dumps(v)
                                              for k, v in w.get("operationParameters", {}).items()}
                assert got[14] == w.get("engineInfo")
            assert rows(cur, "DESCRIBE HISTORY lake.events LIMIT 1")[1][0][0] == 2
            with pytest.raises(dbsql.exc.DatabaseError) as not_delta:
                cur.execute("DESCRIBE HISTORY tpch.nation")
            assert "DELTA_ONLY_OPERATION" in str(not_delta.value)
        with connect(server, token=OTHER_TOKEN) as c, c.cursor() as cur:
            with pytest.raises(dbsql.exc.DatabaseError) as denied:
                cur.execute("DESCRIBE HISTORY lake.events")
            assert "permission denied" in str(denied.value)
    finally:
        server.stop()

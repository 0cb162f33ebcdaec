"""Informational keys, as Databricks has them: declared NOT ENFORCED in CREATE EXTERNAL TABLE
and in the config's [[tables]] (the demo declares TPC-H's), never checked against the data,
and shown to every catalog and driver call that asks for keys — PostgreSQL's catalogs and
information_schema (compared with a real PostgreSQL holding the same keys), psqlODBC's
SQLPrimaryKeys / SQLForeignKeys, the ADBC PostgreSQL driver's get_objects, Flight SQL's key
commands and HS2's GetPrimaryKeys / GetCrossReference — filtered by the grants."""
import hashlib
import subprocess

import adbc_driver_postgresql.dbapi as adbc_pg
import psycopg
import pyarrow.flight as flight
import pyodbc
import pytest
from databricks.sql.thrift_api.TCLIService import TCLIService, ttypes
from thrift.protocol import TBinaryProtocol
from thrift.transport import THttpClient

from conftest import sluice_bin, start_sluice
from flightraw import field

ANALYST = "keys-analyst-token-0123456789abcdef01234"
MANAGER = "keys-manager-token-0123456789abcdef01234"

# TPC-H's keys: (table, constraint, columns), and foreign keys with what they reference.
PRIMARY = {
    "nation": ("nation_pkey", ["n_nationkey"]),
    "lineitem": ("lineitem_pkey", ["l_orderkey", "l_linenumber"]),
    "partsupp": ("partsupp_pkey", ["ps_partkey", "ps_suppkey"]),
}
LINEITEM_FOREIGN = [
    # (fk name, fk column, pk table, pk column, position)
    ("lineitem_l_orderkey_fkey", "l_orderkey", "orders", "o_orderkey", 1),
    ("lineitem_l_partkey_l_suppkey_fkey", "l_partkey", "partsupp", "ps_partkey", 1),
    ("lineitem_l_partkey_l_suppkey_fkey", "l_suppkey", "partsupp", "ps_suppkey", 2),
]


def rows(conn, sql, params=None):
    return sorted(tuple(r) for r in conn.execute(sql, params).fetchall())


KEY_VIEWS = [
    "SELECT constraint_name, table_name, constraint_type, is_deferrable, initially_deferred, "
    "enforced FROM information_schema.table_constraints WHERE table_schema = 'tpch' "
    "AND constraint_type <> 'CHECK'",
    "SELECT table_name, constraint_type, count(*) FROM information_schema.table_constraints "
    "WHERE table_schema = 'tpch' GROUP BY 1, 2",
    "SELECT constraint_name, table_name, column_name, ordinal_position, "
    "position_in_unique_constraint FROM information_schema.key_column_usage "
    "WHERE table_schema = 'tpch'",
    "SELECT constraint_name, unique_constraint_schema, unique_constraint_name, match_option, "
    "update_rule, delete_rule FROM information_schema.referential_constraints "
    "WHERE constraint_schema = 'tpch'",
    "SELECT table_name, column_name, constraint_name FROM information_schema.constraint_column_usage "
    "WHERE table_schema = 'tpch'",
    # pg_constraint / pg_index / the index relations, as tools join them.
    "SELECT con.conname, con.contype, c.relname, f.relname, i.relname, con.conkey, con.confkey, "
    "con.confupdtype, con.confdeltype, con.confmatchtype, con.convalidated, con.condeferrable, "
    "pg_get_constraintdef(con.oid), pg_get_constraintdef(con.oid, true) "
    "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
    "LEFT JOIN pg_catalog.pg_class f ON f.oid = con.confrelid "
    "JOIN pg_catalog.pg_class i ON i.oid = con.conindid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace WHERE n.nspname = 'tpch'",
    "SELECT c.relname, i.relname, x.indnatts, x.indisunique, x.indisprimary, x.indisvalid, "
    "x.indkey, x.indclass, x.indoption, x.indkey[0], pg_get_indexdef(x.indexrelid), "
    "pg_get_indexdef(x.indexrelid, 1, true) "
    "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indrelid "
    "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tpch'",
    # (relhastriggers differs: PostgreSQL enforces foreign keys with triggers, sluice's keys
    # are informational.)
    "SELECT c.relname, c.relkind, c.relam, c.relnatts, c.relhasindex "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'tpch'",
    "SELECT a.attname, a.attnum, a.atttypid, a.attnotnull FROM pg_catalog.pg_attribute a "
    "WHERE a.attrelid = 'tpch.lineitem_pkey'::regclass",
]


@pytest.mark.parametrize("sql", KEY_VIEWS)
def test_key_catalogs_match_postgresql(sluice, reference, sql):
    """The keys in information_schema and pg_catalog, compared with PostgreSQL holding the
    same tables and keys."""
    with psycopg.connect(sluice.dsn(), autocommit=True) as ours, \
            psycopg.connect(reference, autocommit=True) as theirs:
        got, want = rows(ours, sql), rows(theirs, sql)
    assert got, sql
    assert got == want


def test_psqlodbc_primary_and_foreign_keys(sluice, reference):
    """SQLPrimaryKeys and SQLForeignKeys through psqlODBC (Excel's and Power BI's ODBC
    path), the same on sluice and on PostgreSQL."""
    def keys(conn_str):
        conn = pyodbc.connect(conn_str, timeout=30)
        try:
            cur = conn.cursor()
            pk = [tuple(r) for r in cur.primaryKeys(table="lineitem", schema="tpch")]
            imported = [tuple(r) for r in cur.foreignKeys(foreignTable="lineitem", foreignSchema="tpch")]
            exported = [tuple(r) for r in cur.foreignKeys(table="orders", schema="tpch")]
            return pk, imported, exported
        finally:
            conn.close()

    common = "DRIVER={PostgreSQL Unicode};SSLmode=disable;"
    ours = keys(common + f"SERVER={sluice.pg_host};PORT={sluice.pg_port};DATABASE=sluice_conformance;"
                f"UID=tester;PWD={sluice.token}")
    theirs = keys(common + "SERVER=127.0.0.1;PORT=5432;DATABASE=sluice_conformance;UID=postgres")
    pk, imported, exported = ours
    assert [(r[3], r[4]) for r in pk] == [("l_orderkey", 1), ("l_linenumber", 2)]
    assert {(r[2], r[3], r[7]) for r in imported} == {
        ("orders", "o_orderkey", "l_orderkey"), ("partsupp", "ps_partkey", "l_partkey"),
        ("partsupp", "ps_suppkey", "l_suppkey")}
    assert [(r[6], r[7]) for r in exported] == [("lineitem", "l_orderkey")]
    assert ours == theirs


def test_adbc_postgresql_get_objects_constraints(sluice, reference):
    """The ADBC PostgreSQL driver's get_objects lists each table's constraints (primary and
    foreign keys, with the columns they use), the same on sluice and on PostgreSQL."""
    def constraints(uri):
        with adbc_pg.connect(uri) as conn:
            objects = conn.adbc_get_objects(depth="all", db_schema_filter="tpch",
                                            table_name_filter="lineitem").read_all().to_pylist()
        out = set()
        for catalog in objects:
            for schema in catalog["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    for c in table["table_constraints"] or []:
                        usage = tuple((u["fk_table"], u["fk_column_name"])
                                      for u in c["constraint_column_usage"] or [])
                        out.add((table["table_name"], c["constraint_name"], c["constraint_type"],
                                 tuple(c["constraint_column_names"]), usage))
        return out

    ours = constraints(f"postgresql://tester:{sluice.token}@{sluice.pg_host}:{sluice.pg_port}/"
                       "sluice_conformance?sslmode=disable")
    theirs = constraints("postgresql://postgres@127.0.0.1:5432/sluice_conformance")
    kinds = {(name, kind) for _, name, kind, _, _ in ours}
    assert ("lineitem_pkey", "PRIMARY KEY") in kinds
    assert ("lineitem_l_partkey_l_suppkey_fkey", "FOREIGN KEY") in kinds
    assert ours == theirs


def flight_keys(server, token, command, body):
    client = flight.FlightClient(f"grpc://{server.flight}")
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    descriptor = flight.FlightDescriptor.for_command(
        field(1, f"type.googleapis.com/arrow.flight.protocol.sql.{command}".encode()) + field(2, body))
    info = client.get_flight_info(descriptor, options)
    (endpoint,) = info.endpoints
    table = client.do_get(endpoint.ticket, options).read_all()
    assert table.schema == info.schema
    return table.to_pylist()


def test_flight_sql_key_commands(sluice):
    """CommandGetPrimaryKeys, CommandGetImportedKeys, CommandGetExportedKeys and
    CommandGetCrossReference (Flight SQL's key calls, which JDBC's Flight SQL driver maps
    DatabaseMetaData onto)."""
    # CommandGetPrimaryKeys: 1 catalog, 2 db_schema, 3 table.
    pk = flight_keys(sluice, sluice.token, "CommandGetPrimaryKeys", field(2, "tpch") + field(3, "lineitem"))
    assert [(k["column_name"], k["key_sequence"], k["key_name"]) for k in pk] == [
        ("l_orderkey", 1, "lineitem_pkey"), ("l_linenumber", 2, "lineitem_pkey")]
    assert {k["catalog_name"] for k in pk} == {"sluice"}
    imported = flight_keys(sluice, sluice.token, "CommandGetImportedKeys", field(2, "tpch") + field(3, "lineitem"))
    assert [(k["fk_key_name"], k["fk_column_name"], k["pk_table_name"], k["pk_column_name"], k["key_sequence"])
            for k in imported] == LINEITEM_FOREIGN
    assert {(k["update_rule"], k["delete_rule"]) for k in imported} == {(3, 3)}  # NO ACTION
    exported = flight_keys(sluice, sluice.token, "CommandGetExportedKeys", field(2, "tpch") + field(3, "nation"))
    assert {(k["fk_table_name"], k["fk_column_name"]) for k in exported} == {
        ("customer", "c_nationkey"), ("supplier", "s_nationkey")}
    # CommandGetCrossReference: 1-3 pk catalog/schema/table, 4-6 fk catalog/schema/table.
    cross = flight_keys(sluice, sluice.token, "CommandGetCrossReference",
                        field(2, "tpch") + field(3, "partsupp") + field(5, "tpch") + field(6, "lineitem"))
    assert [(k["fk_column_name"], k["pk_column_name"]) for k in cross] == [
        ("l_partkey", "ps_partkey"), ("l_suppkey", "ps_suppkey")]
    assert flight_keys(sluice, sluice.token, "CommandGetPrimaryKeys", field(2, "tpch") + field(3, "nope")) == []


def hs2_rows(client, call, request):
    """Run an HS2 metadata call and fetch its rows (columns by name)."""
    resp = getattr(client, call)(request)
    assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, resp.status
    meta = client.GetResultSetMetadata(ttypes.TGetResultSetMetadataReq(operationHandle=resp.operationHandle))
    names = [c.columnName for c in meta.schema.columns]
    fetched = client.FetchResults(ttypes.TFetchResultsReq(
        operationHandle=resp.operationHandle, maxRows=1000, orientation=ttypes.TFetchOrientation.FETCH_NEXT))
    columns = []
    for column in fetched.results.columns:
        value = next(v for v in (column.stringVal, column.i32Val, column.i16Val, column.i64Val) if v is not None)
        columns.append(value.values)
    return [dict(zip(names, row)) for row in zip(*columns)]


def test_hs2_primary_keys_and_cross_reference(sluice):
    """HS2's GetPrimaryKeys and GetCrossReference (what the Databricks JDBC and ODBC
    drivers' key calls send)."""
    transport = THttpClient.THttpClient(f"{sluice.http_url}/sql/1.0/warehouses/default")
    transport.setCustomHeaders({"Authorization": f"Bearer {sluice.token}"})
    client = TCLIService.Client(TBinaryProtocol.TBinaryProtocol(transport))
    opened = client.OpenSession(ttypes.TOpenSessionReq(
        client_protocol_i64=ttypes.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V7))
    session = opened.sessionHandle
    pk = hs2_rows(client, "GetPrimaryKeys", ttypes.TGetPrimaryKeysReq(
        sessionHandle=session, catalogName="sluice", schemaName="tpch", tableName="partsupp"))
    assert [(r["COLUMN_NAME"], r["KEY_SEQ"], r["PK_NAME"]) for r in pk] == [
        ("ps_partkey", 1, "partsupp_pkey"), ("ps_suppkey", 2, "partsupp_pkey")]
    cross = hs2_rows(client, "GetCrossReference", ttypes.TGetCrossReferenceReq(
        sessionHandle=session, parentCatalogName="sluice", parentSchemaName="tpch",
        parentTableName="orders", foreignCatalogName="sluice", foreignSchemaName="tpch",
        foreignTableName="lineitem"))
    assert [(r["FKCOLUMN_NAME"], r["PKCOLUMN_NAME"], r["FK_NAME"], r["KEY_SEQ"], r["DEFERRABILITY"])
            for r in cross] == [("l_orderkey", "o_orderkey", "lineitem_l_orderkey_fkey", 1, 7)]
    # Imported keys: the foreign side only.
    imported = hs2_rows(client, "GetCrossReference", ttypes.TGetCrossReferenceReq(
        sessionHandle=session, foreignSchemaName="tpch", foreignTableName="lineitem"))
    assert [(r["FK_NAME"], r["FKCOLUMN_NAME"], r["PKTABLE_NAME"], r["PKCOLUMN_NAME"], r["KEY_SEQ"])
            for r in imported] == LINEITEM_FOREIGN
    client.CloseSession(ttypes.TCloseSessionReq(sessionHandle=session))


def config(lake):
    return f"""
[[tables]]
name = "shop.customers"
location = "{lake}/customers.csv"
format = "csv"
primary_key = ["id"]

[[tables]]
name = "shop.orders"
location = "{lake}/orders.csv"
format = "csv"
primary_key = ["id"]
foreign_keys = [{{ columns = ["customer"], references = "shop.customers" }}]

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
select = ["shop.orders", "tpch.nation"]

[[grants]]
roles = ["manager"]
select = ["*.*"]
privileges = ["MANAGE"]

[storage]
allowed_locations = ["{lake}"]
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    lake = tmp_path_factory.mktemp("keys")
    (lake / "customers.csv").write_text("id,name\n1,ann\n2,bob\n")
    # Key values are never checked: a duplicate id and a customer that does not exist.
    (lake / "orders.csv").write_text("id,customer,amount\n1,1,10\n1,2,20\n3,9,30\n")
    path = tmp_path_factory.mktemp("keys-config") / "sluice.toml"  # sluice keeps its config dir
    path.write_text(config(lake))
    server = start_sluice("--config", str(path))
    yield server, lake
    server.stop()


def test_config_keys_are_informational_and_filtered_by_grants(shop):
    server, _ = shop
    with psycopg.connect(server.dsn(password=MANAGER), autocommit=True) as c:
        assert rows(c, "SELECT constraint_name, table_name, constraint_type FROM "
                       "information_schema.table_constraints WHERE table_schema = 'shop' "
                       "AND constraint_type <> 'CHECK'") == [
            ("customers_pkey", "customers", "PRIMARY KEY"),
            ("orders_customer_fkey", "orders", "FOREIGN KEY"),
            ("orders_pkey", "orders", "PRIMARY KEY")]
        # Never checked, never used to change an answer: the duplicate and the dangling
        # reference are still there, and a join keeps its SQL meaning.
        assert rows(c, "SELECT count(*), count(DISTINCT id) FROM shop.orders") == [(3, 2)]
        assert rows(c, "SELECT count(*) FROM shop.orders o JOIN shop.customers c "
                       "ON o.customer = c.id") == [(2,)]
        assert rows(c, "SELECT o.id, count(*) FROM shop.orders o GROUP BY o.id") == [(1, 2), (3, 1)]
        [(customers_oid, customers_size)] = rows(
            c, "SELECT 'shop.customers'::regclass::oid, pg_relation_size('shop.customers')")
        assert customers_size == len("id,name\n1,ann\n2,bob\n")
        [(whole_database,)] = rows(c, "SELECT pg_database_size(current_database())")
    # The analyst reads shop.orders but not shop.customers: the foreign key that names
    # customers is hidden with it, in every view.
    with psycopg.connect(server.dsn(password=ANALYST), autocommit=True) as c:
        assert rows(c, "SELECT constraint_name FROM information_schema.table_constraints "
                       "WHERE table_schema = 'shop' AND constraint_type <> 'CHECK'") == [("orders_pkey",)]
        assert rows(c, "SELECT conname FROM pg_catalog.pg_constraint WHERE connamespace = "
                       "'shop'::regnamespace") == [("orders_pkey",)]
        assert rows(c, "SELECT count(*) FROM information_schema.referential_constraints") == [(0,)]
        assert rows(c, "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'customers_pkey'") == [(0,)]
        assert rows(c, "SELECT pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
                       "WHERE conname = 'orders_pkey'") == [("PRIMARY KEY (id)",)]
        # tpch.nation is readable, tpch.region is not: nation's foreign key is hidden.
        assert rows(c, "SELECT conname FROM pg_catalog.pg_constraint WHERE connamespace = "
                       "'tpch'::regnamespace") == [("nation_pkey",)]
        # Sizes too: a table the analyst may not read has none, even by its OID.
        assert rows(c, f"SELECT pg_relation_size({customers_oid}), "
                       f"pg_total_relation_size({customers_oid})") == [(None, None)]
        assert rows(c, "SELECT pg_relation_size('shop.orders') > 0") == [(True,)]
        # Nor a name: by OID it prints as a number, by name it does not resolve.
        assert rows(c, f"SELECT {customers_oid}::oid::regclass::text, "
                       "to_regclass('shop.customers'), 'shop.orders'::regclass::text") == \
            [(str(customers_oid), None, "shop.orders")]
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT 'shop.customers'::regclass")
        assert rows(c, "SELECT pg_database_size(current_database()) < "
                       f"{whole_database}") == [(True,)]
    pk = flight_keys(server, ANALYST, "CommandGetImportedKeys", field(2, "shop") + field(3, "orders"))
    assert pk == []


def test_create_external_table_with_keys(shop):
    server, lake = shop
    (lake / "items.csv").write_text("order_id,line,sku\n1,1,a\n1,2,b\n")
    with psycopg.connect(server.dsn(password=MANAGER), autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS lake")
        c.execute(f"""CREATE EXTERNAL TABLE lake.items (
                          CONSTRAINT items_pk PRIMARY KEY (order_id, line) NOT ENFORCED,
                          FOREIGN KEY (order_id) REFERENCES shop.orders (id) NOT ENFORCED)
                      STORED AS CSV LOCATION '{lake}/items.csv'""")
        assert rows(c, "SELECT pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
                       "WHERE conrelid = 'lake.items'::regclass") == [
            ("FOREIGN KEY (order_id) REFERENCES shop.orders(id)",),
            ("PRIMARY KEY (order_id, line)",)]
        assert rows(c, "SELECT count(*) FROM lake.items") == [(2,)]
        # Mistakes are refused with the reason, and the connection stays usable.
        for sql, state, words in [
            (f"CREATE EXTERNAL TABLE lake.bad1 (PRIMARY KEY (nope)) STORED AS CSV LOCATION '{lake}/items.csv'",
             "22023", 'primary key column "nope" does not exist'),
            (f"CREATE EXTERNAL TABLE lake.bad2 (PRIMARY KEY (line) ENFORCED) STORED AS CSV LOCATION '{lake}/items.csv'",
             "0A000", "NOT ENFORCED"),
            (f"CREATE EXTERNAL TABLE lake.bad3 (FOREIGN KEY (sku) REFERENCES shop.nowhere) "
             f"STORED AS CSV LOCATION '{lake}/items.csv'",
             "22023", "not a table with a primary key"),
            (f"CREATE EXTERNAL TABLE lake.bad4 (FOREIGN KEY (line) REFERENCES shop.orders (amount)) "
             f"STORED AS CSV LOCATION '{lake}/items.csv'",
             "22023", "must reference the primary key"),
            (f"CREATE EXTERNAL TABLE lake.bad5 (UNIQUE (line)) STORED AS CSV LOCATION '{lake}/items.csv'",
             "0A000", "only PRIMARY KEY and FOREIGN KEY"),
        ]:
            with pytest.raises(psycopg.Error) as refused:
                c.execute(sql)
            assert refused.value.sqlstate == state, (sql, str(refused.value))
            assert words in str(refused.value), (sql, str(refused.value))
        assert rows(c, "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'bad%'") == [(0,)]


def test_config_with_a_bad_key_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    config = tmp_path / "bad.toml"
    config.write_text(f'[[tables]]\nname = "s.t"\nlocation = "{tmp_path}/t.csv"\nformat = "csv"\n'
                      'primary_key = ["c"]\n')
    out = subprocess.run([sluice_bin(), "serve", "--config", str(config), "--data-dir", str(tmp_path),
                          "--no-demo", "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert 'table s.t: primary key column \\"c\\" does not exist (the table has a, b)' in out.stderr \
        or 'table s.t: primary key column "c" does not exist (the table has a, b)' in out.stderr, out.stderr

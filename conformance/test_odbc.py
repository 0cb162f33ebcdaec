"""psqlODBC (Debian odbc-postgresql, driven from pyodbc) — Excel's path: connect (which
sends three statements in one Query message), SQLTables, SQLColumns, SQLPrimaryKeys,
SQLGetTypeInfo, and a parameterized query (named `_PLAN…` statements, then DEALLOCATE)."""
import pyodbc


def connect(sluice):
    return pyodbc.connect(
        f"DRIVER={{PostgreSQL Unicode}};SERVER={sluice.pg_host};PORT={sluice.pg_port};"
        f"DATABASE=sluice;UID=tester;PWD={sluice.token};SSLmode=disable", timeout=30)


def test_psqlodbc_metadata_and_parameters(sluice):
    conn = connect(sluice)
    try:
        cur = conn.cursor()
        tables = [t.table_name for t in cur.tables(schema="tpch", tableType="TABLE")]
        assert tables == ["customer", "lineitem", "nation", "orders", "part", "partsupp",
                          "region", "supplier"]
        columns = [(c.column_name, c.type_name, c.nullable)
                   for c in cur.columns(table="nation", schema="tpch")]
        assert columns == [("n_nationkey", "int8", 0), ("n_name", "text", 0),
                           ("n_regionkey", "int8", 0), ("n_comment", "text", 0)]
        assert [(k.column_name, k.key_seq, k.pk_name) for k in cur.primaryKeys(table="nation", schema="tpch")] == [
            ("n_nationkey", 1, "nation_pkey")]
        assert len(cur.getTypeInfo().fetchall()) > 10
        for key, name in [(3, "CANADA"), (7, "GERMANY")]:
            cur.execute("SELECT n_name FROM tpch.nation WHERE n_nationkey = ?", key)
            assert [tuple(r) for r in cur.fetchall()] == [(name,)]
        cur.execute("SELECT count(*) FROM tpch.nation WHERE n_regionkey = ? AND n_name > ?", 1, "B")
        assert cur.fetchone()[0] == 4
    finally:
        conn.close()

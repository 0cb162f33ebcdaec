"""psqlODBC's catalog calls as Excel, Power BI (ODBC) and Tableau's generic ODBC connector
make them, each after a `SELECT 'harvest: <call>'` marker (for harvest_log.py)."""
import sys

import pyodbc

conn = pyodbc.connect(f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT=5432;DATABASE={sys.argv[1]};"
                      "UID=postgres;PWD=x;SSLmode=disable", timeout=30)
cur = conn.cursor()


def mark(call):
    cur.execute(f"SELECT 'harvest: {call}'")
    cur.fetchall()


calls = [
    ("SQLTables(catalogs)", lambda: cur.tables(catalog="%", schema="", table="")),
    ("SQLTables(schemas)", lambda: cur.tables(catalog="", schema="%", table="")),
    ("SQLTables(types)", lambda: cur.tables(catalog="", schema="", table="", tableType="%")),
    ("SQLTables(tpch)", lambda: cur.tables(schema="tpch", tableType="TABLE")),
    ("SQLTables(all)", lambda: cur.tables(tableType="TABLE,VIEW")),
    ("SQLColumns", lambda: cur.columns(table="nation", schema="tpch")),
    ("SQLColumns(all)", lambda: cur.columns(schema="tpch")),
    ("SQLPrimaryKeys", lambda: cur.primaryKeys(table="nation", schema="tpch")),
    ("SQLForeignKeys(fk)", lambda: cur.foreignKeys(foreignTable="lineitem", foreignSchema="tpch")),
    ("SQLForeignKeys(pk)", lambda: cur.foreignKeys(table="orders", schema="tpch")),
    ("SQLStatistics", lambda: cur.statistics(table="nation", schema="tpch")),
    ("SQLSpecialColumns", lambda: cur.rowIdColumns(table="nation", schema="tpch")),
    ("SQLSpecialColumns(rowver)", lambda: cur.rowVerColumns(table="nation", schema="tpch")),
    ("SQLGetTypeInfo", lambda: cur.getTypeInfo()),
    ("SQLGetTypeInfo(int)", lambda: cur.getTypeInfo(pyodbc.SQL_INTEGER)),
    ("SQLProcedures", lambda: cur.procedures(procedure="lower", schema="pg_catalog")),
    ("SQLProcedureColumns", lambda: cur.procedureColumns(procedure="lower", schema="pg_catalog")),
]
for call, run in calls:
    mark(call)
    try:
        run().fetchall()
    except pyodbc.Error as e:
        print(call, e, file=sys.stderr)
mark("SQLPrepare/SQLExecute")
cur.execute("SELECT n_name FROM tpch.nation WHERE n_nationkey = ?", 3).fetchall()
cur.execute("SELECT count(*) FROM tpch.nation WHERE n_regionkey = ? AND n_name > ?", 1, "B").fetchall()
conn.close()

"""pg_catalog and information_schema as BI tools and psql use them.

Reference answers come from a real PostgreSQL (127.0.0.1:5432) holding tables of the same
shape as sluice's `tpch` schema: psql's meta-commands must print the same thing against
both, and client metadata calls must return the same columns and types.
"""
import os
import subprocess

import psycopg
import pytest
from psycopg.types import TypeInfo

from pgraw import PgRaw

from conftest import PG, REFERENCE_DB


def psql_sluice(sluice, command):
    env = dict(os.environ, PGPASSWORD=sluice.token)
    out = subprocess.run(
        ["psql", "-X", "-h", sluice.pg_host, "-p", str(sluice.pg_port), "-U", "tester",
         "-d", "sluice", "-c", command],
        env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ERROR" not in out.stderr, out.stderr
    return out.stdout


def psql_reference(command):
    out = subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-U", "postgres", "-d", REFERENCE_DB, "-c", command],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("command", [r"\dt tpch.*", r"\d tpch.lineitem", r"\d tpch.nation",
                                     r"\df format_type", r"\df pg_catalog.array_to_string",
                                     r"\dT pg_catalog.int4"])
def test_psql_meta_command_matches_postgresql(sluice, reference, command):
    ours = psql_sluice(sluice, command)
    theirs = psql_reference(command)

    def cells(text):
        # Same table, cell by cell (the owner's name and so the column widths differ).
        lines = [l for l in text.splitlines() if l.strip() and set(l.strip()) > {"-", "+"}]
        return [[c.strip() for c in l.split("|")] for l in lines]

    theirs_cells = [[("sluice" if c == "postgres" else c) for c in row] for row in cells(theirs)]
    assert cells(ours) == theirs_cells, f"sluice:\n{ours}\nPostgreSQL:\n{theirs}"


def test_psql_lists_schemas_and_databases(sluice):
    schemas = psql_sluice(sluice, r"\dn")
    assert "public" in schemas and "system" in schemas and "tpch" in schemas and "(3 rows)" in schemas
    databases = psql_sluice(sluice, r"\l")
    row = [line for line in databases.splitlines() if line.strip().startswith("sluice ")]
    assert row and "UTF8" in row[0], databases


def test_npgsql_type_loading_batch(sluice):
    """Npgsql (Power BI) sends four statements in one Query message on first connect:
    version, the type-loading query (arrays told apart by typreceive = array_recv), the
    composite-fields query and the enum-labels query. Four results, one ReadyForQuery."""
    batch = """SELECT version();

SELECT ns.nspname, t.oid, t.typname, t.typtype, t.typnotnull, t.elemtypoid
FROM (
    SELECT typ.oid, typ.typnamespace, typ.typname, typ.typtype, typ.typrelid, typ.typnotnull, typ.relkind,
        elemtyp.oid AS elemtypoid, elemtyp.typname AS elemtypname, elemcls.relkind AS elemrelkind,
        CASE WHEN elemproc.proname='array_recv' THEN 'a' ELSE elemtyp.typtype END AS elemtyptype
    FROM (
        SELECT typ.oid, typnamespace, typname, typrelid, typnotnull, relkind, typelem AS elemoid,
            CASE WHEN proc.proname='array_recv' THEN 'a' ELSE typ.typtype END AS typtype,
            CASE WHEN proc.proname='array_recv' THEN typ.typelem
                 WHEN typ.typtype='r' THEN rngsubtype
                 WHEN typ.typtype='d' THEN typ.typbasetype END AS elemtypoid
        FROM pg_type AS typ
        LEFT JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
        LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive
        LEFT JOIN pg_range ON (pg_range.rngtypid = typ.oid)
    ) AS typ
    LEFT JOIN pg_type AS elemtyp ON elemtyp.oid = elemtypoid
    LEFT JOIN pg_class AS elemcls ON (elemcls.oid = elemtyp.typrelid)
    LEFT JOIN pg_proc AS elemproc ON elemproc.oid = elemtyp.typreceive
) AS t
JOIN pg_namespace AS ns ON (ns.oid = typnamespace)
WHERE typtype IN ('b', 'r', 'm', 'e', 'd')
   OR (typtype = 'c' AND relkind = 'c')
   OR (typtype = 'p' AND typname IN ('record', 'void'))
   OR (typtype = 'a' AND (elemtyptype IN ('b', 'r', 'm', 'e', 'd')
                          OR (elemtyptype = 'p' AND elemtypname IN ('record', 'void'))
                          OR (elemtyptype = 'c' AND elemrelkind = 'c')))
ORDER BY CASE WHEN typtype IN ('b', 'e', 'p') THEN 0 WHEN typtype = 'r' THEN 1
              WHEN typtype = 'm' THEN 2 WHEN typtype = 'c' THEN 3
              WHEN typtype = 'd' AND elemtyptype <> 'a' THEN 4 WHEN typtype = 'a' THEN 5
              WHEN typtype = 'd' AND elemtyptype = 'a' THEN 6 END;

-- composite fields
SELECT typ.oid, att.attname, att.atttypid
FROM pg_type AS typ
JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace)
JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
JOIN pg_attribute AS att ON (att.attrelid = typ.typrelid)
WHERE (typ.typtype = 'c' AND cls.relkind = 'c') AND attnum > 0 AND NOT attisdropped
ORDER BY typ.oid, att.attnum;

-- enum labels
SELECT pg_type.oid, enumlabel
FROM pg_enum
JOIN pg_type ON pg_type.oid = enumtypid
ORDER BY oid, enumsortorder;
"""
    conn = PgRaw(sluice.pg_host, sluice.pg_port, "powerbi", sluice.token)
    try:
        results, kinds = conn.query(batch)
        assert [r.get("error") for r in results] == [None] * 4, results
        assert kinds.count(b"Z") == 1 and kinds.count(b"C") == 4
        version, types, composites, enums = results
        assert version["rows"][0][0].startswith("PostgreSQL 15")
        assert "redshift" not in version["rows"][0][0].lower()
        by_name = {row[2]: row for row in types["rows"]}
        # Base types, then arrays identified through array_recv, with their element OID.
        assert by_name["int4"][3] == "b" and by_name["int4"][1] == "23"
        assert by_name["_int4"][3] == "a" and by_name["_int4"][5] == "23"
        assert by_name["numeric"][3] == "b" and by_name["_text"][5] == "25"
        order = [row[3] for row in types["rows"]]
        assert order.index("a") > max(i for i, t in enumerate(order) if t == "b")
        assert len(types["rows"]) > 150
        assert composites["rows"] == [] and enums["rows"] == []
        # The connection goes on: DISCARD ALL when Npgsql reuses it, then DirectQuery SQL.
        results, _ = conn.query("DISCARD ALL")
        assert results[0]["tag"] == "DISCARD ALL"
        results, _ = conn.query(
            "SELECT n_regionkey, count(*) AS c FROM tpch.nation GROUP BY n_regionkey "
            "ORDER BY n_regionkey LIMIT 3")
        assert [r[1] for r in results[0]["rows"]] == ["5", "5", "5"]
    finally:
        conn.close()


def test_row_description_names_table_and_column(sluice):
    """PgJDBC and psqlODBC look up nullability by (table OID, column number)."""
    conn = PgRaw(sluice.pg_host, sluice.pg_port, "tester", sluice.token)
    try:
        results, _ = conn.query("SELECT n_name, n_nationkey, 1 AS one FROM tpch.nation LIMIT 1")
        cols = results[0]["columns"]
        results, _ = conn.query(
            "SELECT c.oid, a.attnum FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE n.nspname = 'tpch' AND c.relname = 'nation' AND a.attname IN ('n_name', 'n_nationkey') "
            "ORDER BY a.attnum")
        (key_oid, key_num), (name_oid, name_num) = results[0]["rows"]
        assert (cols[0][2], cols[0][3]) == (int(name_oid), int(name_num))
        assert (cols[1][2], cols[1][3]) == (int(key_oid), int(key_num))
        assert (cols[2][2], cols[2][3]) == (0, 0)
    finally:
        conn.close()


def test_psycopg_type_info(sluice):
    """psycopg's TypeInfo.fetch (SQLAlchemy runs it at first connect)."""
    with psycopg.connect(sluice.dsn()) as conn:
        text = TypeInfo.fetch(conn, "text")
        assert (text.oid, text.array_oid) == (25, 1009)
        assert TypeInfo.fetch(conn, "hstore") is None


def test_catalog_functions_and_casts(sluice):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT 'pg_class'::regclass::oid, 23::regtype::text, format_type(1700, 983046), "
            "to_regtype('integer'), current_schema(), current_schemas(true), "
            "current_setting('server_version_num'), pg_catalog.pg_get_userbyid(10), "
            "has_table_privilege('tpch.nation', 'SELECT')").fetchone()
        assert row == (1259, "integer", "numeric(15,2)", "integer", "public", ["pg_catalog", "public"],
                       "150020", "sluice", True)
        # A recursive CTE, a window function and a regex over the catalog.
        rows = conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) "
            "SELECT c.relname, row_number() OVER (ORDER BY c.relname) "
            "FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE s.nspname = 'tpch' AND c.relkind = 'r' AND c.relname ~ '^(n|r)' AND c.relname !~ 'x' "
            "AND (SELECT max(i) FROM n) = 3 ORDER BY 1").fetchall()
        assert rows == [("nation", 1), ("region", 2)]
        # set_config changes the session's setting, as SET does.
        assert conn.execute("SELECT set_config('application_name', 'bi', false)").fetchone() == ("bi",)
        assert conn.execute("SHOW application_name").fetchone() == ("bi",)


@pytest.mark.parametrize("sql, code", [
    ("SELECT no_such_function(1)", "42883"),
    ("SELECT * FROM pg_catalog.pg_no_such_table", "42P01"),
    ("SELECT 'no_such_type'::regtype", "42704"),
    ("SELECT 'tpch.no_such'::regclass", "42P01"),
])
def test_unknown_catalog_objects_are_named(sluice, sql, code):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(sql)
        assert err.value.sqlstate == code, err.value
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sqlalchemy_inspector_matches_postgresql(sluice, reference):
    """SQLAlchemy 2 + psycopg: dialect initialisation, Inspector listings, a query; the
    Inspector returns the same columns and types as against PostgreSQL."""
    import sqlalchemy as sa

    ours = sa.create_engine(
        f"postgresql+psycopg://tester:{sluice.token}@{sluice.pg_host}:{sluice.pg_port}/sluice")
    theirs = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{REFERENCE_DB}")
    try:
        ours_inspect, theirs_inspect = sa.inspect(ours), sa.inspect(theirs)
        assert {"public", "tpch"} <= set(ours_inspect.get_schema_names())
        tables = ours_inspect.get_table_names(schema="tpch")
        assert sorted(tables) == sorted(theirs_inspect.get_table_names(schema="tpch"))
        for table in ["nation", "lineitem"]:
            def shape(inspector):
                return [(c["name"], str(c["type"]), c["nullable"], c["default"])
                        for c in inspector.get_columns(table, schema="tpch")]
            assert shape(ours_inspect) == shape(theirs_inspect)
            # TPC-H's informational keys, as PostgreSQL declares them.
            for inspector in (ours_inspect, theirs_inspect):
                assert inspector.get_pk_constraint(table, schema="tpch")["constrained_columns"] == \
                    {"nation": ["n_nationkey"], "lineitem": ["l_orderkey", "l_linenumber"]}[table]
            assert ours_inspect.get_pk_constraint(table, schema="tpch") == \
                theirs_inspect.get_pk_constraint(table, schema="tpch")
            assert ours_inspect.get_foreign_keys(table, schema="tpch") == \
                theirs_inspect.get_foreign_keys(table, schema="tpch")
        with ours.connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM tpch.nation WHERE n_regionkey = :r"), {"r": 1}).scalar()
            assert count == 5
    finally:
        ours.dispose()
        theirs.dispose()


def test_asyncpg_parameters_fetchval_and_introspection(sluice):
    import asyncio

    import asyncpg

    async def run():
        conn = await asyncpg.connect(host=sluice.pg_host, port=sluice.pg_port, user="tester",
                                     password=sluice.token, database="sluice")
        try:
            name = await conn.fetchval("SELECT n_name FROM tpch.nation WHERE n_nationkey = $1", 3)
            rows = await conn.fetch(
                "SELECT oid, typname FROM pg_type WHERE oid = ANY($1::oid[]) ORDER BY oid", [23, 25])
            count = await conn.fetchval(
                "SELECT count(*) FROM tpch.nation WHERE n_regionkey = $1", 2)
            # What asyncpg runs for a type it has no codec for (an enum, a range, a
            # composite): its recursive introspection CTE over pg_type, pg_namespace,
            # pg_range, pg_attribute, pg_class with `$1::oid[]` — here for int4 and int4[].
            types = await conn._introspect_types([23, 1007], 10)
            found = {(r["oid"], r["name"], r["elemtype_name"]) for r in types[0]}
            return name, [tuple(r) for r in rows], count, found
        finally:
            await conn.close()

    name, rows, count, found = asyncio.run(run())
    assert found == {(23, "int4", "-"), (1007, "_int4", "integer")}
    assert name == "CANADA"
    # An oid[] parameter, sent in binary.
    assert rows == [(23, "int4"), (25, "text")]
    assert count == 5


def test_pgjdbc_database_metadata_matches_postgresql(sluice, reference, tmp_path):
    """PgJDBC's DatabaseMetaData (getCatalogs, getSchemas, getTables, getColumns,
    getPrimaryKeys, getImportedKeys, getIndexInfo, getTypeInfo, getTableTypes) and a
    query's ResultSetMetaData — DBeaver's and Tableau's path — give the same columns,
    java.sql types and rows as PostgreSQL for tables of the same shape."""
    jar = "/usr/share/java/postgresql.jar"
    assert os.path.exists(jar), f"{jar} missing: install libpostgresql-jdbc-java"
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["javac", "-d", str(tmp_path), os.path.join(here, "jdbc", "Metadata.java")],
                   check=True, timeout=300)

    def run(url, user, password):
        out = subprocess.run(["java", "-cp", f"{tmp_path}:{jar}", "Metadata", url, user, password],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return sizes_blanked(out.stdout)

    def sizes_blanked(text):
        """getIndexInfo's CARDINALITY and PAGES are the index's size in PostgreSQL's
        storage (pg_class.reltuples / relpages); sluice stores no index."""
        out, section = [], None
        for line in text.splitlines():
            if line.startswith("## "):
                section = line[3:]
            elif section == "index_info" and line.startswith("row\t"):
                cells = line.split("\t")
                cells[11:13] = ["<size>", "<size>"]  # columns 11, 12 (after "row")
                line = "\t".join(cells)
            out.append(line)
        return "\n".join(out)

    # Same database name on both sides: getCatalogs reports the connection's database.
    ours = run(f"jdbc:postgresql://{sluice.pg_host}:{sluice.pg_port}/{REFERENCE_DB}?sslmode=disable",
               "tester", sluice.token)
    theirs = run(f"jdbc:postgresql://127.0.0.1:5432/{REFERENCE_DB}?sslmode=disable", "postgres", "")
    assert ours == theirs
    sections = {s.split("\n", 1)[0]: s for s in ours.split("## ")[1:]}
    assert "count\t8" in sections["tables"] and "\tlineitem\t" in sections["tables"]
    assert "count\t4" in sections["columns"] and "\tn_nationkey\t-5\tint8\t" in sections["columns"]
    assert int(sections["type_info"].rsplit("count\t", 1)[1]) > 300
    assert "row\tn_name\ttext\t0\tnation\t" in sections["result_metadata"]
    # TPC-H's informational keys, as PgJDBC's key calls read them.
    assert "\tnation\tn_nationkey\t1\tnation_pkey" in sections["primary_keys"]
    assert "count\t2" in sections["primary_keys_lineitem"]
    assert "count\t3" in sections["imported_keys_lineitem"]
    assert "\tlineitem_l_partkey_l_suppkey_fkey\t" in sections["cross_reference"]
    assert "\tlineitem\tl_orderkey\t" in sections["exported_keys_orders"]


def test_copy_to_stdout_text_and_csv(sluice):
    """COPY (query) TO STDOUT in text and CSV, as psql's \\copy and COPY send it."""
    env = dict(os.environ, PGPASSWORD=sluice.token)

    def psql(sql):
        out = subprocess.run(
            ["psql", "-X", "-h", sluice.pg_host, "-p", str(sluice.pg_port), "-U", "tester",
             "-d", "sluice", "-c", sql],
            env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    text = psql("COPY (SELECT n_nationkey, n_name, NULL::text AS nothing FROM tpch.nation "
                "WHERE n_nationkey < 3 ORDER BY 1) TO STDOUT")
    assert text == "0\tALGERIA\t\\N\n1\tARGENTINA\t\\N\n2\tBRAZIL\t\\N\n"
    csv = psql("COPY (SELECT n_nationkey AS key, n_name || ', ' || 'x\"y' AS name FROM tpch.nation "
               "WHERE n_nationkey < 2 ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER)")
    assert csv == 'key,name\n0,"ALGERIA, x""y"\n1,"ARGENTINA, x""y"\n'
    table = psql("COPY tpch.region TO STDOUT CSV")
    assert len(table.splitlines()) == 5
    # Writing files or reading into tables is refused: read-only, and no server files.
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute("COPY tpch.region TO '/tmp/region.csv'")
        assert err.value.sqlstate == "25006", err.value


def test_statements_after_set_in_one_message_see_it(sluice):
    """One Query message: `SET search_path` then a query relying on it."""
    conn = PgRaw(sluice.pg_host, sluice.pg_port, "tester", sluice.token)
    try:
        results, kinds = conn.query(
            "SET search_path = tpch, public; SELECT count(*) FROM nation; SHOW search_path")
        assert [r.get("tag") for r in results][:2] == ["SET", "SELECT 1"]
        assert results[1]["rows"] == [["25"]]
        assert results[2]["rows"] == [["tpch, public"]]
        assert kinds.count(b"Z") == 1
    finally:
        conn.close()


def test_reset_restores_the_default(sluice):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        default = conn.execute("SHOW search_path").fetchone()[0]
        conn.execute("SET search_path = tpch")
        conn.execute("SET application_name = 'probe'")
        assert conn.execute("SHOW search_path").fetchone() == ("tpch",)
        conn.execute("RESET search_path")
        assert conn.execute("SHOW search_path").fetchone() == (default,)
        conn.execute("RESET ALL")
        assert conn.execute("SELECT current_setting('application_name')").fetchone() != ("probe",)


@pytest.mark.parametrize("sql", [
    # Issue 22: the literal cast read as one element answered 0 here, silently.
    "SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relkind = ANY('{r,p,f}'::text[]) "
    "AND c.relnamespace = 'tpch'::regnamespace",
    "SELECT ('{a,\"b,c\",NULL, d }'::text[])[2], ('{a,\"b,c\",NULL}'::text[])[3] IS NULL",
    "SELECT '{1,2}'::int2[], cardinality('{}'::text[])",
    "SELECT 'x' = ANY('{\"x\",y}'::varchar[])",
])
def test_array_literals_mean_what_they_mean_in_postgresql(sluice, reference, sql):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = conn.execute(sql).fetchall()
    with psycopg.connect(reference, autocommit=True) as conn:
        want = conn.execute(sql).fetchall()
    assert got == want


@pytest.mark.parametrize("sql", ["SHOW TIME ZONE", "SHOW timezone", "SHOW DateStyle", "SHOW intervalstyle",
                                 "SHOW TRANSACTION ISOLATION LEVEL", "SHOW search_path",
                                 "SHOW server_version_num"])
def test_show_answers_in_the_settings_own_column(sluice, reference, sql):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        cur = conn.execute(sql)
        got = [d.name for d in cur.description], len(cur.fetchall())
    with psycopg.connect(reference, autocommit=True) as conn:
        cur = conn.execute(sql)
        want = [d.name for d in cur.description], len(cur.fetchall())
    assert got == want


def test_database_qualified_names_resolve_in_the_connected_database(sluice, reference):
    """dbt-postgres names every relation "database"."schema"."table"."""
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        assert conn.execute('SELECT count(*) FROM "default"."tpch"."nation"').fetchone() == (25,)
        assert conn.execute('SELECT count(*) FROM "default".tpch.region r '
                            "JOIN tpch.nation n ON n.n_regionkey = r.r_regionkey").fetchone() == (25,)
    # Another database, and too many parts: PostgreSQL's SQLSTATEs.
    for sql in ["SELECT * FROM elsewhere.tpch.nation", "SELECT * FROM a.b.tpch.nation"]:
        with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as got:
                conn.execute(sql)
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(reference, autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as want:
                conn.execute(sql)
        assert got.value.sqlstate == want.value.sqlstate, (got.value, want.value)


def test_repeated_output_names_as_dbeaver_selects_them(sluice, reference):
    """DBeaver lists schemas and tables with `x.oid, x.*`: PostgreSQL allows the repeat."""
    sql = ("SELECT n.oid, n.*, d.description FROM pg_catalog.pg_namespace n "
           "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 "
           "WHERE n.nspname = 'tpch'")
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        cur = conn.execute(sql)
        got = [d.name for d in cur.description], len(cur.fetchall())
        cur = conn.execute("SELECT c.oid, c.*, c.relname FROM pg_catalog.pg_class c "
                           "WHERE c.relnamespace = 'tpch'::regnamespace AND c.relkind = 'r' "
                           "ORDER BY c.relname")
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
        assert names[:2] == ["oid", "oid"] and names[-1] == "relname" and names.count("relname") == 2
        assert [r[-1] for r in rows] == sorted(["customer", "lineitem", "nation", "orders", "part",
                                                  "partsupp", "region", "supplier"])
    with psycopg.connect(reference, autocommit=True) as conn:
        cur = conn.execute(sql)
        want = [d.name for d in cur.description], len(cur.fetchall())
    assert got == want


def test_limit_and_offset_parameters_are_bigint_as_in_postgresql(sluice, reference):
    """asyncpg binds by the types the server describes: LIMIT/OFFSET $n are int8."""
    import asyncio

    import asyncpg

    sql = "SELECT n_name FROM tpch.nation ORDER BY n_nationkey LIMIT $1 OFFSET $2"

    async def run(**connect):
        conn = await asyncpg.connect(**connect)
        try:
            statement = await conn.prepare(sql)
            types = [t.name for t in statement.get_parameters()]
            rows = await statement.fetch(3, 2)
            return types, [r[0] for r in rows]
        finally:
            await conn.close()

    types, rows = asyncio.run(run(host=sluice.pg_host, port=sluice.pg_port, user="tester",
                                  password=sluice.token, database="sluice"))
    assert rows == ["BRAZIL", "CANADA", "EGYPT"]
    want, _ = asyncio.run(run(host="127.0.0.1", port=5432, user="postgres", database=REFERENCE_DB))
    assert types == want == ["int8", "int8"]


@pytest.mark.parametrize("sql, args", [
    # A cast parameter is the cast's type, also inside a rewritten function.
    ("SELECT generate_subscripts(ARRAY[4,5,6], $1::INTEGER)", [1]),
    ("SELECT $1::date - 1", ["2020-01-05"]),
    ("SELECT n_name FROM tpch.nation WHERE n_nationkey = $1", [3]),
])
def test_parameters_are_described_and_typed_as_in_postgresql(sluice, reference, sql, args):
    """asyncpg binds by the types the server describes (ParameterDescription)."""
    import asyncio
    import datetime

    import asyncpg

    values = [datetime.date.fromisoformat(a) if isinstance(a, str) else a for a in args]

    async def run(**connect):
        conn = await asyncpg.connect(**connect)
        try:
            statement = await conn.prepare(sql)
            params = [t.name for t in statement.get_parameters()]
            columns = [a.type.name for a in statement.get_attributes()]
            return params, columns, [tuple(r) for r in await statement.fetch(*values)]
        finally:
            await conn.close()

    got = asyncio.run(run(host=sluice.pg_host, port=sluice.pg_port, user="tester",
                          password=sluice.token, database=REFERENCE_DB))
    want = asyncio.run(run(host="127.0.0.1", port=5432, user="postgres", database=REFERENCE_DB))
    assert got == want


@pytest.mark.parametrize("sql", ["SELECT 'tpch.nation'::regclass", "SELECT 'pg_class'::regclass::text",
                                 "SELECT 'int4'::regtype, 'pg_catalog'::regnamespace",
                                 "SELECT c.oid::regclass FROM pg_catalog.pg_class c WHERE c.relname = 'nation'"])
def test_reg_casts_are_named_as_in_postgresql(sluice, reference, sql):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = [d.name for d in conn.execute(sql).description]
    with psycopg.connect(reference, autocommit=True) as conn:
        want = [d.name for d in conn.execute(sql).description]
    assert got == want


@pytest.mark.parametrize("sql", ["SELECT generate_series(1, 3)",
                                 "SELECT generate_series(1, 10, 4) AS g, 'x' AS t",
                                 "SELECT n, generate_series(1, 2) FROM (VALUES ('a'), ('b')) v(n) ORDER BY 1, 2"])
def test_set_returning_functions_in_the_select_list_give_rows(sluice, reference, sql):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        cur = conn.execute(sql)
        got = [d.name for d in cur.description], cur.fetchall()
    with psycopg.connect(reference, autocommit=True) as conn:
        cur = conn.execute(sql)
        want = [d.name for d in cur.description], cur.fetchall()
    assert got == want


def test_pg_get_keywords_as_pgjdbc_reads_them(sluice, reference):
    """PgJDBC's DatabaseMetaData.getSQLKeywords() query."""
    sql = ("select string_agg(word, ',') from pg_catalog.pg_get_keywords() "
           "where word <> ALL ('{a,abs,absolute,action,ada,add,admin,after,all,allocate,alter,"
           "always,and,any,are,array,as,asc}'::text[])")
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = conn.execute(sql).fetchall()
        count = conn.execute("SELECT count(*), count(*) FILTER (WHERE catcode = 'R') "
                             "FROM pg_get_keywords()").fetchone()
    with psycopg.connect(reference, autocommit=True) as conn:
        want = conn.execute(sql).fetchall()
        want_count = conn.execute("SELECT count(*), count(*) FILTER (WHERE catcode = 'R') "
                                  "FROM pg_get_keywords()").fetchone()
    assert got == want
    assert count == want_count


# Server-side cursors: each statement's command tag, rows or SQLSTATE as PostgreSQL answers.
VALUES10 = "SELECT n FROM (VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10)) t(n) ORDER BY n"
CURSOR_SCRIPT = [
    "BEGIN",
    f"DECLARE c NO SCROLL CURSOR FOR {VALUES10}",
    "FETCH 0 FROM c",
    "FETCH 2 FROM c",
    "FETCH c",
    "FETCH NEXT IN c",
    "FETCH FORWARD 2 FROM c",
    "MOVE ABSOLUTE 7 FROM c",
    "FETCH ABSOLUTE 8 FROM c",
    "FETCH RELATIVE 1 FROM c",
    "MOVE 10 IN c",
    "FETCH ALL FROM c",
    "MOVE FORWARD ALL FROM c",
    # (PostgreSQL also lists the extended protocol's unnamed portal, the running statement.)
    "SELECT name, is_holdable, is_binary, is_scrollable FROM pg_catalog.pg_cursors WHERE name <> ''",
    "CLOSE c",
    "COMMIT",
    "FETCH 1 FROM c",
    "DECLARE d CURSOR FOR SELECT 1",
    "DECLARE e CURSOR WITH HOLD FOR SELECT 1 AS x",
    "FETCH e",
    "FETCH e",
    "BEGIN",
    "DECLARE f CURSOR FOR SELECT 2 AS y",
    "DECLARE e CURSOR FOR SELECT 3",
    "ROLLBACK",
    "SELECT name, is_holdable FROM pg_catalog.pg_cursors WHERE name <> '' ORDER BY name",
    "CLOSE f",
    "CLOSE ALL",
    "SELECT count(*) FROM pg_catalog.pg_cursors WHERE name <> ''",
    "BEGIN",
    f"DECLARE \"Back\" NO SCROLL CURSOR FOR {VALUES10}",
    'FETCH 3 FROM "Back"',
    'FETCH PRIOR FROM "Back"',
    "ROLLBACK",
    "BEGIN",
    f"DECLARE g NO SCROLL CURSOR FOR {VALUES10}",
    "FETCH 1 FROM g",
    "FETCH BACKWARD 1 FROM g",
    "ROLLBACK",
]


def run_script(conn, script, binary):
    """Each statement's outcome: (tag, column names, rows) or its SQLSTATE. psycopg sends a
    statement without parameters as a simple Query, and in binary (results) through the
    extended protocol: Parse, Bind, Describe, Execute."""
    out = []
    for sql in script:
        try:
            cur = conn.cursor().execute(sql, binary=binary)
            names = [d.name for d in cur.description] if cur.description else None
            rows = cur.fetchall() if cur.description else None
            out.append((sql, cur.statusmessage, names, rows))
        except psycopg.Error as e:
            out.append((sql, e.sqlstate))
    return out


@pytest.mark.parametrize("binary", [False, True], ids=["simple-protocol", "extended-protocol"])
def test_cursor_statements_answer_as_in_postgresql(sluice, reference, binary):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = run_script(conn, CURSOR_SCRIPT, binary)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(reference, autocommit=True) as conn:
        want = run_script(conn, CURSOR_SCRIPT, binary)
    for g, w in zip(got, want):
        assert g == w


def test_psycopg_server_cursor_with_parameters_and_scroll(sluice, reference):
    """psycopg's ServerCursor: DECLARE with bound parameters (extended protocol), a Describe
    of the cursor's portal by name, FETCH FORWARD n, MOVE, CLOSE; WITH HOLD after COMMIT."""
    sql = ("SELECT n, 'r' || n AS label FROM (VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10)) t(n) "
           "WHERE n > %s AND n <= %s ORDER BY n")

    def read(dsn):
        out = []
        with psycopg.connect(dsn) as conn:
            with conn.cursor(name="numbers", binary=True) as cur:
                cur.execute(sql, (2, 8))
                out.append([d.name for d in cur.description])
                out.append(cur.fetchmany(2))
                cur.scroll(1)
                out.append(cur.fetchall())
            with conn.cursor(name="held", withhold=True) as cur:
                cur.execute("SELECT s FROM (VALUES ('a'), ('b'), ('c')) v(s) ORDER BY s")
                conn.commit()
                out.append(cur.fetchone())
                out.append(cur.fetchall())
            out.append(conn.execute("SELECT count(*) FROM pg_catalog.pg_cursors").fetchone())
        return out

    got = read(sluice.dsn())
    assert got[1:3] == [[(3, "r3"), (4, "r4")], [(6, "r6"), (7, "r7"), (8, "r8")]]
    assert got == read(reference)


def test_open_cursors_per_session_are_limited(sluice):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        for i in range(16):
            conn.execute(f"DECLARE c{i} CURSOR WITH HOLD FOR SELECT {i}")
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("DECLARE one_more CURSOR WITH HOLD FOR SELECT 1")
        assert refused.value.sqlstate == "53400"
        assert "max_cursors" in str(refused.value)
        # The session goes on: close one, declare again.
        conn.execute("CLOSE c0")
        conn.execute("DECLARE one_more CURSOR WITH HOLD FOR SELECT 1")
        assert conn.execute("FETCH one_more").fetchone() == (1,)
        conn.execute("CLOSE ALL")


def test_array_parameters_bind_as_postgresql_infers_them(sluice, reference):
    """`= ANY($1)` with a list bound as one parameter (psycopg, asyncpg, PgJDBC's setArray):
    the parameter is an array of the column's type; described and answered as PostgreSQL does."""
    import asyncio

    import asyncpg

    sql = "SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relname = ANY(%s)"
    names = ["nation", "region", "no_such_table"]
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = conn.execute(sql, (names,)).fetchone()
    with psycopg.connect(reference, autocommit=True) as conn:
        want = conn.execute(sql, (names,)).fetchone()
    assert got == want == (2,)

    async def describe(**connect):
        conn = await asyncpg.connect(**connect)
        try:
            statement = await conn.prepare(
                "SELECT n_name FROM tpch.nation WHERE n_name = ANY($1) ORDER BY 1")
            rows = await statement.fetch(["PERU", "CHINA"])
            return [t.name for t in statement.get_parameters()], [r[0] for r in rows]
        finally:
            await conn.close()

    types, rows = asyncio.run(describe(host=sluice.pg_host, port=sluice.pg_port, user="tester",
                                       password=sluice.token, database="sluice"))
    assert rows == ["CHINA", "PERU"]
    want, want_rows = asyncio.run(describe(host="127.0.0.1", port=5432, user="postgres",
                                           database=REFERENCE_DB))
    assert (types, rows) == (want, want_rows)


# Statements from "what fails today" (issue 22) whose answers must equal PostgreSQL's.
SAME_AS_POSTGRESQL = [
    # Vectors count from 0 (generate_subscripts over indkey once began at 1: a wrong key
    # column for Rails' `pg_get_indexdef(indexrelid, k + 1)`).
    "SELECT generate_subscripts(i.indkey, 1) AS k, array_lower(i.indkey, 1), "
    "array_upper(i.indkey, 1) FROM pg_index i WHERE i.indrelid = 'tpch.lineitem'::regclass ORDER BY 1",
    "SELECT k, pg_get_indexdef(i.indexrelid, k + 1, true) FROM pg_index i, "
    "generate_subscripts(i.indkey, 1) AS k WHERE i.indrelid = 'tpch.partsupp'::regclass ORDER BY 1",
    "SELECT ARRAY(SELECT pg_get_indexdef(i.indexrelid, k + 1, true) FROM generate_subscripts(i.indkey, 1) "
    "AS k ORDER BY k) FROM pg_index i WHERE i.indrelid = 'tpch.lineitem'::regclass",
    "SELECT array_lower(ARRAY[5, 6], 1), array_upper(ARRAY[5, 6], 1), array_lower('{}'::int[], 1)",
    "SELECT * FROM generate_subscripts(ARRAY['a', 'b', 'c'], 1) AS k",
    # unnest WITH ORDINALITY, several arrays, and over the row before it (Django).
    "SELECT * FROM unnest(ARRAY['x', 'y']) WITH ORDINALITY AS t(v, n)",
    "SELECT * FROM unnest(ARRAY[1, 2, 3], ARRAY['a']) WITH ORDINALITY AS t(a, b, n)",
    "SELECT c.conname, k.* FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY k(attnum, pos) "
    "WHERE c.conrelid = 'tpch.lineitem'::regclass ORDER BY 1, 3",
    "SELECT c.conname, ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY cols(colid, arridx) "
    "JOIN pg_attribute a ON cols.colid = a.attnum WHERE a.attrelid = c.conrelid ORDER BY cols.arridx) "
    "FROM pg_constraint c WHERE c.conrelid = 'tpch.partsupp'::regclass ORDER BY 1",
    # A subscripted outer column inside a derived table of a correlated subquery (Rails).
    "SELECT c.conname, (SELECT array_agg(e ORDER BY idx) FROM (SELECT idx, c.conkey[idx] AS e "
    "FROM generate_subscripts(c.conkey, 1) AS idx) x) FROM pg_constraint c "
    "WHERE c.conrelid = 'tpch.lineitem'::regclass ORDER BY 1",
    # EXISTS and IN as values, in a select list and in ORDER BY (pgAdmin, Grafana).
    "SELECT c.relname, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = 4), "
    "NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND 2 = ANY(k.conkey)) "
    "FROM pg_class c WHERE c.relnamespace = 'tpch'::regnamespace ORDER BY 1",
    "SELECT relname, relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname LIKE 'tp%'), "
    "relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname LIKE 'tp%') "
    "FROM pg_class WHERE relname IN ('nation', 'pg_class') ORDER BY 1",
    "SELECT relname FROM pg_class WHERE relnamespace = 'tpch'::regnamespace "
    "ORDER BY relname IN (SELECT 'nation' UNION SELECT 'orders'), 1",
    # EXTRACT is numeric and date_part double precision, seconds with their fraction (a
    # timestamp's seconds were once whole: date_part('second', '…01.5') was 1).
    "SELECT date_part('second', timestamp '2020-01-01 10:00:01.5'), date_part('epoch', timestamp "
    "'2020-01-01 10:00:01.5'), extract(epoch from date '2020-01-01'), extract(milliseconds from "
    "timestamp '2020-01-01 10:00:01.5'), extract(dow from date '2020-01-05'), extract(year from "
    "date '2020-01-05'), date_part('year', date '2020-01-05'), extract(microseconds from timestamp "
    "'2020-01-01 10:00:01.5'), extract(epoch from interval '1 day 2 hours'), extract(quarter from "
    "date '2020-05-01'), extract(doy from date '2020-05-01'), extract(isodow from date '2020-01-05'), "
    "extract(week from date '2020-01-05'), extract(second from timestamp '2020-01-01 10:00:01.5'), "
    "extract(epoch from interval '1 year 1 month'), extract(century from date '2001-01-01')",
    # Integer arithmetic near the limits (checked, as PostgreSQL's), PostgreSQL's names
    # of DataFusion's functions.
    "SELECT 2147483646::int4 + 1::int4, (-2147483647)::int4 - 1::int4, 46340::int4 * 46340::int4, "
    "9223372036854775806 + 1, n_nationkey * 3 - 1 FROM tpch.nation WHERE n_nationkey < 3 ORDER BY 5",
    "SELECT sign(-3), every(x > 0), every(x > 1) FROM (VALUES (1), (2), (4)) t(x)",
    # floor, ceil and trunc of a numeric have scale 0 (trunc(x, n): n), as in PostgreSQL
    # (Grafana's $__timeGroup: floor(extract(epoch …)/86400)*86400 printed 788918400.0000);
    # ceil of a value at the top of its precision carries a digit.
    # (as text: Python's Decimal('7') equals Decimal('7.00')).
    "SELECT floor(7.25::numeric(10,2))::text, ceil(7.25::numeric(10,2))::text, ceiling(9.9)::text, "
    "trunc(7.256::numeric(10,3))::text, trunc(7.256::numeric(10,3), 1)::text, trunc(1234.5, -2)::text, "
    "floor(-7.5)::text, trunc(-7.5)::text, round(7.256, 2)::text, floor(2.5::float8), "
    "(floor(extract(epoch from date '1995-01-01')/86400)*86400)::text",
    "SELECT floor(l_extendedprice)::text, ceil(l_tax)::text, trunc(l_extendedprice, 1)::text "
    "FROM tpch.lineitem ORDER BY l_orderkey, l_linenumber LIMIT 5",
    # Output names DataFusion would give twice (it names a cast after its operand).
    "SELECT 0.1 + 0.2, 0.1::float8 + 0.2::float8, o_totalprice, o_totalprice::float8, "
    "-o_totalprice, -(o_totalprice::float8) FROM tpch.orders ORDER BY o_orderkey LIMIT 2",
    "SELECT pg_typeof(1::int4)::text, pg_typeof('a'::text)::text, pg_typeof(1.5::numeric)::text, "
    "pg_typeof(now())::text, pg_typeof(o_orderdate)::text, pg_typeof(o_totalprice)::text, "
    "pg_typeof(o_orderkey)::text FROM tpch.orders LIMIT 1",
    # PostgreSQL's date/time templates (to_char once printed the template itself).
    "SELECT to_char(date '2024-03-05', 'YYYY-MM-DD'), to_char(timestamp '2024-03-05 14:07:09', "
    "'YYYY-MM-DD HH24:MI:SS'), to_char(timestamp '2024-03-05 14:07:09', 'DD Mon YYYY HH12:MI AM'), "
    "to_char(date '2024-03-05', 'FMMM/FMDD/YY \"Q\"'), to_date('2024-03-05', 'YYYY-MM-DD')",
    "SELECT to_char(o_orderdate, 'YYYY-MM') AS m, count(*) FROM tpch.orders GROUP BY 1 ORDER BY 1",
    "SELECT extract(year from o_orderdate) AS y, count(*), sum(date_part('month', o_orderdate)) "
    "FROM tpch.orders GROUP BY 1 ORDER BY 1",
    "SELECT NULL::oid IN (SELECT oid FROM pg_namespace), 5 IN (SELECT oid FROM pg_namespace WHERE false), "
    "5 NOT IN (SELECT oid FROM pg_namespace WHERE false), 11 IN (SELECT oid FROM pg_namespace), "
    "11 NOT IN (SELECT oid FROM pg_namespace), true IN (SELECT true) IN (SELECT false)",
    "SELECT n_name, EXISTS (SELECT 1 FROM tpch.supplier s WHERE s.s_nationkey = n.n_nationkey "
    "AND s.s_acctbal > 9000) AS rich, NOT EXISTS (SELECT 1 FROM tpch.supplier s "
    "WHERE s.s_nationkey = n.n_nationkey AND s.s_acctbal < -900) AS solvent FROM tpch.nation n ORDER BY 1",
    # Subqueries in a DISTINCT ON select list; an oid with an integer constant stays an oid.
    "SELECT DISTINCT ON (a.attnum) a.attname, (SELECT nspname FROM pg_namespace WHERE oid = t.typnamespace), "
    "coalesce(t.typrelid, 0) AS rel FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = 'tpch.nation'::regclass AND a.attnum > 0 ORDER BY a.attnum",
    "SELECT DISTINCT ON (n_regionkey) n_regionkey, upper(n_name) FROM tpch.nation ORDER BY n_regionkey, n_name",
    # Objects in words (psql's \dx+ lists an extension's members so); encodings by number.
    "SELECT pg_describe_object(classid, objid, objsubid) FROM pg_catalog.pg_depend "
    "WHERE refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass ORDER BY 1",
    "SELECT pg_describe_object('pg_class'::regclass, 'tpch.nation'::regclass, 0), "
    "pg_describe_object('pg_class'::regclass, 'tpch.nation'::regclass, 2), "
    "pg_describe_object(2615, 'tpch'::regnamespace, 0), pg_describe_object(1247, 'tpch.nation'::regtype, 0), "
    "pg_describe_object(1247, 23, 0), pg_describe_object(1259, 'pg_class'::regclass, 0), "
    "pg_describe_object(1255, 'now'::regproc, 0), pg_describe_object(2606, "
    "(SELECT oid FROM pg_constraint WHERE conname = 'nation_pkey'), 0)",
    "SELECT i, pg_encoding_to_char(i) FROM generate_series(0, 42) AS i",
    # An ACL's privileges (pgAdmin's privileges dialog); a CASE of name and text is its
    # ELSE's type, as PostgreSQL resolves it.
    "SELECT (d).grantee = 0, (d).privilege_type, (d).is_grantable FROM "
    "(SELECT aclexplode('{=r/postgres,postgres=arw*/postgres}'::aclitem[]) AS d) x",
    "SELECT count(*) FROM (SELECT aclexplode(relacl) FROM pg_class "
    "WHERE oid = 'tpch.nation'::regclass) x",
    "SELECT CASE WHEN t.typname IS NOT NULL THEN 'a' || '.' || quote_ident(t.typname) ELSE t.typname END, "
    "CASE WHEN t.oid > 0 THEN t.typname ELSE 'x'::text END FROM pg_type t WHERE t.oid = 23",
    # An empty array literal beside an array in coalesce is that array's empty value
    # (psycopg's CompositeInfo).
    "SELECT coalesce(a.fnames, '{}') FROM (SELECT array_agg(attname) AS fnames FROM pg_attribute "
    "WHERE attrelid = 'tpch.nation'::regclass AND attnum > 0) a",
    "SELECT coalesce(NULL::text[], '{}'), coalesce(ARRAY['a'], '{}')",
    # quote_ident quotes reserved keywords.
    "SELECT quote_ident('default'), quote_ident('user'), quote_ident('name'), quote_ident('Abc')",
    "SELECT regexp_split_to_table('a,b,,c', ',')",
    "SELECT x FROM regexp_split_to_table('one two  three', '\\s+') AS x",
    "SELECT * FROM regexp_split_to_table('aXbxc', 'x', 'i')",
    "SELECT regexp_split_to_array('hello world', '\\s*')",
    "SELECT n_name, regexp_split_to_array(n_name, 'A') FROM tpch.nation WHERE n_nationkey < 4 ORDER BY 1",
    "SELECT count(*) FROM pg_catalog.pg_policies",
    "SELECT schemaname, tablename, policyname, cmd FROM pg_policies WHERE schemaname = 'tpch'",
    "SELECT count(*), min(datname) FROM pg_catalog.pg_stat_activity WHERE pid = pg_backend_pid()",
    "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
    "WHERE t.relname = 'partsupp' ORDER BY 1",
    # OID-alias types: the object's name in text, typed regclass / regtype / regproc /
    # regprocedure; `::oid` a number again.
    "SELECT 'pg_class'::regclass, 'int4'::regtype, 'int4in'::regproc, "
    "'int4pl(integer,integer)'::regprocedure, 'int4'::regtype::oid, to_regclass('tpch.nation')",
    "SELECT typname, typinput, typreceive, typsubscript FROM pg_catalog.pg_type "
    "WHERE oid IN (23, 1007) ORDER BY 1",
    "SELECT c.oid::regclass FROM pg_catalog.pg_class c WHERE c.relname = 'nation'",
    # Expressions over catalog columns keep PostgreSQL's types.
    "SELECT nullif(relkind, 'x') AS k, CASE WHEN relname = 'x' THEN '-' ELSE relname END AS n, "
    "coalesce(relname, 'x') AS c, relkind::text AS t FROM pg_catalog.pg_class "
    "WHERE relname = 'nation'",
    "SELECT min(relname), max(relkind), array_agg(relname ORDER BY relname) FROM pg_catalog.pg_class "
    "WHERE relname IN ('nation', 'region')",
    "SELECT ARRAY(SELECT relname FROM pg_catalog.pg_class WHERE false) AS e, "
    "ARRAY(SELECT relname FROM pg_catalog.pg_class WHERE relname = 'nation') AS n",
    # Catalog columns NOT NULL where PostgreSQL's are (PgJDBC's isNullable reads this).
    "SELECT a.attname, a.attnotnull FROM pg_catalog.pg_attribute a WHERE a.attrelid IN "
    "('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_namespace'::regclass, "
    "'pg_catalog.pg_attribute'::regclass) AND a.attnum > 0 ORDER BY a.attrelid, a.attnum",
    # A table's columns with their alignment, and its system columns (attnum < 0).
    "SELECT attname, atttypid, attlen, attnum, attalign, attbyval, attstorage, attnotnull "
    "FROM pg_catalog.pg_attribute WHERE attrelid = 'tpch.nation'::regclass ORDER BY attnum",
    "SELECT c.relname, c.relhasindex, c.relreplident FROM pg_catalog.pg_class c "
    "WHERE c.oid IN ('pg_class'::regclass, 'pg_tables'::regclass)",
    # Functions in FROM that are not table functions (Grafana, pgAdmin), SQL-syntax
    # functions and niladic current_schema (Rails), untyped LIMIT literals (asyncpg).
    "SELECT s[i], i FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s ORDER BY 2",
    "SELECT x FROM upper('abc') x",
    "SELECT st.name, st.setting FROM pg_catalog.pg_show_all_settings() st "
    "WHERE st.name = 'search_path'",
    "SELECT current_schema, substring('fillfactor=70,x=1' FROM 'fillfactor=([0-9]*)'), "
    "substring('abc' FROM 'b'), trim(' a '), position('b' IN 'abc')",
    "SELECT n_name FROM tpch.nation ORDER BY 1 LIMIT '3' OFFSET '1'",
    # information_schema's character_data columns are varchar, as PostgreSQL reports them.
    "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
    "WHERE table_schema = 'tpch' AND table_name = 'region' ORDER BY ordinal_position",
    # Integer constants in catalog SQL are int4 inside expressions too; ORDER BY 1 is still
    # a position (asyncpg's recursive type introspection, Grafana's version number).
    "WITH RECURSIVE r(depth) AS (SELECT 0 UNION ALL SELECT depth + 1 FROM r WHERE depth < 3) "
    "SELECT depth FROM r ORDER BY 1",
    "SELECT relname, 1 + 1 AS two, -2 * 3 AS six, 10 - relnatts AS left_over "
    "FROM pg_catalog.pg_class WHERE relname = 'pg_type' ORDER BY 1, 2",
    # A table's row type by its qualified name (pgx's LoadType).
    "SELECT 'tpch.nation'::regtype::oid = (SELECT reltype FROM pg_catalog.pg_class "
    "WHERE oid = 'tpch.nation'::regclass), 'tpch.nation'::regtype",
    # Correlated scalar subqueries with LIMIT (pgAdmin's table list).
    "SELECT c.relname, (SELECT count(1) FROM pg_catalog.pg_inherits WHERE inhrelid = c.oid "
    "LIMIT 1) AS is_inherits, (SELECT a.attname FROM pg_catalog.pg_attribute a "
    "WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum DESC LIMIT 1) AS last_column "
    "FROM pg_catalog.pg_class c WHERE c.relnamespace = 'tpch'::regnamespace "
    "AND c.relkind = 'r' ORDER BY 1",
    # Catalog views and functions tools read (pgAdmin, DBeaver, Metabase, PgJDBC).
    "SELECT count(*) FROM pg_catalog.pg_replication_slots",
    "SELECT count(*) FROM information_schema.character_sets",
    "SELECT count(*) FROM pg_catalog.pg_auth_members",
    "SELECT count(*) > 1000 FROM pg_catalog.pg_timezone_names",
    "SELECT pid = pg_backend_pid(), gss_authenticated, encrypted FROM pg_catalog.pg_stat_gssapi",
    "SELECT txid_current() > 0, pg_postmaster_start_time() < now()",
    # Casts: information_schema's domains, long type names, and the columns they name.
    "SELECT 1::information_schema.cardinal_number, 'a'::information_schema.character_data, "
    "'b'::information_schema.sql_identifier",
    "SELECT '1'::integer, '1'::bigint, 'a'::varchar, '{1}'::int2[], '{a}'::text[], "
    "'1.5'::numeric(5,2), 'x'::pg_catalog.text, '1'::double precision, 'a'::character varying(3)",
    "SELECT '2020-01-01 10:00:00'::timestamptz, now() > '2020-01-01'::timestamptz",
    "SELECT date '2020-01-01' + interval '2 hours', interval '90 minutes' + date '2020-01-01', "
    "date '2020-01-05' + 3",
    "SELECT generate_subscripts(ARRAY[4,5,6], 1) AS s",
    # Row counts as the files say them, as PostgreSQL's after ANALYZE (Power BI, Metabase).
    "SELECT c.relname, c.reltuples FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname = 'tpch' AND c.relkind = 'r' ORDER BY 1",
    "SELECT format_type(1043, 7), format_type(1184, 2), format_type(1042, 9), "
    "format_type(1266, NULL), format_type(1015, -1), format_type(1014, NULL), format_type(1562, 4)",
]


def test_table_sizes_are_their_files(sluice):
    """pg_relation_size & co. and pg_database_size: the bytes of the tables' files (sluice
    has no TOAST and no index pages); a table the session may not read has no size."""
    files = {t.name: sum(f.stat().st_size for f in t.rglob("*") if f.is_file())
             for t in (sluice.data_dir / "tpch").iterdir() if t.is_dir()}
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = dict(conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'tpch' AND c.relkind = 'r'").fetchall())
        assert got == files and all(v > 0 for v in got.values())
        same = conn.execute(
            "SELECT pg_table_size('tpch.lineitem'), pg_total_relation_size('tpch.lineitem'), "
            "pg_indexes_size('tpch.lineitem'), pg_relation_size('tpch.nation_pkey'), "
            "relpages FROM pg_class WHERE oid = 'tpch.lineitem'::regclass").fetchone()
        assert same == (files["lineitem"], files["lineitem"], 0, 0, -(-files["lineitem"] // 8192))
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        assert total >= sum(files.values())
        assert conn.execute("SELECT n_live_tup FROM pg_stat_user_tables "
                            "WHERE relname = 'nation'").fetchone() == (25,)


def test_activity_counters_and_system_columns(sluice, reference):
    """pg_stat_get_* counters are each server's own: sluice keeps none (0, never analyzed),
    typed as PostgreSQL's; xmin, the writing transaction, is an xid (bootstrap rows: 1)."""
    sql = ("SELECT pg_stat_get_numscans(c.oid), pg_stat_get_tuples_returned(c.oid), "
           "pg_stat_get_tuples_inserted(c.oid), pg_stat_get_last_analyze_time(c.oid), "
           "pg_stat_get_live_tuples(c.oid), c.xmin FROM pg_catalog.pg_class c "
           "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
           "WHERE n.nspname = 'tpch' AND c.relname = 'nation'")
    with psycopg.connect(sluice.dsn(dbname=REFERENCE_DB), autocommit=True) as ours, \
            psycopg.connect(reference, autocommit=True) as theirs:
        got, want = ours.execute(sql), theirs.execute(sql)
        assert [d.type_code for d in got.description] == [d.type_code for d in want.description]
        assert got.fetchall() == [(0, 0, 0, None, 25, "1")]


def test_set_operations_over_typed_catalog_columns_answer(sluice, reference):
    """A union of catalog expressions answers PostgreSQL's rows (typing a branch's column
    once made DataFusion's physical union disagree with the logical plan: XX000)."""
    sql = ("SELECT DISTINCT tt.name FROM (SELECT CAST(c.relname AS pg_catalog.text) AS name "
           "FROM pg_catalog.pg_class c WHERE c.relname = 'pg_type' UNION ALL "
           "SELECT CAST(n.nspname AS pg_catalog.text) FROM pg_catalog.pg_namespace n "
           "WHERE n.nspname = 'public') tt ORDER BY 1")
    with psycopg.connect(sluice.dsn(dbname=REFERENCE_DB), autocommit=True) as ours, \
            psycopg.connect(reference, autocommit=True) as theirs:
        assert ours.execute(sql).fetchall() == theirs.execute(sql).fetchall()


def test_explain_answers_a_query_plan_column(sluice, reference):
    """EXPLAIN on a pg session is PostgreSQL's one text column, a row per plan line (pgAdmin
    validates a filter so); the plan is sluice's own, and reads nothing."""
    sql = "EXPLAIN SELECT * FROM tpch.nation WHERE n_regionkey = 1"
    with psycopg.connect(sluice.dsn(dbname=REFERENCE_DB), autocommit=True) as ours, \
            psycopg.connect(reference, autocommit=True) as theirs:
        got, want = ours.execute(sql), theirs.execute(sql)
        assert [(d.name, d.type_code) for d in got.description] == \
            [(d.name, d.type_code) for d in want.description] == [("QUERY PLAN", 25)]
        lines = [r[0] for r in got.fetchall()]
        assert lines[0].startswith("FilterExec: n_regionkey@2 = 1"), lines
        assert any("DataSourceExec" in line for line in lines), lines
        # Catalog tables resolve under EXPLAIN as in the query itself.
        assert ours.execute("EXPLAIN SELECT * FROM pg_class").fetchall()
        # PostgreSQL's options list, as pgAdmin's and DBeaver's plan views send it: FORMAT
        # JSON answers one json value in PostgreSQL's shape.
        sql = ("EXPLAIN (FORMAT JSON, ANALYZE false, VERBOSE false, COSTS false, BUFFERS false, "
               "SETTINGS false, SUMMARY false) SELECT n_name FROM tpch.nation WHERE n_regionkey = 1")
        got, want = ours.execute(sql), theirs.execute(sql)
        assert [(d.name, d.type_code) for d in got.description] == \
            [(d.name, d.type_code) for d in want.description] == [("QUERY PLAN", 114)]
        (plan,), = got.fetchall()
        (reference_plan,), = want.fetchall()
        assert isinstance(plan, list) and isinstance(reference_plan, list)
        top = plan[0]["Plan"]
        assert top["Node Type"].endswith("Exec"), top
        nodes, stack = [], [top]
        while stack:
            node = stack.pop()
            nodes.append(node["Node Type"])
            stack.extend(node.get("Plans", []))
        assert "DataSourceExec" in nodes, nodes
        assert [r[0] for r in ours.execute("EXPLAIN (FORMAT TEXT, COSTS off) SELECT 1")] == \
            [r[0] for r in ours.execute("EXPLAIN SELECT 1")]
        # Formats and options sluice does not have are refused clearly; the session goes on.
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="use TEXT or JSON"):
            ours.execute("EXPLAIN (FORMAT YAML) SELECT 1")
        with pytest.raises(psycopg.errors.SyntaxError, match='unrecognized EXPLAIN option "colour"'):
            ours.execute("EXPLAIN (COLOUR true) SELECT 1")
        with pytest.raises(psycopg.errors.SyntaxError):
            theirs.execute("EXPLAIN (COLOUR true) SELECT 1")
        assert ours.execute("SELECT 1").fetchall() == [(1,)]


def test_oid_alias_types_in_binary_as_postgresql(sluice, reference):
    """A binary-format client gets a regclass / regproc as PostgreSQL sends it: the OID."""
    sql = ("SELECT 'pg_class'::regclass, t.typinput FROM pg_catalog.pg_type t "
           "WHERE t.oid = 23")
    with psycopg.connect(sluice.dsn(dbname=REFERENCE_DB), autocommit=True) as ours, \
            psycopg.connect(reference, autocommit=True) as theirs:
        got = ours.cursor(binary=True).execute(sql)
        want = theirs.cursor(binary=True).execute(sql)
        assert [d.type_code for d in got.description] == [2205, 24]
        assert [d.type_code for d in got.description] == [d.type_code for d in want.description]
        assert got.fetchall() == want.fetchall()


@pytest.mark.parametrize("sql", SAME_AS_POSTGRESQL)
def test_answers_as_postgresql(sluice, reference, sql):
    with psycopg.connect(sluice.dsn(dbname=REFERENCE_DB), autocommit=True) as ours, \
            psycopg.connect(reference, autocommit=True) as theirs:
        got, want = ours.execute(sql), theirs.execute(sql)
        assert [d.name for d in got.description] == [d.name for d in want.description]
        assert [d.type_code for d in got.description] == [d.type_code for d in want.description]
        assert got.fetchall() == want.fetchall()

"""More real PostgreSQL clients, each doing what a new user does first — connect, list
schemas and tables, describe a table, preview rows, run a parameterized query, read
through a cursor, survive an error — against sluice and against PostgreSQL holding the same
tables (the `reference` fixture), with the answers compared:

- pg8000 (pure-Python driver; its own protocol code, unnamed prepared statements),
- psycopg2 (libpq; client-side parameters, a named server-side cursor),
- the ADBC PostgreSQL driver (libpq, binary COPY-free reads, its catalog SQL),
- postgres.js (npm `postgres`; pipelined extended protocol, cursors via Execute limits),
- Perl DBD::Pg (Debian libdbd-pg-perl; DBI's catalog calls).
"""
import json
import os
import pathlib
import subprocess

import adbc_driver_postgresql.dbapi as adbc_pg
import pg8000.native
import psycopg2
import pytest

from conftest import REFERENCE_DB

HERE = pathlib.Path(__file__).resolve().parent


def both(sluice, run):
    """`run(host, port, user, password)` against sluice and against the reference."""
    ours = run(sluice.pg_host, sluice.pg_port, "tester", sluice.token)
    theirs = run("127.0.0.1", 5432, "postgres", "")
    return ours, theirs


def test_pg8000(sluice, reference):
    def run(host, port, user, password):
        conn = pg8000.native.Connection(user, host=host, port=port, database=REFERENCE_DB,
                                        password=password or None, timeout=60)
        try:
            out = {
                "schemas": conn.run("SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = 'tpch'"),
                "tables": conn.run("SELECT table_name FROM information_schema.tables "
                                   "WHERE table_schema = :s ORDER BY 1", s="tpch"),
                "columns": conn.run("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                                    "WHERE table_schema = 'tpch' AND table_name = 'nation' ORDER BY ordinal_position"),
                "preview": conn.run("SELECT * FROM tpch.nation ORDER BY n_nationkey LIMIT 3"),
                "preview_types": [(c["name"], c["type_oid"]) for c in conn.columns],
                "param": conn.run("SELECT n_name, n_regionkey FROM tpch.nation WHERE n_regionkey = :r "
                                  "AND n_name > :n ORDER BY n_name", r=1, n="B"),
                "typed": conn.run("SELECT o_orderdate, o_totalprice, o_orderkey FROM tpch.orders "
                                  "WHERE o_orderkey = :k", k=1),
            }
            with pytest.raises(pg8000.native.DatabaseError) as e:
                conn.run("SELECT * FROM tpch.no_such_table")
            out["error"] = e.value.args[0]["C"]
            out["after_error"] = conn.run("SELECT count(*) FROM tpch.region")
            return out
        finally:
            conn.close()

    ours, theirs = both(sluice, run)
    assert ours["tables"][0] == ["customer"] and ours["error"] == "42P01"
    assert ours == theirs


def test_psycopg2(sluice, reference):
    def run(host, port, user, password):
        conn = psycopg2.connect(host=host, port=port, user=user, password=password,
                                dbname=REFERENCE_DB, sslmode="disable", connect_timeout=30)
        try:
            cur = conn.cursor()
            out = {}
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                        "ORDER BY 1", ("tpch",))
            out["tables"] = cur.fetchall()
            cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'tpch' AND table_name = %(t)s ORDER BY ordinal_position",
                        {"t": "orders"})
            out["columns"] = cur.fetchall()
            cur.execute("SELECT * FROM tpch.orders ORDER BY o_orderkey LIMIT 3")
            out["preview"] = [tuple(str(v) for v in r) for r in cur.fetchall()]
            out["preview_types"] = [(d.name, d.type_code) for d in cur.description]
            cur.execute("SELECT n_name FROM tpch.nation WHERE n_nationkey = ANY(%s) ORDER BY 1", ([1, 2, 3],))
            out["any"] = cur.fetchall()
            # A named (server-side) cursor: DECLARE … CURSOR WITHOUT HOLD in a transaction,
            # then FETCH FORWARD itersize at a time.
            named = conn.cursor(name="orders_scan")
            named.itersize = 100
            named.execute("SELECT o_orderkey FROM tpch.orders WHERE o_orderkey < %s ORDER BY 1", (2000,))
            keys = [r[0] for r in named]
            named.close()
            conn.commit()
            out["named"] = (len(keys), keys[:3], keys[-1])
            try:
                cur.execute("SELECT * FROM tpch.no_such_table")
            except psycopg2.Error as e:
                out["error"] = e.pgcode
            conn.rollback()
            cur.execute("SELECT count(*) FROM tpch.region")
            out["after_error"] = cur.fetchall()
            return out
        finally:
            conn.close()

    ours, theirs = both(sluice, run)
    assert ours["named"][0] > 400 and ours["error"] == "42P01"
    assert ours == theirs


def test_adbc_postgresql(sluice, reference):
    def run(host, port, user, password):
        auth = f"{user}:{password}@" if password else f"{user}@"
        with adbc_pg.connect(f"postgresql://{auth}{host}:{port}/{REFERENCE_DB}?sslmode=disable") as conn:
            objects = conn.adbc_get_objects(depth="tables", db_schema_filter="tpch").read_all().to_pylist()
            tables = sorted(t["table_name"] for c in objects for s in c["catalog_db_schemas"] or []
                            for t in s["db_schema_tables"] or [])
            schema = conn.adbc_get_table_schema("nation", db_schema_filter="tpch")
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM tpch.nation ORDER BY n_nationkey LIMIT 3")
                preview = cur.fetch_arrow_table()
                cur.execute("SELECT n_name FROM tpch.nation WHERE n_regionkey = $1 ORDER BY 1", (2,))
                param = cur.fetchall()
                cur.execute("SELECT o_orderdate, o_totalprice FROM tpch.orders WHERE o_orderkey = $1", (1,))
                typed = cur.fetch_arrow_table()
            return {"tables": tables, "schema": str(schema), "preview": preview.to_pylist(),
                    "preview_schema": str(preview.schema), "param": param,
                    "typed": typed.to_pylist(), "typed_schema": str(typed.schema)}

    ours, theirs = both(sluice, run)
    assert "lineitem" in ours["tables"] and len(ours["param"]) == 5
    assert ours == theirs


def test_postgres_js(sluice, reference):
    node_dir = HERE / "node"
    assert (node_dir / "node_modules" / "postgres").exists(), "run ./test.sh (npm ci in conformance/node)"

    def run(host, port, user, password):
        env = dict(os.environ, PGHOST=host, PGPORT=str(port), PGUSER=user, PGPASSWORD=password,
                   PGDATABASE=REFERENCE_DB)
        done = subprocess.run(["node", "postgresjs.mjs"], cwd=node_dir, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    ours, theirs = both(sluice, run)
    assert ours["cursor"]["rows"] > 0 and ours["cursor"]["batches"] > 1
    assert ours["error"] == "42P01"
    assert ours == theirs


def test_perl_dbd_pg(sluice, reference):
    script = HERE / "perl" / "dbd_pg.pl"

    def run(host, port, user, password):
        dsn = f"dbi:Pg:dbname={REFERENCE_DB};host={host};port={port};sslmode=disable"
        done = subprocess.run(["perl", str(script), dsn, user, password], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    ours, theirs = both(sluice, run)
    assert ours["primary_key"] == ["l_orderkey", "l_linenumber"]
    assert ours["error"] == "42P01"
    assert ours == theirs

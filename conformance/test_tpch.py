"""The 22 TPC-H queries through each real pg client, against DuckDB's answers."""
import asyncio
import os
import pathlib
import subprocess
import tempfile

import asyncpg
import psycopg
import pytest

from tpch_answers import QUERIES, assert_matches, query

HERE = pathlib.Path(__file__).resolve().parent
JDBC_JAR = "/usr/share/java/postgresql.jar"


@pytest.mark.parametrize("n", QUERIES)
def test_psql(sluice, n):
    sep = "\x1f"
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", sep, "-v", "ON_ERROR_STOP=1", "-c", query(n), sluice.dsn()],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split(sep) for line in out.stdout.splitlines()]
    assert_matches(n, rows)


@pytest.mark.parametrize("n", QUERIES)
def test_psycopg_text(sluice, n):
    with psycopg.connect(sluice.dsn()) as conn:  # autocommit off: psycopg sends BEGIN first
        rows = conn.execute(query(n)).fetchall()
    assert_matches(n, rows)


@pytest.mark.parametrize("n", QUERIES)
def test_psycopg_binary(sluice, n):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        with conn.cursor(binary=True) as cur:  # binary results: numeric, date, int8 …
            rows = cur.execute(query(n)).fetchall()
    assert_matches(n, rows)


@pytest.mark.parametrize("n", QUERIES)
def test_asyncpg(sluice, n):
    async def run():
        conn = await asyncpg.connect(host=sluice.pg_host, port=sluice.pg_port, user="tester",
                                     password=sluice.token, database="default", ssl=False)
        try:
            return await conn.fetch(query(n))
        finally:
            await conn.close()

    rows = asyncio.run(run())
    assert_matches(n, [tuple(r.values()) for r in rows])


@pytest.fixture(scope="module")
def jdbc_results(sluice):
    """Compile and run the PgJDBC driver program once; it writes one file per query."""
    assert os.path.exists(JDBC_JAR), f"{JDBC_JAR} missing: install libpostgresql-jdbc-java"
    build = tempfile.mkdtemp(prefix="sluice-jdbc-")
    subprocess.run(["javac", "-d", build, str(HERE / "jdbc" / "TpchJdbc.java")], check=True, timeout=300)
    out = pathlib.Path(tempfile.mkdtemp(prefix="sluice-jdbc-out-"))
    url = f"jdbc:postgresql://{sluice.pg_host}:{sluice.pg_port}/default?sslmode=disable"
    run = subprocess.run(
        ["java", "-cp", f"{build}:{JDBC_JAR}", "TpchJdbc", url, "tester", sluice.token,
         str(HERE / "tpch" / "queries"), str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return out


def _tsv(path):
    return [[None if c == "\\N" else c for c in line.split("\t")] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("n", QUERIES)
def test_pgjdbc(jdbc_results, n):
    error = jdbc_results / f"q{n}.error"
    assert not error.exists(), error.read_text()
    assert_matches(n, _tsv(jdbc_results / f"q{n}.tsv"))


def test_pgjdbc_prepared_statement(jdbc_results):
    assert _tsv(jdbc_results / "prepared.tsv") == [["GERMANY", "3"]]


# Joins whose key reads two tables on one side (`r.k = n.a + s.b`): DataFusion 55's
# eliminate_cross_join dropped such a key and returned rows that do not satisfy it
# (planner/src/join_keys.rs). Answers from DuckDB over the same Parquet files.
SPANNING_JOINS = [
    "SELECT count(*), sum(n.n_nationkey), sum(s.s_suppkey) FROM tpch.nation n "
    "JOIN tpch.supplier s ON s.s_suppkey <= 20 "
    "JOIN tpch.region r ON r.r_regionkey = n.n_regionkey AND r.r_regionkey = (n.n_nationkey + s.s_nationkey) % 5",
    "SELECT count(*) FROM tpch.nation n, tpch.supplier s, tpch.region r "
    "WHERE r.r_regionkey = n.n_regionkey AND r.r_regionkey = (n.n_nationkey + s.s_nationkey) % 5",
    "SELECT count(*), min(c.c_custkey) FROM tpch.customer c JOIN tpch.nation n ON c.c_nationkey = n.n_nationkey "
    "JOIN tpch.orders o ON o.o_custkey = c.c_custkey + n.n_regionkey",
]


@pytest.mark.parametrize("sql", SPANNING_JOINS)
def test_join_key_over_two_tables_matches_duckdb(sluice, sql):
    import duckdb
    db = duckdb.connect()
    db.execute("CREATE SCHEMA tpch")
    for table in ["nation", "supplier", "region", "customer", "orders"]:
        db.execute(f"CREATE VIEW tpch.{table} AS SELECT * FROM "
                   f"read_parquet('{sluice.data_dir}/tpch/{table}/*.parquet')")
    want = [tuple(int(v) if v is not None else None for v in r) for r in db.execute(sql).fetchall()]
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        got = [tuple(int(v) if v is not None else None for v in r) for r in conn.execute(sql).fetchall()]
    assert want[0][0] > 0
    assert got == want

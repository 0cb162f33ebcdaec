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

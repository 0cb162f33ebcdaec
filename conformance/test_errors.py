"""SQL mistakes get the right SQLSTATE, never XX000, and the session stays usable."""
import subprocess

import asyncpg
import asyncio
import psycopg
import pytest

CASES = [
    ("selec 1", "42601"),                                   # syntax error
    ("select * from tpch.no_such_table", "42P01"),          # undefined table
    ("select no_such_column from tpch.nation", "42703"),    # undefined column
    ("select 1 / 0", "22012"),                              # division by zero
    ("select n_nationkey / 0 from tpch.nation", "22012"),   # … found while executing on a worker
    ("select no_such_function(1)", "42883"),                # undefined function
    ("select 'abc'::int", "22P02"),                         # invalid text representation
    ("listen some_channel", "0A000"),                       # not supported
    ("insert into tpch.nation values (99, 'X', 0, 'x')", "25006"),  # read-only warehouse
    ("select n_nationkey from tpch.nation a, tpch.nation b", "42702"),  # ambiguous column
    # Integer arithmetic that overflows is an error, as in PostgreSQL, not a wrapped
    # value (2147483647::int4 + 1 was once -2147483648).
    ("select 2147483647::int4 + 1", "22003"),
    ("select 9223372036854775807 * 2", "22003"),
    ("select n_nationkey + 9223372036854775807 from tpch.nation", "22003"),  # … on a worker
]


@pytest.mark.parametrize("sql,sqlstate", CASES)
def test_extended_protocol_error_codes(sluice, sql, sqlstate):
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(sql)
        assert err.value.sqlstate == sqlstate, err.value
        assert err.value.sqlstate != "XX000"
        # The session is still usable.
        assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)


@pytest.mark.parametrize("sql,sqlstate", CASES)
def test_simple_protocol_error_codes(sluice, sql, sqlstate):
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-c", sql, "-c", "select 42", sluice.dsn()],
        capture_output=True, text=True, timeout=60,
    )
    assert f"ERROR:  {sqlstate}:" in out.stderr, out.stderr
    assert out.stdout.strip() == "42"  # psql went on with the next command on the same session


# Functions refusing a value: the statement's mistake, answered with PostgreSQL's SQLSTATE
# for the same call (the reference: PostgreSQL with the same tables), never XX000. Each
# case: sluice's statement, PostgreSQL's where its spelling differs (None: the same), and
# whether only the SQLSTATE class must match (PostgreSQL has a narrower code).
FUNCTION_ERRORS = [
    ("select chr(-1)", None, False),
    ("select split_part('a,b', ',', 0)", None, False),
    ("select decode('zz', 'hex')", None, False),
    ("select date_trunc('foo', now())", None, False),
    ("select make_date(2020, 13, 1)", None, False),
    ("select to_timestamp(1e30)", None, False),
    ("select 'x' ~ '['", None, False),
    ("select regexp_match('a', '(')", None, False),
    ("select substr('abc', 1, -1)", None, True),  # PostgreSQL: 22011 substring_error
    # A value too large to make: refused before it is made (PostgreSQL's limit is 1 GB,
    # DataFusion's 2 GiB), in the gateway (nation is a small table) and on a worker.
    ("select repeat(n_comment, 30000000) from tpch.nation", None, False),
    ("select repeat(l_comment, 80000000) from tpch.lineitem", None, False),
    ("select lpad('x', 3000000000)", "select lpad('x', 2000000000)", False),
]


@pytest.mark.parametrize("sql,postgres_sql,class_only", FUNCTION_ERRORS)
def test_function_errors_as_postgresql_answers_them(sluice, reference, sql, postgres_sql, class_only):
    with psycopg.connect(reference, autocommit=True) as pg:
        with pytest.raises(psycopg.Error) as want:
            pg.execute(postgres_sql or sql).fetchall()
    with psycopg.connect(sluice.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as got:
            conn.execute(sql).fetchall()
        assert got.value.sqlstate != "XX000", got.value
        if class_only:
            assert got.value.sqlstate[:2] == want.value.sqlstate[:2], (got.value, want.value)
        else:
            assert got.value.sqlstate == want.value.sqlstate, (got.value, want.value)
        assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)


def test_function_errors_over_flight_sql_are_invalid_argument(sluice):
    """The same mistakes through Flight SQL: INVALID_ARGUMENT, not INTERNAL."""
    import adbc_driver_flightsql as fs
    import adbc_driver_flightsql.dbapi as flight_sql
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {sluice.token}"}
    with flight_sql.connect(f"grpc://{sluice.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        for sql, _, _ in FUNCTION_ERRORS:
            with conn.cursor() as cur:
                with pytest.raises(Exception) as err:
                    cur.execute(sql)
                    cur.fetchall()
                # The gRPC code (tonic words it "Client specified an invalid argument").
                assert "INVALID_ARGUMENT" in str(err.value).upper().replace(" ", "_"), (sql, err.value)


def test_error_inside_transaction_then_rollback(sluice):
    with psycopg.connect(sluice.dsn()) as conn:  # autocommit off: BEGIN is sent first
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from tpch.nope")
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)


def test_asyncpg_describe_error_then_query(sluice):
    async def run():
        conn = await asyncpg.connect(host=sluice.pg_host, port=sluice.pg_port, user="t",
                                     password=sluice.token, database="default", ssl=False)
        try:
            with pytest.raises(asyncpg.exceptions.UndefinedColumnError):
                await conn.fetch("select nope from tpch.region")
            # Parameters of an inferred type, and fetchval (Execute with a row limit).
            name = await conn.fetchval("select r_name from tpch.region where r_regionkey = $1", 3)
            assert name == "EUROPE"
        finally:
            await conn.close()

    asyncio.run(run())


def test_wrong_password_is_refused_without_echoing_it(sluice):
    secret = "not-the-token-" + "x" * 20
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(sluice.dsn(password=secret))
    assert "password authentication failed" in str(err.value)
    assert secret not in str(err.value)
    assert secret not in sluice.log()


def test_malformed_protocol_messages_close_only_that_connection(sluice):
    """A broken message (impossible length, unknown type, a huge length that never comes)
    ends that connection with an error or a close; the server and other sessions carry on."""
    import socket
    import struct

    from pgraw import PgRaw

    def broken(payload):
        conn = PgRaw(sluice.pg_host, sluice.pg_port, "tester", sluice.token)
        conn.sock.settimeout(10)
        conn.sock.sendall(payload)
        received = b""
        try:
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        finally:
            conn.sock.close()
        return received

    # A length below the minimum of 4, and a message type that does not exist: the server
    # answers (pgwire reads the first as an empty query) or closes, and never crashes.
    broken(b"Q" + struct.pack("!i", 2))
    assert broken(b"!" + struct.pack("!i", 4))[:1] in (b"E", b"")
    # A length far beyond what is sent, then the client goes away.
    conn = PgRaw(sluice.pg_host, sluice.pg_port, "tester", sluice.token)
    conn.sock.sendall(b"Q" + struct.pack("!i", 1_000_000_000) + b"SELECT")
    conn.sock.close()
    with psycopg.connect(sluice.dsn(), autocommit=True) as other:
        assert other.execute("SELECT count(*) FROM tpch.region").fetchone() == (5,)

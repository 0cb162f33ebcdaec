"""Arrow Flight SQL: ADBC (the Go Flight SQL driver, as Python DB-API and ADBC calls) and
pyarrow.flight as a raw client, against a running `sluice serve`."""
import hashlib
import json
import pathlib
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import start_sluice
from oidc import AUDIENCE, OidcProvider
from tpch_answers import QUERIES, assert_matches, query

OTHER_TOKEN = "another-principal-token"


def workers_idle(server, timeout=20) -> bool:
    """Whether every worker is idle within `timeout` seconds (a cancelled query's slot freed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(w["running"] for w in server.health()["warehouses"][0]["workers"]):
            return True
        time.sleep(0.2)
    return False


def connect(server, token=None, **extra):
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token or server.token}", **extra}
    return flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True)


@pytest.fixture(scope="module")
def conn(sluice):
    with connect(sluice) as c:
        yield c


def test_info_table_types_and_objects(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "sluice"
    assert conn.adbc_get_table_types() == ["TABLE", "VIEW"]
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    (catalog,) = objects
    assert catalog["catalog_name"] == "sluice"
    schemas = {s["db_schema_name"]: s for s in catalog["catalog_db_schemas"]}
    tables = {t["table_name"]: t for t in schemas["tpch"]["db_schema_tables"]}
    assert set(tables) == {"customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"}
    columns = [c["column_name"] for c in tables["nation"]["table_columns"]]
    assert columns == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
    schema = conn.adbc_get_table_schema("nation", db_schema_filter="tpch")
    assert schema.names == columns


def test_basic_handshake_with_the_token_as_password(sluice):
    """The Go driver sends Basic credentials without base64 padding; the handshake answers
    with the bearer token it then uses on every call."""
    with flight_sql.connect(f"grpc://{sluice.flight}", autocommit=True,
                            db_kwargs={"username": "powerbi-user", "password": sluice.token}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM tpch.region")
            assert cur.fetchall() == [(5,)]
    with pytest.raises(adbc_driver_manager.Error) as refused:
        flight_sql.connect(f"grpc://{sluice.flight}", autocommit=True,
                           db_kwargs={"username": "powerbi-user", "password": "wrong"}).cursor().execute("SELECT 1")
    assert "(Unauthenticated" in str(refused.value) or "UNAUTHENTICATED" in str(refused.value)


def test_execute_with_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT n_name FROM tpch.nation WHERE n_regionkey = ? AND n_nationkey > ? ORDER BY n_name",
                    parameters=(1, 2))
        assert cur.fetchall() == [("CANADA",), ("PERU",), ("UNITED STATES",)]
        # The same prepared text with other values.
        cur.execute("SELECT count(*) FROM tpch.nation WHERE n_regionkey = ?", parameters=(3,))
        assert cur.fetchall() == [(5,)]


def test_large_table_as_arrow(conn, sluice):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM tpch.lineitem")
        table = cur.fetch_arrow_table()
    assert table.num_rows == 60175
    assert table.schema.field("l_comment").type == pa.string()
    # Same rows as the Parquet files sluice serves, read by pyarrow itself.
    files = sorted((pathlib.Path(sluice.data_dir) / "tpch" / "lineitem").glob("*.parquet"))
    import pyarrow.parquet as pq
    reference = pa.concat_tables([pq.read_table(f) for f in files])
    columns = ["l_orderkey", "l_linenumber", "l_extendedprice", "l_comment"]

    def rows(t):
        return sorted(zip(*(t.column(c).to_pylist() for c in columns)))

    assert rows(table) == rows(reference)


@pytest.mark.parametrize("n", QUERIES)
def test_tpch_through_adbc(conn, n):
    with conn.cursor() as cur:
        cur.execute(query(n))
        rows = cur.fetchall()
    assert_matches(n, rows)


def test_sql_errors_are_invalid_argument_or_not_found(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
            cur.execute("SELEC 1")
        assert "INVALID_ARGUMENT" in str(err.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
            cur.execute("SELECT * FROM tpch.nope")
        assert "NOT_FOUND" in str(err.value) and "nope" in str(err.value)
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT 1 / 0")
            cur.fetchall()
        assert "INVALID_ARGUMENT" in str(err.value) and "zero" in str(err.value).lower()
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]


def test_cancel_a_long_query(conn, sluice):
    errors = []
    with conn.cursor() as cur:
        def run():
            try:
                cur.execute("SELECT count(*) FROM tpch.lineitem a, tpch.lineitem b WHERE a.l_orderkey + b.l_partkey < 0")
                cur.fetchall()
            except Exception as e:  # the cancelled call raises
                errors.append(e)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(2)
        cur.adbc_cancel()
        worker.join(30)
        assert not worker.is_alive()
    assert errors and "cancel" in str(errors[0]).lower(), errors
    # The worker slot is freed and the server answers.
    assert workers_idle(sluice), sluice.health()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tpch.region")
        assert cur.fetchall() == [(5,)]


# --- pyarrow.flight as a raw client ------------------------------------------------------------

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(number, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def command(name, body: bytes) -> bytes:
    """A Flight SQL command: google.protobuf.Any{type_url, value}."""
    return field(1, f"type.googleapis.com/arrow.flight.protocol.sql.{name}".encode()) + field(2, body)


def options(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.fixture(scope="module")
def two_principals(tmp_path_factory):
    config = tmp_path_factory.mktemp("flight") / "sluice.toml"
    digest = hashlib.sha256(OTHER_TOKEN.encode()).hexdigest()
    config.write_text(f'[[auth.tokens]]\nname = "other"\nsha256 = "{digest}"\nroles = ["analyst"]\n\n'
                      '[[grants]]\nroles = ["analyst"]\nselect = ["tpch.nation"]\n')
    server = start_sluice("--config", str(config))
    yield server
    server.stop()


def test_raw_statement_query_and_ticket_replay(two_principals):
    server = two_principals
    client = flight.FlightClient(f"grpc://{server.flight}")
    descriptor = flight.FlightDescriptor.for_command(
        command("CommandStatementQuery", field(1, b"SELECT r_name FROM tpch.region ORDER BY r_regionkey")))
    info = client.get_flight_info(descriptor, options(server.token))
    assert info.schema.names == ["r_name"]
    (endpoint,) = info.endpoints
    assert endpoint.locations == []  # clients reuse their connection; never 0.0.0.0
    # Another principal may not run this principal's ticket.
    with pytest.raises(flight.FlightUnauthorizedError) as refused:
        client.do_get(endpoint.ticket, options(OTHER_TOKEN)).read_all()
    assert "another principal" in str(refused.value)
    table = client.do_get(endpoint.ticket, options(server.token)).read_all()
    assert table.column("r_name").to_pylist() == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
    # A statement ticket runs once.
    with pytest.raises(pa.ArrowException) as gone:
        client.do_get(endpoint.ticket, options(server.token)).read_all()
    assert "no such statement" in str(gone.value)


def test_cancel_flight_info_stops_a_running_statement(two_principals):
    server = two_principals
    client = flight.FlightClient(f"grpc://{server.flight}")
    token = options(server.token)
    long_query = b"SELECT count(*) FROM tpch.lineitem a, tpch.lineitem b WHERE a.l_orderkey + b.l_partkey < 0"
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(command("CommandStatementQuery", field(1, long_query))), token)
    # The reader runs in its own process: pyarrow turns a CANCELLED stream into an
    # interrupt of the process that reads it.
    script = (
        "import sys, pyarrow.flight as f\n"
        f"c = f.FlightClient('grpc://{server.flight}')\n"
        f"o = f.FlightCallOptions(headers=[(b'authorization', b'Bearer {server.token}')])\n"
        "try:\n"
        f"    c.do_get(f.Ticket({info.endpoints[0].ticket.ticket!r}), o).read_all()\n"
        "    print('completed')\n"
        "except BaseException as e:\n"
        "    print('error:', type(e).__name__, e)\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    (result,) = list(client.do_action(flight.Action("CancelFlightInfo", field(1, info.serialize())), token))
    assert result.body.to_pybytes() == b"\x08\x01"  # CancelFlightInfoResult{status: CANCELLED}
    out, _ = reader.communicate(timeout=30)
    # pyarrow reports a CANCELLED status as KeyboardInterrupt; the stream did not complete.
    assert out.startswith("error:") and ("cancel" in out.lower() or "KeyboardInterrupt" in out), out
    assert workers_idle(server), server.health()


def test_grants_through_flight(two_principals):
    server = two_principals
    with connect(server, OTHER_TOKEN) as conn:
        objects = conn.adbc_get_objects(depth="tables", db_schema_filter="tpch").read_all().to_pylist()
        tables = [t["table_name"] for s in objects[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert tables == ["nation"]
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM tpch.nation")
            assert cur.fetchall() == [(25,)]
            with pytest.raises(adbc_driver_manager.Error) as refused:
                cur.execute("SELECT * FROM tpch.nation n JOIN tpch.region r ON n.n_regionkey = r.r_regionkey")
            assert "(PermissionDenied" in str(refused.value) and "tpch.region" in str(refused.value)


def test_bad_input_gets_clear_errors(two_principals):
    server = two_principals
    client = flight.FlightClient(f"grpc://{server.flight}")
    token = options(server.token)
    unknown = flight.FlightDescriptor.for_command(field(1, b"type.googleapis.com/acme.Unknown") + field(2, b""))
    with pytest.raises(pa.ArrowException) as err:
        client.get_flight_info(unknown, token)
    assert "acme.Unknown" in str(err.value)
    truncated = flight.FlightDescriptor.for_command(command("CommandStatementQuery", field(1, b"SELECT 1"))[:-5])
    with pytest.raises(pa.ArrowException):
        client.get_flight_info(truncated, token)
    with pytest.raises(pa.ArrowException):
        client.do_get(flight.Ticket(b"\x0a\x05junk!"), token).read_all()
    # A prepared statement's ticket after ClosePreparedStatement.
    with connect(server) as conn, conn.cursor() as cur:
        cur.adbc_prepare("SELECT 1")
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
    no_auth = flight.FlightDescriptor.for_command(command("CommandStatementQuery", field(1, b"SELECT 1")))
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(no_auth)
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(no_auth, options("not-a-token"))
    # Writes and transactions: a clear read-only answer.
    update = flight.FlightDescriptor.for_command(command("CommandStatementUpdate", field(1, b"DELETE FROM tpch.nation")))
    with pytest.raises(pa.ArrowException) as err:
        writer, _ = client.do_put(update, pa.schema([]), token)
        writer.close()
    assert "read-only" in str(err.value)
    # The server is unaffected.
    info = client.get_flight_info(no_auth, token)
    assert client.do_get(info.endpoints[0].ticket, token).read_all().num_rows == 1


def test_closed_prepared_statement_ticket_is_not_found(two_principals):
    server = two_principals
    client = flight.FlightClient(f"grpc://{server.flight}")
    token = options(server.token)
    created = list(client.do_action(flight.Action(
        "CreatePreparedStatement", command("ActionCreatePreparedStatementRequest", field(1, b"SELECT 42"))), token))
    # ActionCreatePreparedStatementResult inside an Any: field 1 of the value is the handle.
    result = parse_first_bytes_field(created[0].body.to_pybytes(), 2)
    handle = parse_first_bytes_field(result, 1)
    ticket = flight.Ticket(command("CommandPreparedStatementQuery", field(1, handle)))
    assert client.do_get(ticket, token).read_all().column(0).to_pylist() == [42]
    list(client.do_action(flight.Action(
        "ClosePreparedStatement", command("ActionClosePreparedStatementRequest", field(1, handle))), token))
    with pytest.raises(pa.ArrowException) as err:
        client.do_get(ticket, token).read_all()
    assert "no such statement" in str(err.value)


def parse_first_bytes_field(data: bytes, number: int) -> bytes:
    """The first length-delimited field `number` of a protobuf message."""
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        if key & 7 == 2:
            length, i = read_varint(data, i)
            if key >> 3 == number:
                return data[i:i + length]
            i += length
        elif key & 7 == 0:
            _, i = read_varint(data, i)
        else:
            raise ValueError(f"wire type {key & 7}")
    raise KeyError(number)


def read_varint(data, i):
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


# --- TLS and the driver's own OAuth flow ---------------------------------------------------------

def test_tls_with_the_drivers_oauth_client_credentials(tmp_path):
    provider = OidcProvider("v2").start()
    config = tmp_path / "sluice.toml"
    config.write_text('[[grants]]\nroles = ["Warehouse.Read"]\nselect = ["tpch.nation"]\n')
    server = start_sluice("--config", str(config), "--tls-self-signed", "--oidc-issuer", provider.issuer,
                          "--oidc-audience", AUDIENCE)
    try:
        kwargs = {
            "adbc.flight.sql.oauth.flow": "client_credentials",
            "adbc.flight.sql.oauth.token_uri": f"{provider.base}/token",
            "adbc.flight.sql.oauth.client_id": "readonly-app",
            "adbc.flight.sql.oauth.client_secret": "readonly-app-secret",
            "adbc.flight.sql.client_option.tls_root_certs": pathlib.Path(server.tls_cert).read_text(),
        }
        with flight_sql.connect(f"grpc+tls://127.0.0.1:{server.flight.rsplit(':', 1)[1]}", db_kwargs=kwargs,
                                autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM tpch.nation")
                assert cur.fetchall() == [(25,)]
                with pytest.raises(adbc_driver_manager.Error) as refused:
                    cur.execute("SELECT count(*) FROM tpch.orders")
                # The principal is the one the driver's own token request got.
                assert "(PermissionDenied" in str(refused.value) and "readonly-app" in str(refused.value)
    finally:
        server.stop()
        provider.stop()

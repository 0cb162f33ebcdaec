"""HiveServer2 over HTTP, as Databricks SQL warehouses speak it: databricks-sql-connector,
@databricks/sql (Node, over HTTPS), impyla (the columnar path and its Impala-only calls),
and raw Thrift calls for bad input, against a running `sluice serve`."""
import datetime
import decimal
import hashlib
import http.client
import json
import logging
import pathlib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import duckdb
import pyarrow as pa
import pytest
from databricks import sql as dbsql
from databricks.sql.thrift_api.TCLIService import TCLIService, ttypes
from thrift.protocol import TBinaryProtocol
from thrift.transport import THttpClient, TTransport

from conftest import HERE, start_sluice
from tpch_answers import QUERIES, assert_matches, query

OTHER_TOKEN = "hs2-analyst-token"
LONG_QUERY = "SELECT count(*) FROM tpch.lineitem a, tpch.lineitem b WHERE a.l_orderkey + b.l_partkey < 0"


def connect(server, token=None, **extra):
    """databricks-sql-connector with an access token, over plain HTTP (`_connection_uri`)."""
    return dbsql.connect(
        server_hostname=server.http.split(":")[0],
        http_path="/sql/1.0/warehouses/default",
        access_token=token or server.token,
        _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default",
        enable_telemetry=False,
        **extra,
    )


def duck(server, sql):
    """The reference answer: DuckDB over the same Parquet files."""
    con = duckdb.connect()
    for table in ["lineitem", "orders", "nation", "region"]:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{server.data_dir}/tpch/{table}/*.parquet')")
    return con.execute(sql).fetchall()


def hs2_counts(server):
    return server.health()["hs2"]


def workers_idle(server, timeout=20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(w["running"] for w in server.health()["warehouses"][0]["workers"]):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def conn(sluice):
    with connect(sluice) as c:
        yield c


# --- databricks-sql-connector ------------------------------------------------------------------

def test_named_parameters_and_fetch_styles(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT n_nationkey, n_name FROM tpch.nation WHERE n_regionkey = :region AND n_name LIKE :prefix "
                    "ORDER BY n_nationkey", {"region": 1, "prefix": "%A%"})
        assert [tuple(r) for r in cur.fetchall()] == [(1, "ARGENTINA"), (2, "BRAZIL"), (3, "CANADA"), (24, "UNITED STATES")]
        cur.execute("SELECT n_nationkey FROM tpch.nation ORDER BY 1")
        assert tuple(cur.fetchone()) == (0,)
        assert [tuple(r) for r in cur.fetchmany(3)] == [(1,), (2,), (3,)]
        rest = cur.fetchall()
        assert len(rest) == 21 and rest[-1][0] == 24
        cur.execute("SELECT r_regionkey, r_name FROM tpch.region ORDER BY 1")
        table = cur.fetchall_arrow()
        assert table.column("r_name").to_pylist() == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
        # Positional parameters, backtick identifiers, typed values.
        cur.execute("SELECT `n_name` FROM `tpch`.`nation` WHERE n_nationkey = ?", [7])
        assert cur.fetchall()[0][0] == "GERMANY"


def test_description_carries_decimal_precision_and_types(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT l_quantity, l_shipdate, l_returnflag, l_orderkey, l_linenumber, "
                    "CAST(1.5 AS DOUBLE) AS d, true AS b FROM tpch.lineitem LIMIT 1")
        desc = [(d[0], d[1], d[4], d[5]) for d in cur.description]
        assert desc == [("l_quantity", "decimal", 15, 2), ("l_shipdate", "date", None, None),
                        ("l_returnflag", "string", None, None), ("l_orderkey", "bigint", None, None),
                        ("l_linenumber", "int", None, None), ("d", "double", None, None),
                        ("b", "boolean", None, None)]
        row = cur.fetchone()
        assert str(type(row[0]).__name__) == "Decimal" and row[6] is True


@pytest.mark.parametrize("lz4", [True, False])
def test_paging_beyond_the_direct_results_page(sluice, lz4):
    """arraysize 1000: the first page comes with ExecuteStatement, the rest by FetchResults."""
    want = duck(sluice, "SELECT count(*), sum(l_orderkey), sum(l_quantity) FROM lineitem")[0]
    with connect(sluice, enable_query_result_lz4_compression=lz4) as c, c.cursor(arraysize=1000) as cur:
        cur.execute("SELECT l_orderkey, l_quantity FROM tpch.lineitem")
        rows = cur.fetchall()
        assert (len(rows), sum(r[0] for r in rows), sum(r[1] for r in rows)) == want
        cur.execute("SELECT l_orderkey, l_comment FROM tpch.lineitem")
        table = cur.fetchall_arrow()
        assert table.num_rows == want[0]


def test_catalog_browsing(conn):
    with conn.cursor() as cur:
        assert [r[0] for r in cur.catalogs().fetchall()] == ["sluice"]
        schemas = [r[0] for r in cur.schemas().fetchall()]
        assert "tpch" in schemas and "information_schema" in schemas
        assert not [s for s in schemas if s.startswith("pg_")]
        tables = cur.tables(schema_name="tpch").fetchall()
        assert [t.TABLE_NAME for t in tables] == ["customer", "lineitem", "nation", "orders", "part",
                                                  "partsupp", "region", "supplier"]
        assert {t.TABLE_TYPE for t in tables} == {"TABLE"}
        assert cur.tables(schema_name="tpch", table_name="line%").fetchall()[0].TABLE_NAME == "lineitem"
        columns = cur.columns(schema_name="tpch", table_name="orders").fetchall()
        by_name = {c.COLUMN_NAME: c for c in columns}
        assert [c.COLUMN_NAME for c in columns][:3] == ["o_orderkey", "o_custkey", "o_orderstatus"]
        assert by_name["o_totalprice"].TYPE_NAME == "DECIMAL(15,2)"
        assert by_name["o_totalprice"].DATA_TYPE == 3 and by_name["o_totalprice"].DECIMAL_DIGITS == 2
        assert by_name["o_orderdate"].TYPE_NAME == "DATE" and by_name["o_orderdate"].DATA_TYPE == 91
        assert [c.ORDINAL_POSITION for c in columns] == list(range(1, 10))
        assert [c.COLUMN_NAME for c in cur.columns(schema_name="tpch", table_name="orders",
                                                   column_name="o_order%").fetchall()] == \
            ["o_orderkey", "o_orderstatus", "o_orderdate", "o_orderpriority"]


def test_sql_errors_keep_the_connection(conn):
    with conn.cursor() as cur:
        with pytest.raises(dbsql.exc.DatabaseError) as err:
            cur.execute("SELECT * FROM tpch.no_such_table")
        assert "no_such_table" in str(err.value)
        with pytest.raises(dbsql.exc.DatabaseError) as err:
            cur.execute("SELEC 1")
        assert "syntax" in str(err.value).lower() or "expected" in str(err.value).lower()
        # A runtime error after planning comes back as the operation's error.
        with pytest.raises(dbsql.exc.Error) as err:
            cur.execute("SELECT 1 / (n_nationkey - n_nationkey) FROM tpch.nation")
            cur.fetchall()
        assert "divide by zero" in str(err.value).lower() or "division" in str(err.value).lower()
        cur.execute("SELECT count(*) FROM tpch.region")
        assert cur.fetchall()[0][0] == 5


def test_cancel_a_long_query(sluice):
    errors = []
    with connect(sluice) as c:
        cur = c.cursor()

        def run():
            try:
                cur.execute(LONG_QUERY)
                cur.fetchall()
            except Exception as e:  # the cancelled statement raises
                errors.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        # Wait until the query runs on a worker and the client holds its operation.
        deadline = time.time() + 30
        while time.time() < deadline and not (cur.active_command_id and not workers_idle(sluice, 0.1)):
            time.sleep(0.1)
        assert cur.active_command_id, "the statement never started"
        started = time.time()
        cur.cancel()
        thread.join(30)
        assert not thread.is_alive()
        assert errors, "the cancelled query returned rows"
        # The statement ends and its worker slot is free within 2 s of cursor.cancel()
        # (which waits for the client's status poll in flight: the server answers those
        # within 0.5 s).
        assert workers_idle(sluice, 5), sluice.health()
        assert time.time() - started < 2, time.time() - started
        with pytest.raises(Exception):
            cur.fetchall()
        cur.close()
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM tpch.nation")
        assert cur.fetchall()[0][0] == 25


@pytest.mark.parametrize("n", QUERIES)
def test_tpch(conn, n):
    with conn.cursor() as cur:
        cur.execute(query(n))
        assert_matches(n, [tuple(r) for r in cur.fetchall()])


def test_sessions_and_operations_are_released(sluice):
    before = hs2_counts(sluice)
    for _ in range(3):
        with connect(sluice) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
            cur.execute("SELECT * FROM tpch.orders")
            cur.fetchall()
    after = hs2_counts(sluice)
    assert after["sessions"] <= before["sessions"] and after["operations"] <= before["operations"], (before, after)


def test_initial_namespace_and_session_settings(sluice):
    with connect(sluice, catalog="sluice", schema="tpch",
                 session_configuration={"statement_timeout": "1ms"}) as c, c.cursor() as cur:
        # Unqualified names resolve in the initial schema; the session setting applies.
        with pytest.raises(dbsql.exc.Error) as timed_out:
            cur.execute(LONG_QUERY.replace("tpch.", ""))
        assert "timeout" in str(timed_out.value)
        cur.execute("SET statement_timeout = 0")
        cur.execute("SELECT count(*) FROM nation")
        assert cur.fetchall()[0][0] == 25
    # Databricks' other names of the one catalog are it; another catalog is refused.
    with connect(sluice, catalog="hive_metastore", schema="tpch") as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM region")
        assert cur.fetchall()[0][0] == 5
    with pytest.raises(dbsql.exc.Error) as unknown:
        connect(sluice, catalog="no_such_catalog")
    assert "no_such_catalog" in str(unknown.value)


def test_session_statements_apply_before_their_answer(sluice):
    """A SET sent with runAsync and no wait is in force for the very next statement."""
    client = raw_client(sluice)
    session = open_session(client).sessionHandle
    for _ in range(5):
        resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(
            sessionHandle=session, statement="SET search_path = tpch", runAsync=True))
        assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS
        # Spark answers SET with its (key, value) row.
        assert resp.operationHandle.hasResultSet is True
        resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(
            sessionHandle=session, statement="SELECT count(*) FROM nation", runAsync=False))
        assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, resp.status
        client.ExecuteStatement(ttypes.TExecuteStatementReq(
            sessionHandle=session, statement="SET search_path = public", runAsync=True))
    client.CloseSession(ttypes.TCloseSessionReq(sessionHandle=session))


def test_raw_metadata_calls_and_sqlstates(sluice):
    client = raw_client(sluice)
    session = open_session(client).sessionHandle

    def rows(resp):
        assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, resp.status
        op = resp.operationHandle
        meta = client.GetResultSetMetadata(ttypes.TGetResultSetMetadataReq(operationHandle=op))
        names = [c.columnName for c in meta.schema.columns]
        fetched = client.FetchResults(ttypes.TFetchResultsReq(operationHandle=op, maxRows=10000, orientation=0))
        columns = fetched.results.columns
        values = [next(v for v in (c.boolVal, c.byteVal, c.i16Val, c.i32Val, c.i64Val, c.doubleVal, c.stringVal,
                                   c.binaryVal) if v is not None).values for c in columns]
        client.CloseOperation(ttypes.TCloseOperationReq(operationHandle=op))
        return names, list(zip(*values))

    names, types = rows(client.GetTypeInfo(ttypes.TGetTypeInfoReq(sessionHandle=session)))
    assert names[:3] == ["TYPE_NAME", "DATA_TYPE", "PRECISION"] and len(names) == 18
    assert ("DECIMAL", 3) in [(t[0], t[1]) for t in types]
    names, kinds = rows(client.GetTableTypes(ttypes.TGetTableTypesReq(sessionHandle=session)))
    assert names == ["TABLE_TYPE"] and kinds == [("TABLE",), ("VIEW",)]
    names, functions = rows(client.GetFunctions(ttypes.TGetFunctionsReq(sessionHandle=session,
                                                                        functionName="format_t%")))
    assert names[:3] == ["FUNCTION_CAT", "FUNCTION_SCHEM", "FUNCTION_NAME"]
    assert ("sluice", "pg_catalog", "format_type") in [f[:3] for f in functions]
    names, keys = rows(client.GetPrimaryKeys(ttypes.TGetPrimaryKeysReq(sessionHandle=session, schemaName="tpch",
                                                                       tableName="nation")))
    assert names == ["TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "COLUMN_NAME", "KEY_SEQ", "PK_NAME"]
    assert keys == [("sluice", "tpch", "nation", "n_nationkey", 1, "nation_pkey")]  # TPC-H's, informational
    names, refs = rows(client.GetCrossReference(ttypes.TGetCrossReferenceReq(sessionHandle=session)))
    assert len(names) == 14 and len(refs) == 9  # every foreign key column of TPC-H
    # Errors carry the SQLSTATE of the one error table.
    for sql, state in [("SELECT * FROM tpch.nope", "42P01"), ("SELECT nope FROM tpch.nation", "42703"),
                       ("SELEC 1", "42601"), ("INSERT INTO tpch.region VALUES (9, 'X', 'y')", "25006")]:
        resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=session, statement=sql))
        assert resp.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
        assert resp.status.sqlState == state, (sql, resp.status)
    # A failure while running is the operation's ERROR_STATE with its message.
    resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(
        sessionHandle=session, statement="SELECT 1 / (n_nationkey - n_nationkey) FROM tpch.nation", runAsync=True))
    status = client.GetOperationStatus(ttypes.TGetOperationStatusReq(operationHandle=resp.operationHandle))
    while status.operationState in (ttypes.TOperationState.PENDING_STATE, ttypes.TOperationState.RUNNING_STATE):
        status = client.GetOperationStatus(ttypes.TGetOperationStatusReq(operationHandle=resp.operationHandle))
    assert status.operationState == ttypes.TOperationState.ERROR_STATE
    assert status.sqlState == "22012" and "zero" in status.errorMessage.lower()
    client.CloseSession(ttypes.TCloseSessionReq(sessionHandle=session))


def test_hive_v1_clients_get_rows(sluice):
    """Hive protocol versions before V6 read results as rows of TColumnValues."""
    client = raw_client(sluice)
    resp = client.OpenSession(ttypes.TOpenSessionReq(client_protocol=ttypes.TProtocolVersion.HIVE_CLI_SERVICE_PROTOCOL_V1))
    assert resp.serverProtocolVersion == ttypes.TProtocolVersion.HIVE_CLI_SERVICE_PROTOCOL_V1
    op = client.ExecuteStatement(ttypes.TExecuteStatementReq(
        sessionHandle=resp.sessionHandle, statement="SELECT r_regionkey, r_name, CAST(NULL AS BIGINT) AS n "
                                                    "FROM tpch.region ORDER BY 1 LIMIT 2")).operationHandle
    fetched = client.FetchResults(ttypes.TFetchResultsReq(operationHandle=op, maxRows=100, orientation=0))
    rows = [[v.i64Val.value if v.i64Val else v.stringVal.value for v in row.colVals] for row in fetched.results.rows]
    assert rows == [[0, "AFRICA", None], [1, "AMERICA", None]]


# --- large results by download links (CloudFetch) ----------------------------------------------

@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """A server with a 1 MiB download threshold and a second, less privileged principal."""
    config = tmp_path_factory.mktemp("hs2") / "sluice.toml"
    digest = hashlib.sha256(OTHER_TOKEN.encode()).hexdigest()
    config.write_text(
        f'[[auth.tokens]]\nname = "analyst"\nsha256 = "{digest}"\nroles = ["analyst"]\n\n'
        '[[grants]]\nroles = ["analyst"]\nselect = ["tpch.nation"]\n\n'
        '[hs2]\ncloud_fetch_threshold = "1MiB"\ncloud_fetch_chunk_size = "1MiB"\n')
    server = start_sluice("--config", str(config))
    yield server
    server.stop()


class Downloads(logging.Handler):
    """Counts the connector's CloudFetch downloads (it logs each one)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if "CloudFetch download completed" in record.getMessage():
            self.count += 1


@pytest.mark.parametrize("lz4", [True, False])
def test_result_beyond_the_threshold_comes_by_links(configured, lz4):
    downloads = Downloads()
    log = logging.getLogger("databricks.sql.cloudfetch.downloader")
    log.addHandler(downloads)
    log.setLevel(logging.INFO)
    try:
        want = duck(configured, "SELECT count(*), sum(l_orderkey), sum(l_extendedprice) FROM lineitem")[0]
        with connect(configured, enable_query_result_lz4_compression=lz4) as c, c.cursor() as cur:
            cur.execute("SELECT l_orderkey, l_extendedprice, l_comment FROM tpch.lineitem")
            table = cur.fetchall_arrow()
            got = (table.num_rows, pa.compute.sum(table.column("l_orderkey")).as_py(),
                   pa.compute.sum(table.column("l_extendedprice")).as_py())
            assert got == want
            # A small result still comes inline.
            cur.execute("SELECT count(*) FROM tpch.lineitem")
            assert cur.fetchall()[0][0] == want[0]
    finally:
        log.removeHandler(downloads)
    assert downloads.count >= 3, "the result did not come by several download links"
    # Closed operations leave no spooled files behind.
    deadline = time.time() + 5
    while time.time() < deadline and any((configured.data_dir / "results").glob("*/*")):
        time.sleep(0.2)
    assert not any((configured.data_dir / "results").glob("*/*"))


def raw_client(server, token=None):
    transport = THttpClient.THttpClient(f"{server.http_url}/sql/1.0/warehouses/default")
    transport.setCustomHeaders({"Authorization": f"Bearer {token or server.token}"})
    return TCLIService.Client(TBinaryProtocol.TBinaryProtocol(transport))


def open_session(client, protocol=ttypes.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V7):
    resp = client.OpenSession(ttypes.TOpenSessionReq(client_protocol_i64=protocol, canUseMultipleCatalogs=True))
    assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, resp.status
    return resp


def test_links_are_signed_expire_with_their_operation_and_need_no_token(configured):
    client = raw_client(configured)
    session = open_session(client).sessionHandle
    resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(
        sessionHandle=session, statement="SELECT * FROM tpch.lineitem", runAsync=False,
        canReadArrowResult=True, canDownloadResult=True))
    assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, resp.status
    op = resp.operationHandle
    meta = client.GetResultSetMetadata(ttypes.TGetResultSetMetadataReq(operationHandle=op))
    assert meta.resultFormat == ttypes.TSparkRowSetType.URL_BASED_SET
    fetched = client.FetchResults(ttypes.TFetchResultsReq(operationHandle=op, maxRows=100000,
                                                          orientation=ttypes.TFetchOrientation.FETCH_NEXT))
    links = fetched.results.resultLinks
    assert links and links[0].startRowOffset == 0 and links[0].expiryTime > time.time()
    url = links[0].fileLink
    assert url.startswith(f"http://{configured.http}/results/")
    with urllib.request.urlopen(url, timeout=10) as r:  # no Authorization header
        table = pa.ipc.open_stream(r.read()).read_all()
    assert table.num_rows == links[0].rowCount and table.schema.names[0] == "l_orderkey"
    for bad in [url.replace("sig=", "sig=00"), url[:-4] + "0000", url.replace("expires=", "expires=1")]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 403
        assert "signature" in refused.value.headers["x-thriftserver-error-message"]
    client.CloseOperation(ttypes.TCloseOperationReq(operationHandle=op))
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url, timeout=10)
    assert gone.value.code == 404
    client.CloseSession(ttypes.TCloseSessionReq(sessionHandle=session))


def test_grants_apply_to_statements_metadata_and_handles(configured):
    with connect(configured, token=OTHER_TOKEN) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM tpch.nation")
        assert cur.fetchall()[0][0] == 25
        with pytest.raises(dbsql.exc.DatabaseError) as denied:
            cur.execute("SELECT count(*) FROM tpch.orders")
        assert "permission denied" in str(denied.value)
        assert [t.TABLE_NAME for t in cur.tables(schema_name="tpch").fetchall()] == ["nation"]
        assert cur.columns(schema_name="tpch", table_name="orders").fetchall() == []
    # Another principal's session handle is not found.
    owner = raw_client(configured)
    session = open_session(owner).sessionHandle
    other = raw_client(configured, OTHER_TOKEN)
    resp = other.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=session, statement="SELECT 1"))
    assert resp.status.statusCode == ttypes.TStatusCode.INVALID_HANDLE_STATUS


# --- @databricks/sql (Node) over HTTPS -------------------------------------------------------

def test_node_driver_over_https_with_a_self_signed_certificate():
    server = start_sluice("--tls-self-signed")
    try:
        out = subprocess.run(
            ["node", str(HERE / "node" / "databricks.mjs"), server.http, server.token, server.tls_cert],
            capture_output=True, text=True, timeout=120, cwd=HERE / "node")
        assert out.returncode == 0, out.stderr + out.stdout
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["rows"] == [{"n_nationkey": k, "n_name": n} for k, n in
                                  [(1, "ARGENTINA"), (2, "BRAZIL"), (3, "CANADA"), (17, "PERU"), (24, "UNITED STATES")]]
        assert result["tables"] == ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
        assert result["columns"] == [["r_regionkey", "BIGINT"], ["r_name", "STRING"], ["r_comment", "STRING"]]
        assert "tpch" in result["schemas"]
        assert "no_such_column" in result["error"]
    finally:
        server.stop()


# --- impyla: columnar results, Impala-only calls ---------------------------------------------

def test_impyla_columnar_results(sluice):
    from impala.dbapi import connect as impala_connect
    before = hs2_counts(sluice)
    host, port = sluice.http.split(":")
    conn = impala_connect(host=host, port=int(port), use_http_transport=True,
                          http_path="sql/1.0/warehouses/default", auth_mechanism="JWT", jwt=sluice.token)
    cur = conn.cursor()
    cur.execute("SELECT n_nationkey, n_name, CAST(n_nationkey AS DECIMAL(10,2)) AS d, "
                "DATE '2024-01-31' AS day, CAST(NULL AS VARCHAR) AS nothing, n_nationkey > 1 AS big, "
                "CAST(n_nationkey AS DOUBLE) / 4 AS q "
                "FROM tpch.nation ORDER BY 1 LIMIT 3")
    assert [(d[0], d[1]) for d in cur.description] == [
        ("n_nationkey", "BIGINT"), ("n_name", "STRING"), ("d", "DECIMAL"), ("day", "DATE"),
        ("nothing", "STRING"), ("big", "BOOLEAN"), ("q", "DOUBLE")]
    rows = cur.fetchall()
    assert rows == [
        (0, "ALGERIA", decimal.Decimal("0.00"), datetime.date(2024, 1, 31), None, False, 0.0),
        (1, "ARGENTINA", decimal.Decimal("1.00"), datetime.date(2024, 1, 31), None, False, 0.25),
        (2, "BRAZIL", decimal.Decimal("2.00"), datetime.date(2024, 1, 31), None, True, 0.5)]
    # impyla asks for the log with the Impala-only GetLog (refused with UNKNOWN_METHOD), then
    # with FetchResults(fetchType=1); and closes with CloseImpalaOperation before
    # CloseOperation.
    assert cur.get_log() == ""
    cur.execute("SELECT * FROM tpch.orders")
    rows = cur.fetchall()
    want = duck(sluice, "SELECT count(*), sum(o_orderkey) FROM orders")[0]
    assert (len(rows), sum(r[0] for r in rows)) == want
    cur.close()
    conn.close()
    # Every operation and the session were closed (CloseImpalaOperation fell back to
    # CloseOperation).
    assert hs2_counts(sluice) == before


# --- bad input ---------------------------------------------------------------------------------

def post(server, body: bytes, token="default", path="/sql/1.0/warehouses/default", headers=None):
    conn = http.client.HTTPConnection(server.http, timeout=30)
    h = {"Content-Type": "application/x-thrift"}
    if token:
        h["Authorization"] = f"Bearer {server.token if token == 'default' else token}"
    h.update(headers or {})
    conn.request("POST", path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def message(name, args) -> bytes:
    """A CALL message made with the connector's own generated Thrift code."""
    buf = TTransport.TMemoryBuffer()
    proto = TBinaryProtocol.TBinaryProtocol(buf)
    proto.writeMessageBegin(name, 1, 1)
    args.write(proto)
    proto.writeMessageEnd()
    return buf.getvalue()


def test_bad_requests_get_clear_errors_and_the_server_stays_up(sluice):
    open_body = message("OpenSession", TCLIService.OpenSession_args(
        req=ttypes.TOpenSessionReq(client_protocol_i64=ttypes.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V7)))
    # Truncated inside the message header: HTTP 400 naming the problem.
    status, headers, _ = post(sluice, open_body[:6])
    assert status == 400 and "ends in the middle" in headers["x-thriftserver-error-message"]
    # Truncated inside the arguments: a Thrift PROTOCOL_ERROR reply.
    status, _, body = post(sluice, open_body[:-3])
    assert status == 200 and b"ends in the middle" in body
    # Another protocol (compact) or no Thrift at all.
    status, headers, _ = post(sluice, bytes([0x82, 0x21, 0x01, 0x0b]) + b"OpenSession")
    assert status == 400 and "TBinaryProtocol" in headers["x-thriftserver-error-message"]
    status, headers, _ = post(sluice, b"GET / HTTP/1.1\r\n")
    assert status == 400
    # A protocol version that is neither Hive's nor Spark's.
    client = raw_client(sluice)
    resp = client.OpenSession(ttypes.TOpenSessionReq(client_protocol=-3))
    assert resp.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
    assert "protocol version" in resp.status.errorMessage
    # Unknown session and operation handles: INVALID_HANDLE.
    fake = ttypes.THandleIdentifier(guid=b"\x01" * 16, secret=b"\x02" * 16)
    resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(
        sessionHandle=ttypes.TSessionHandle(sessionId=fake), statement="SELECT 1"))
    assert resp.status.statusCode == ttypes.TStatusCode.INVALID_HANDLE_STATUS
    assert "SessionHandle" in resp.status.errorMessage
    op = ttypes.TOperationHandle(operationId=fake, operationType=0, hasResultSet=True)
    for call in [lambda: client.GetOperationStatus(ttypes.TGetOperationStatusReq(operationHandle=op)),
                 lambda: client.FetchResults(ttypes.TFetchResultsReq(operationHandle=op, maxRows=10)),
                 lambda: client.CloseOperation(ttypes.TCloseOperationReq(operationHandle=op))]:
        resp = call()
        assert resp.status.statusCode == ttypes.TStatusCode.INVALID_HANDLE_STATUS
        assert "OperationHandle" in resp.status.errorMessage
    # A guessed session guid without its secret is not enough.
    real = open_session(client).sessionHandle
    guessed = ttypes.TSessionHandle(sessionId=ttypes.THandleIdentifier(guid=real.sessionId.guid, secret=b"\0" * 16))
    resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=guessed, statement="SELECT 1"))
    assert resp.status.statusCode == ttypes.TStatusCode.INVALID_HANDLE_STATUS
    # An unknown method: TApplicationException(UNKNOWN_METHOD), and the connection lives on.
    from thrift.Thrift import TApplicationException
    with pytest.raises(TApplicationException) as unknown:
        client._iprot.trans.open()
        client.send_GetDelegationToken(ttypes.TGetDelegationTokenReq(sessionHandle=real, owner="x", renewer="y"))
        client.recv_GetDelegationToken()
    assert unknown.value.type == TApplicationException.UNKNOWN_METHOD
    resp = client.GetInfo(ttypes.TGetInfoReq(sessionHandle=real, infoType=ttypes.TGetInfoType.CLI_DBMS_NAME))
    assert resp.infoValue.stringValue == "sluice"
    # A 100 MB body is refused from its Content-Length, without reading it; sent chunked
    # (no length), it is cut off at the limit.
    head = (b"POST /sql/1.0/warehouses/default HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-thrift\r\n"
            b"Authorization: Bearer " + sluice.token.encode() + b"\r\n")
    chunk = b"\0" * 1_000_000
    for framing, piece in [(b"Content-Length: 100000000\r\n\r\n", chunk),
                           (b"Transfer-Encoding: chunked\r\n\r\n", b"f4240\r\n" + chunk + b"\r\n")]:
        answer = raw_http(sluice, head + framing, piece, 100)
        assert answer.startswith("HTTP/1.1 413"), answer
        assert "x-thriftserver-error-message" in answer.lower()
    # The server is fine.
    with connect(sluice) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM tpch.region")
        assert cur.fetchall()[0][0] == 5


def raw_http(server, head: bytes, piece: bytes, times: int) -> str:
    """Send `head` then `piece` `times` times (from a thread, ignoring the server closing
    the connection early); the first bytes of the answer."""
    host, port = server.http.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)

    def send():
        try:
            sock.sendall(head)
            for _ in range(times):
                sock.sendall(piece)
        except OSError:
            pass

    sender = threading.Thread(target=send)
    sender.start()
    answer = sock.recv(4096).decode(errors="replace")
    sock.close()
    sender.join(30)
    return answer


def test_tokens_are_checked_on_every_call(sluice):
    status, headers, _ = post(sluice, message("OpenSession", TCLIService.OpenSession_args(
        req=ttypes.TOpenSessionReq(client_protocol_i64=42247))), token=None)
    assert status == 401 and "Bearer" in headers["x-thriftserver-error-message"]
    status, headers, _ = post(sluice, message("OpenSession", TCLIService.OpenSession_args(
        req=ttypes.TOpenSessionReq(client_protocol_i64=42247))), token="not-a-token")
    assert status == 401
    assert "not-a-token" not in json.dumps(headers) and "not-a-token" not in sluice.log()
    with pytest.raises(dbsql.exc.Error):
        connect(sluice, token="wrong-token", _retry_stop_after_attempts_count=1)


def test_side_endpoints_feature_flags_and_token_exchange(sluice):
    request = urllib.request.Request(f"{sluice.http_url}/api/2.0/connector-service/feature-flags/PYTHON/4.9.0",
                                     headers={"Authorization": f"Bearer {sluice.token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert json.loads(r.read()) == {"flags": [], "ttl_seconds": 900}
    form = ("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token="
            f"{sluice.token}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&scope=sql")
    with urllib.request.urlopen(urllib.request.Request(f"{sluice.http_url}/oidc/v1/token", data=form.encode()),
                                timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["access_token"] == sluice.token and answer["token_type"] == "Bearer"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(
            f"{sluice.http_url}/oidc/v1/token", data=form.replace(sluice.token, "bogus").encode()), timeout=10)
    assert refused.value.code == 400 and json.loads(refused.value.read())["error"] == "invalid_grant"


def test_a_full_queue_answers_503_with_retry_after(tmp_path):
    config = tmp_path / "sluice.toml"
    # The refused statement reads a small table: it must need the worker, not run here.
    config.write_text("[warehouses.default]\nworkers = 1\nmax_concurrency_per_worker = 1\nmax_queued = 0\n"
                      "small_query_bytes = \"0\"\n")
    server = start_sluice("--config", str(config))
    try:
        busy = raw_client(server)
        session = open_session(busy).sessionHandle
        long = busy.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=session, statement=LONG_QUERY,
                                                                 runAsync=True))
        assert long.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS
        deadline = time.time() + 30
        while time.time() < deadline and workers_idle(server, 0.1):
            time.sleep(0.1)
        body = message("ExecuteStatement", TCLIService.ExecuteStatement_args(req=ttypes.TExecuteStatementReq(
            sessionHandle=session, statement="SELECT count(*) FROM tpch.nation", runAsync=True,
            getDirectResults=ttypes.TSparkGetDirectResults(maxRows=100, maxBytes=1 << 20))))
        status, headers, _ = post(server, body)
        assert status == 503, status
        assert headers["retry-after"] == "1"
        assert "busy" in headers["x-thriftserver-error-message"]
        busy.CancelOperation(ttypes.TCancelOperationReq(operationHandle=long.operationHandle))
        assert workers_idle(server, 5)
        # Once the slot is free, the same statement runs.
        with connect(server) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM tpch.nation")
            assert cur.fetchall()[0][0] == 25
    finally:
        server.stop()

"""The attack suite: what a principal with a valid token (or anyone on the network) might
send to get around the grants or take the gateway down, through every front-end where it
applies. Each test asserts the refusal and that the gateway still serves afterwards.

Principals of the `target` server:
  nogrant  a static token with no grants at all
  reader   SELECT on sandbox.* and tpch.nation
  manager  SELECT on lake.* and sandbox.*, and MANAGE (CREATE / DROP)
  admin    the dev token (reads everything)
"""
import hashlib
import http.client
import json
import os
import pathlib
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import urllib.request

import duckdb
import psycopg
import pytest

import grpc
import pyarrow as pa

from attack import FRONT_ENDS, Refused, rest, run
from conftest import start_sluice, wait_for
from databricks.sql.thrift_api.TCLIService import TCLIService, ttypes
from thrift.protocol import TBinaryProtocol
from thrift.transport import THttpClient

from flightraw import FlightRaw, ipc_messages, lz4_bomb
from pgraw import PgRaw
from oidc import AUDIENCE, OidcProvider

NOGRANT = "nogrant-token-0123456789abcdef0123456789abcdef"
READER = "reader-token-0123456789abcdef0123456789abcdef"
MANAGER = "manager-token-0123456789abcdef0123456789abcdef"
SVC = "svc-token-0123456789abcdef0123456789abcdef0123"
# Reads every tpch table: the large-value attacks (REST keeps each failed statement against
# its principal's max_operations, so they must not use the admin's, which `serves` needs).
BULK = "bulk-token-0123456789abcdef0123456789abcdef01"
SECRET_ROWS = [("the-secret-1",), ("the-secret-2",)]
DECOY_ROWS = [("decoy",)]


def token_entry(name, token, roles):
    return f"""
[[auth.tokens]]
name = "{name}"
sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"
roles = {roles!r}
""".replace("'", '"')


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack-lake")
    shared = root / "shared"
    (shared / "trips").mkdir(parents=True)
    (shared / "secret.csv").write_text("secret\n" + "".join(f"{r[0]}\n" for r in SECRET_ROWS))
    (shared / "decoy.csv").write_text("secret\n" + "".join(f"{r[0]}\n" for r in DECOY_ROWS))
    duckdb.connect().execute(f"copy (select i as id from range(10) t(i)) to '{shared}/trips/t.parquet' (format parquet)")
    return root


@pytest.fixture(scope="module")
def idp():
    provider = OidcProvider("v2").start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def target(lake, idp, tmp_path_factory):
    config = tmp_path_factory.mktemp("attack-config") / "sluice.toml"
    config.write_text(f"""
[[tables]]
name = "public.secret"
location = "{lake}/shared/secret.csv"
format = "csv"
{token_entry("nogrant", NOGRANT, [])}
{token_entry("reader", READER, ["reader"])}
{token_entry("manager", MANAGER, ["manager"])}
{token_entry("svc", SVC, [])}
{token_entry("bulk", BULK, ["bulk"])}

[[grants]]
principals = ["token:svc"]
select = ["tpch.orders"]

[[grants]]
roles = ["bulk"]
select = ["tpch.*"]

[[grants]]
roles = ["reader"]
select = ["sandbox.*", "tpch.nation"]

[[grants]]
roles = ["manager"]
select = ["lake.*", "sandbox.*"]
privileges = ["MANAGE"]

[storage]
allowed_locations = ["{lake}/shared"]

[cache]
memory_budget = "4MiB"
max_entry_size = "1MiB"

[limits]
# The cache budget test below measures the result cache's memory: kept plans (30 KiB each)
# are bounded apart, by max_kept_plans.
max_kept_plans = 64
max_prepared_statements = 20
max_sessions = 20
max_operations = 30
max_stored_results_size = "2MiB"
http_header_timeout = "2s"
max_http_connections = 64
""")
    server = start_sluice("--config", str(config), "--oidc-issuer", idp.issuer, "--oidc-audience", AUDIENCE)
    admin = server.token
    run(server, "pg", admin, "create schema sandbox")
    run(server, "pg", admin, f"create external table sandbox.secret stored as csv location '{lake}/shared/decoy.csv' "
                             "options ('has_header' 'true')")
    # Written by an admin whose search_path is the default: `secret` means public.secret.
    run(server, "pg", admin, "create view sandbox.v as select * from secret")
    yield server
    server.stop()


def serves(server):
    """The gateway is up and answers every front-end."""
    assert server.proc.poll() is None, server.log()[-3000:]
    for front in FRONT_ENDS:
        assert run(server, front, server.token, "select count(*) from tpch.region") in ([(5,)], [("5",)]), front


def refused(server, front, token, sql):
    with pytest.raises(Refused) as e:
        rows = run(server, front, token, sql)
        print("answered:", rows)
    return e.value


# --- 1. internal functions -----------------------------------------------------------------

@pytest.mark.parametrize("front", FRONT_ENDS)
def test_the_internal_subquery_function_cannot_be_called(target, lake, front):
    region = sorted(p.name for p in (target.data_dir / "tpch" / "region").iterdir())
    for sql in ["select sluice_subquery('SELECT count(*) FROM tpch.customer')",
                "select sluice_subquery('SELECT count(*) FROM tpch.customer', "
                "'0000000000000000000000000000000000000000000000000000000000000000')",
                "select sluice_subquery('INSERT INTO tpch.region SELECT * FROM tpch.region')",
                "select sluice_subquery('SELECT string_agg(c_name, '','') FROM tpch.customer')"]:
        e = refused(target, front, NOGRANT, sql)
        assert "does not exist" in e.message, e
        assert "1500" not in e.message
    # Nothing was written.
    assert sorted(p.name for p in (target.data_dir / "tpch" / "region").iterdir()) == region
    serves(target)


# --- 2. statements too deep for the stack ----------------------------------------------------

@pytest.mark.parametrize("front", FRONT_ENDS)
def test_a_deep_operator_chain_is_refused_and_the_gateway_lives(target, front):
    e = refused(target, front, NOGRANT, "SELECT " + "+".join(["1"] * 6000))
    assert "too complex" in e.message, e
    assert e.code in ("54001", "INVALID_ARGUMENT", "DatabaseError", "BAD_REQUEST"), e
    serves(target)


@pytest.mark.parametrize("front", FRONT_ENDS)
def test_nested_special_forms_cannot_keep_the_parser_busy(target, front):
    # Found by fuzz_sql: the parser re-reads a failed CAST( as a function call, doubling the
    # work per level; 16 levels (100 bytes) kept a gateway thread busy for minutes.
    started = time.monotonic()
    e = refused(target, front, NOGRANT, "SELECT " + "cast(" * 16 + "1" + ")" * 16)
    assert "too complex" in e.message, e
    # Any function nested deep enough makes the parser's work double per level, valid or not.
    e = refused(target, front, NOGRANT, "SELECT " + "abs(" * 24 + "1" + ")" * 24)
    assert "too complex" in e.message, e
    assert time.monotonic() - started < 10
    serves(target)


def test_chained_in_subqueries_cost_linear_time(target):
    # `x IN (q)` as a value is rewritten around x; a chain of them once rewrote (and parsed
    # again) the value twice per link: 8 links kept the gateway busy for minutes.
    chain = "SELECT true" + " IN (SELECT true)" * 40
    started = time.monotonic()
    assert run(target, "pg", READER, chain) == [(True,)]
    assert time.monotonic() - started < 10
    serves(target)


def test_nested_unnest_with_ordinality_cannot_multiply_the_statement(target):
    # unnest(a) WITH ORDINALITY writes `a` twice; an `a` holding another such unnest once
    # doubled per level: five levels (351 bytes) kept the gateway busy for 18 s.
    a = "ARRAY[1,2]"
    for k in range(5):
        a = f"ARRAY(SELECT v FROM unnest({a}) WITH ORDINALITY AS k{k}(v, n))"
    started = time.monotonic()
    e = refused(target, "pg", READER, f"SELECT count(*) FROM unnest({a}) WITH ORDINALITY AS k(v, n)")
    assert e.code == "0A000", e
    assert time.monotonic() - started < 5
    # The forms tools send still answer.
    assert run(target, "pg", READER, "SELECT * FROM unnest(ARRAY['x', 'y']) WITH ORDINALITY AS t(v, n)") == \
        [("x", 1), ("y", 2)]
    serves(target)


def test_long_or_chains_within_the_limit_are_answered(target):
    # 1,500 terms nest 1,500 deep: a real BI filter, planned on threads with stack for it.
    terms = " OR ".join(f"n_nationkey = {i}" for i in range(1500))
    assert run(target, "pg", READER, f"select count(*) from tpch.nation where {terms}") == [(25,)]
    e = refused(target, "pg", READER, "SELECT " + "+".join(["n_nationkey"] * 4500) + " FROM tpch.nation")
    assert e.code == "54001"
    e = refused(target, "pg", READER, "select '" + "x" * (5 << 20) + "'")
    assert e.code == "54001" and "too long" in e.message
    serves(target)


# --- 4. DDL confined to the allowed locations --------------------------------------------------

def test_manage_cannot_point_a_table_at_sluices_own_files_or_the_system(target, lake):
    data = target.data_dir
    attempts = [
        f"{data}/dev-token",
        f"{data}/endpoints.json",
        f"{data}/metadata.redb",
        f"{data}/tpch/../dev-token",
        f"{lake}/shared/" + "../" * 12 + f"{data}/dev-token",
        f"{lake}/shared/trips/" + "../" * 12 + "etc/passwd",
        "/etc/passwd",
        "/proc/self/environ",
        "/proc/self/cwd/sluice-data/dev-token",
        "/dev/zero",
        "file:///etc/passwd",
        f"file://{data}/dev-token",
        str(data / "tpch" / "customer"),
    ]
    for location in attempts:
        e = refused(target, "pg", MANAGER,
                    f"create external table lake.x stored as csv location '{location}'")
        assert e.code in ("42501", "22023"), (location, e)
        assert "does not exist" not in e.message, (location, e)
    # No existence oracle outside: a missing path and a present one get the same answer.
    missing = refused(target, "pg", MANAGER, "create external table lake.x stored as csv location '/nope/x.csv'")
    present = refused(target, "pg", MANAGER, "create external table lake.x stored as csv location '/etc/hostname'")
    assert (missing.code, missing.message.replace("/nope/x.csv", "P")) == \
        (present.code, present.message.replace("/etc/hostname", "P"))
    serves(target)


def test_manage_cannot_read_another_tables_files_or_write_config_schemas(target, lake):
    # public.secret's file, its directory, and a parent of it: the manager may not read it.
    for location in [f"{lake}/shared/secret.csv", f"{lake}/shared/", f"{lake}/shared"]:
        e = refused(target, "pg", MANAGER, f"create external table lake.steal stored as csv location '{location}'")
        assert e.code == "42501" and "public.secret" in e.message, (location, e)
    # Schemas of the config file (and the demo) take no new tables or views.
    for sql in [f"create external table tpch.extra stored as parquet location '{lake}/shared/trips/'",
                f"create external table public.extra stored as parquet location '{lake}/shared/trips/'",
                "create view tpch.v as select 1"]:
        assert refused(target, "pg", MANAGER, sql).code == "25006", sql
    # Where it may: a table of its own.
    run(target, "pg", MANAGER, "create schema if not exists lake")
    run(target, "pg", MANAGER, f"create external table lake.trips stored as parquet location '{lake}/shared/trips/'")
    assert run(target, "pg", MANAGER, "select count(*) from lake.trips") == [(10,)]
    run(target, "pg", MANAGER, "drop table lake.trips")
    serves(target)


def test_format_cannot_multiply_an_argument_into_gigabytes(target):
    """format() repeats an argument once per `%1$s`: a 0.3 MB pattern over a 1 MB argument
    would be 300 GB; it is refused with 54001 and the gateway serves on."""
    e = refused(target, "pg", READER, "select format(repeat('%1$s', 100000), repeat('x', 1000000))")
    assert e.code == "54001", e
    assert run(target, "pg", READER, "select format('%s-%I-%L', 'a', 'B c', 'it''s')") == \
        [("a-\"B c\"-'it''s'",)]
    serves(target)


# Values far larger than the statement: arrow makes a function's result in one allocation,
# and a failed allocation aborts the process (no error, no unwinding). The first of these,
# `repeat(n_comment, 15000000)` over the 25 rows of tpch.nation (30 GB), took the gateway
# down once small queries ran there; the cases below are the same shapes at sizes a
# machine survives if the bound were gone (the test would then see rows, not a refusal).
TOO_LARGE = [
    # over a small table, answered in the gateway: 25 rows × ~75 bytes × 100,000 = 190 MB
    "select sum(length(repeat(n_comment, 100000))) from tpch.nation",
    "select sum(length(lpad(n_name, 10000000))) from tpch.nation",
    "select sum(length(replace(n_comment, 'e', repeat('x', 100000)))) from tpch.nation",
    # made while planning (constant folding)
    "select length(repeat('x', 100000000))",
    "select cardinality(range(1, 100000000))",
    # a constant made again on each of a batch's rows, on a worker (lineitem is not small)
    "select sum(length(concat(l_comment, repeat('x', 60000)))) from tpch.lineitem",
    # a large constant over rows only the gateway makes
    "select sum(length(concat(x, repeat('x', 100000)))) from (values ('a'), ('b')) as t(x)",
]


@pytest.mark.parametrize("front", FRONT_ENDS)
def test_values_far_larger_than_the_statement_are_refused_before_they_are_made(target, front):
    for sql in TOO_LARGE:
        e = refused(target, front, BULK, sql)
        assert "MiB" in e.message or "the gateway does not answer it" in e.message, (sql, e)
        if front == "pg":
            assert e.code == "54000", (sql, e)
        elif front == "flight":
            assert e.code == "INVALID_ARGUMENT", (sql, e)
    # The gateway serves on (asked as `bulk`: REST holds each statement against its
    # principal, and `serves` needs the admin's few).
    assert target.proc.poll() is None, target.log()[-3000:]
    assert run(target, front, BULK, "select count(*) from tpch.region") in ([(5,)], [("5",)])


def test_a_large_constant_over_a_small_table_is_answered_by_a_worker(target):
    """`n_name || <100 KB>` over tpch.nation is fine on a worker (2.5 MB), not in the
    gateway: it is answered, and not as a small query."""
    def small_queries():
        text = urllib.request.urlopen(f"{target.http_url}/metrics", timeout=10).read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("sluice_small_queries_total"))
    nation = target.data_dir / "tpch" / "nation"
    sql = "select sum(length(n_name || repeat('x', 100000))) from tpch.nation"
    want = duckdb.sql(sql.replace("tpch.nation", f"read_parquet('{nation}/*.parquet')")).fetchall()
    before = small_queries()
    assert run(target, "pg", target.token, sql) == [(want[0][0],)]
    assert small_queries() == before
    # Without the constant, the same table is a small query.
    run(target, "pg", target.token, "select sum(length(n_name)) from tpch.nation")
    assert small_queries() == before + 1


def test_manage_cannot_rename_a_table_it_may_not_read(target, lake):
    """Grants name tables: ALTER TABLE … RENAME of a table the manager may not read (to a
    name its grants might cover) is refused, and the table keeps its name."""
    # Its own tables it renames.
    run(target, "pg", MANAGER, "create schema if not exists lake")
    run(target, "pg", MANAGER,
        f"create external table lake.mine stored as parquet location '{lake}/shared/trips/'")
    run(target, "pg", MANAGER, "alter table lake.mine rename to mine2")
    assert run(target, "pg", MANAGER, "select count(*) from lake.mine2") == [(10,)]
    run(target, "pg", MANAGER, "drop table lake.mine2")
    run(target, "pg", target.token, "create schema if not exists vault")
    run(target, "pg", target.token,
        f"create external table vault.stash stored as parquet location '{lake}/shared/trips/'")
    try:
        e = refused(target, "pg", MANAGER, "alter table vault.stash rename to stash_open")
        assert e.code == "42501" and "SELECT" in e.message, e
        assert run(target, "pg", target.token, "select count(*) from vault.stash") == [(10,)]
    finally:
        run(target, "pg", target.token, "drop table if exists vault.stash")
        run(target, "pg", target.token, "drop schema if exists vault")
    serves(target)


# --- 5. views and search_path ------------------------------------------------------------------

def test_a_view_reads_what_its_creator_meant_whatever_the_readers_search_path(target):
    # sandbox.v reads public.secret (its creator's `secret`): the reader may not read that.
    assert refused(target, "pg", READER, "select * from sandbox.v").code == "42501"
    with psycopg.connect(target.dsn(password=READER), autocommit=True) as conn:
        conn.execute("set search_path = sandbox")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from sandbox.v").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from v").fetchall()
        # Its own sandbox.secret is another table.
        assert conn.execute("select * from secret").fetchall() == DECOY_ROWS
    status, answer = rest(target, READER, "POST", "/api/2.0/sql/statements",
                          {"statement": "select * from v", "warehouse_id": "default", "schema": "sandbox",
                           "wait_timeout": "30s"})
    assert answer["status"]["state"] == "FAILED", answer
    assert "permission denied" in answer["status"]["error"]["message"], answer


def test_a_view_created_under_another_search_path_keeps_its_meaning(target):
    admin = target.token
    with psycopg.connect(target.dsn(password=admin), autocommit=True) as conn:
        conn.execute("set search_path = sandbox")
        conn.execute("create or replace view sandbox.w as select * from secret")
        # `secret` meant sandbox.secret when it was created, and still does.
        assert conn.execute("select * from sandbox.w").fetchall() == DECOY_ROWS
    assert run(target, "pg", admin, "select * from sandbox.w") == DECOY_ROWS
    # Invoker rights: the reader reads it through its grant on sandbox.secret …
    assert run(target, "pg", READER, "select * from sandbox.w") == DECOY_ROWS
    # … and a grant on a view alone (sandbox.v, under sandbox.*) gives nothing of what it reads.
    assert refused(target, "pg", READER, "select * from sandbox.v").code == "42501"
    assert run(target, "pg", admin, "select * from sandbox.v order by 1") == SECRET_ROWS
    serves(target)


# --- 6. identity ---------------------------------------------------------------------------

def test_a_token_without_a_subject_is_refused(target, idp):
    for claims in [idp.claims(oid=None, sub=None), idp.claims(oid="", sub="")]:
        token = idp.sign(claims)
        for front in FRONT_ENDS:
            e = refused(target, front, token, "select 1")
            assert "oid or sub" in e.message or e.code in ("UNAUTHENTICATED", "401", "RequestError",
                                                           "DatabaseError", "28P01"), (front, e)
    serves(target)


def test_one_principals_statements_are_not_anothers(target, idp):
    # Two tokens that name no subject used to share one empty id: one read the other's
    # results. Neither signs in now.
    victim = idp.sign(idp.claims(oid=None, sub=None, azp="victim-app", roles=["reader"]))
    thief = idp.sign(idp.claims(oid=None, sub=None, azp="thief-app", roles=["reader"]))
    status, answer = rest(target, victim, "POST", "/api/2.0/sql/statements",
                          {"statement": "select 42 as n", "warehouse_id": "default", "wait_timeout": "30s"})
    assert status == 401, answer
    if status == 200:  # what the old gateway did: the thief read it
        assert rest(target, thief, "GET", f"/api/2.0/sql/statements/{answer['statement_id']}")[0] == 404
    # Principals with subjects see only their own.
    alice = idp.sign(idp.claims(oid=None, sub="alice", roles=["reader"]))
    bob = idp.sign(idp.claims(oid=None, sub="bob", roles=["reader"]))
    status, answer = rest(target, alice, "POST", "/api/2.0/sql/statements",
                          {"statement": "select 42 as n", "warehouse_id": "default", "wait_timeout": "30s"})
    assert status == 200 and answer["status"]["state"] == "SUCCEEDED", answer
    statement = answer["statement_id"]
    assert rest(target, alice, "GET", f"/api/2.0/sql/statements/{statement}")[0] == 200
    for path in [f"/api/2.0/sql/statements/{statement}", f"/api/2.0/sql/statements/{statement}/result/chunks/0"]:
        status, _ = rest(target, bob, "GET", path)
        assert status == 404, path
    # The same subject from a static token is someone else too.
    assert rest(target, SVC, "GET", f"/api/2.0/sql/statements/{statement}")[0] == 404


def test_a_jwt_named_like_a_static_token_gets_none_of_its_grants(target, idp):
    assert run(target, "pg", SVC, "select count(*) from tpch.orders") == [(15000,)]
    for claims in [dict(preferred_username="svc"), dict(upn="svc", preferred_username="svc"),
                   dict(oid=None, sub="svc"), dict(oid="svc", azp="svc")]:
        token = idp.sign(idp.claims(roles=[], **claims))
        e = refused(target, "pg", token, "select count(*) from tpch.orders")
        assert e.code == "42501", (claims, e)
    serves(target)


def test_a_grant_must_say_what_kind_of_principal_it_names(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[[grants]]\nprincipals = ["svc"]\nselect = ["tpch.orders"]\n')
    with pytest.raises(RuntimeError) as refused_start:
        start_sluice("--config", str(config), timeout=60).stop()
    assert "token:" in str(refused_start.value)


# --- 3. Arrow IPC from clients -----------------------------------------------------------------

def test_compressed_parameters_claiming_terabytes_are_refused(target):
    client = FlightRaw(target.flight, READER)
    try:
        handle = client.prepare("select n_name from tpch.nation where n_nationkey = $1")
        with pytest.raises(grpc.RpcError) as e:
            client.do_put_prepared(handle, lz4_bomb())
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert "compressed" in e.value.details()
        # Buffers pointing past the body, and a header that is not a flatbuffer.
        header, body = ipc_messages(pa.record_batch({"p": pa.array([7], pa.int64())}))[-1]
        for messages in [[ipc_messages(pa.record_batch({"p": pa.array([7], pa.int64())}))[0], (header, body[:4])],
                         [(b"\xff" * 40, b"")]]:
            with pytest.raises(grpc.RpcError) as e:
                client.do_put_prepared(handle, messages)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        # The statement still takes honest parameters.
        client.do_put_prepared(handle, ipc_messages(pa.record_batch({"p": pa.array([7], pa.int64())})))
        assert client.do_get_prepared(handle)
    finally:
        client.close()
    serves(target)


# --- 7. quotas ---------------------------------------------------------------------------------

def test_one_principals_prepared_statements_do_not_crowd_out_anothers(target):
    greedy, other = FlightRaw(target.flight, NOGRANT), FlightRaw(target.flight, READER)
    try:
        for _ in range(20):
            greedy.prepare("select 1")
        with pytest.raises(grpc.RpcError) as e:
            greedy.prepare("select 1")
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_prepared_statements" in e.value.details()
        # Everyone else is unaffected.
        other.prepare("select 1")
        assert run(target, "flight", READER, "select count(*) from tpch.nation") == [(25,)]
    finally:
        greedy.close()
        other.close()


# --- 9. smaller --------------------------------------------------------------------------------

def test_cancel_flight_info_cancels_only_the_callers_statements(target):
    owner, other = FlightRaw(target.flight, READER), FlightRaw(target.flight, MANAGER)
    try:
        handle = owner.prepare("select count(*) from tpch.nation")
        assert other.cancel_flight_info(handle) == 3  # NOT_CANCELLABLE: as if unknown
        assert owner.do_get_prepared(handle)  # not cancelled
        assert owner.cancel_flight_info(handle) == 1  # CANCELLED
    finally:
        owner.close()
        other.close()


def rss_mib(server):
    for line in pathlib.Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def thrift_post(server, body, token=None):
    """POST a Thrift body; the status, headers and body of the answer (which may come, and
    the connection close, before the whole body is sent)."""
    host, port = server.http.split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = (f"POST /sql/1.0/warehouses/default HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-thrift\r\n"
            f"Content-Length: {len(body)}\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "") + "\r\n")

    def send():
        try:
            sock.sendall(head.encode() + body)
        except OSError:
            pass
    sender = threading.Thread(target=send)
    sender.start()
    response = http.client.HTTPResponse(sock)
    response.begin()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    sock.close()
    sender.join(60)
    return answer


def bool_bomb(n):
    """An ExecuteStatement call whose argument holds a list of `n` booleans: one byte each
    on the wire, tens in a decoded tree."""
    name = b"ExecuteStatement"
    header = struct.pack(">I", 0x80010001) + struct.pack(">i", len(name)) + name + struct.pack(">i", 1)
    return header + bytes([15]) + struct.pack(">h", 1) + bytes([2]) + struct.pack(">i", n) + b"\0" * n + b"\0"


# --- 7. exhausting the server ------------------------------------------------------------------

def test_a_large_thrift_body_costs_nothing_before_the_token_and_little_after(target):
    before = rss_mib(target)
    body = bool_bomb(15 << 20)
    status, headers, _ = thrift_post(target, body)
    assert status == 401, status
    status, headers, reply = thrift_post(target, body, READER)
    assert status == 200 and b"more than" in reply, (status, headers, reply[:200])
    # Decoding either would have cost hundreds of MB.
    assert rss_mib(target) - before < 150, (before, rss_mib(target))
    serves(target)


def raw_hs2(server, token):
    transport = THttpClient.THttpClient(f"{server.http_url}/sql/1.0/warehouses/default")
    transport.setCustomHeaders({"Authorization": f"Bearer {token}"})
    return TCLIService.Client(TBinaryProtocol.TBinaryProtocol(transport))


def open_hs2(client):
    return client.OpenSession(ttypes.TOpenSessionReq(
        client_protocol_i64=ttypes.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V7))


def test_hs2_sessions_and_operations_are_counted_per_principal(target):
    greedy = raw_hs2(target, NOGRANT)
    sessions = [open_hs2(greedy) for _ in range(20)]
    assert all(s.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS for s in sessions)
    refused_session = open_hs2(greedy)
    assert refused_session.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
    assert refused_session.status.sqlState == "53400" and "max_sessions" in refused_session.status.errorMessage
    # Another principal still opens sessions and runs statements.
    assert run(target, "hs2", READER, "select count(*) from tpch.nation") == [(25,)]
    handle = sessions[0].sessionHandle
    ops = [greedy.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=handle, statement="select 1",
                                                               runAsync=True)) for _ in range(30)]
    assert all(o.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS for o in ops), ops[-1].status
    refused_op = greedy.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=handle, statement="select 1"))
    assert refused_op.status.sqlState == "53400", refused_op.status
    assert run(target, "hs2", READER, "select count(*) from tpch.nation") == [(25,)]
    for s in sessions:
        greedy.CloseSession(ttypes.TCloseSessionReq(sessionHandle=s.sessionHandle))
    # Closed, they count no more.
    assert open_hs2(greedy).status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS


def test_kept_rest_results_are_bounded_per_principal(target):
    # About 0.9 MiB of JSON each: the third does not fit in the 2 MiB kept for a principal.
    sql = "select l_comment, l_orderkey from tpch.lineitem limit 12000"
    ids = []
    for _ in range(2):
        status, answer = rest(target, READER, "POST", "/api/2.0/sql/statements",
                              {"statement": sql.replace("lineitem", "nation").replace("limit 12000", ""),
                               "warehouse_id": "default", "wait_timeout": "30s"})
        assert status == 200
    for _ in range(3):
        status, answer = rest(target, MANAGER, "POST", "/api/2.0/sql/statements",
                              {"statement": "select repeat('x', 1000) from generate_series(1, 900)",
                               "warehouse_id": "default", "wait_timeout": "30s"})
        ids.append(answer["statement_id"])
    states = [a for a in (rest(target, MANAGER, "GET", f"/api/2.0/sql/statements/{i}")[1] for i in ids)]
    assert [a["status"]["state"] for a in states[:2]] == ["SUCCEEDED", "SUCCEEDED"], states
    assert states[2]["status"]["state"] == "FAILED"
    assert "max_stored_results_size" in states[2]["status"]["error"]["message"]
    # Closing one makes room again; other principals were never affected.
    assert rest(target, MANAGER, "DELETE", f"/api/2.0/sql/statements/{ids[0]}")[0] == 200
    status, answer = rest(target, MANAGER, "POST", "/api/2.0/sql/statements",
                          {"statement": "select repeat('x', 1000) from generate_series(1, 900)",
                           "warehouse_id": "default", "wait_timeout": "30s"})
    assert answer["status"]["state"] == "SUCCEEDED", answer
    # Statements are counted per principal too.
    for _ in range(40):
        status, answer = rest(target, NOGRANT, "POST", "/api/2.0/sql/statements",
                              {"statement": "select 1", "warehouse_id": "default", "wait_timeout": "0s"})
        if status != 200:
            break
    assert status == 429 and "max_operations" in answer["message"], (status, answer)
    assert run(target, "rest", READER, "select 1") == [("1",)]


def test_slow_http_clients_are_cut_off_and_capped(target):
    host, port = target.http.split(":")
    # Half a request line and nothing more: closed after the header timeout.
    idle = socket.create_connection((host, int(port)))
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    idle.settimeout(10)
    started = time.time()
    try:
        leftover = idle.recv(4096)
    except (ConnectionResetError, socket.timeout):
        leftover = b""
    assert time.time() - started < 8 and not leftover.startswith(b"HTTP/1.1 200"), leftover
    idle.close()
    # More idle connections than the cap: the others wait, then are served once the idle
    # ones are cut off.
    hogs = [socket.create_connection((host, int(port))) for _ in range(80)]
    for h in hogs:
        h.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.time()
    with urllib.request.urlopen(f"{target.http_url}/healthz", timeout=30) as r:
        assert r.status == 200
    assert time.time() - started < 15
    for h in hogs:
        h.close()
    serves(target)


def test_an_entra_sized_token_signs_in_over_pg(target, idp):
    # A token with many groups: 10-12 KB, more than pgwire's own 10,000-byte password limit.
    groups = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(300)]
    token = idp.sign(idp.claims(groups=groups, roles=["reader"]))
    assert 10_000 < len(token) < 65_000, len(token)
    assert run(target, "pg", token, "select count(*) from tpch.nation") == [(25,)]
    # Beyond 64 KiB: a clear refusal before the connection closes.
    e = refused(target, "pg", "x" * 70_000, "select 1")
    assert "too long" in e.message, e
    serves(target)


def test_malformed_pg_messages_get_a_protocol_error(target):
    """Messages whose bodies are shorter than their fields (pgwire's decoders read past
    them and panic; found by fuzz_pg_startup_and_messages), and a startup packet with an
    empty parameter name before its end."""
    for kind, body in [(b"P", b"s\0select 1\0"), (b"B", b"\0\0\0\x01"), (b"D", b"X\0"),
                       (b"E", b"\0\0")]:
        conn = PgRaw(target.pg_host, target.pg_port, "tester", READER, "default")
        conn.send(kind, body)
        reply, payload = conn.read()
        assert reply == b"E", (kind, reply)
        fields = PgRaw.error(payload)
        assert fields["C"] == "08P01" and fields["S"] == "FATAL", fields
        conn.sock.close()
    sock = socket.create_connection((target.pg_host, target.pg_port), timeout=30)
    body = struct.pack("!i", 196608) + b"user\0me\0\0p\0\0"
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    reply = sock.recv(1)
    assert reply in (b"E", b""), reply
    sock.close()
    serves(target)


def test_pg_statements_over_the_limit_are_refused_as_they_stream(target):
    with psycopg.connect(target.dsn(password=READER), autocommit=True) as conn:
        before = rss_mib(target)
        with pytest.raises(psycopg.Error) as e:
            conn.execute("select '" + "x" * (64 << 20) + "'")
        assert e.value.sqlstate == "54001", e.value
        assert rss_mib(target) - before < 100
        # The connection goes on.
        assert conn.execute("select count(*) from tpch.nation").fetchone() == (25,)


def test_the_result_cache_budget_bounds_memory(target):
    """Many distinct small cacheable statements (pgbench's `select n_name, :k …` shape):
    the gateway grows by about the cache's budget (4 MiB here), then evicts; it used to
    count 560 bytes for each ~10 KB an entry held, and grew to many times its budget."""
    with psycopg.connect(target.dsn(password=target.token), autocommit=True) as conn:
        for k in range(300):
            conn.execute(f"select n_name, {k} as k from tpch.nation where n_nationkey = {k % 25}").fetchall()
        start = rss_mib(target)
        for k in range(300, 4300):
            conn.execute(f"select n_name, {k} as k from tpch.nation where n_nationkey = {k % 25}").fetchall()
    cache = target.health()["cache"]
    grown = rss_mib(target) - start
    assert cache["evicted"] > 0 and cache["bytes"] <= 4 << 20, cache
    assert grown < 2 * 4 + 12, (grown, cache)


# --- 8. tokens in clear text -------------------------------------------------------------------

def test_http_credentials_need_tls_off_loopback(tmp_path):
    tag = f"sh{os.getpid() % 100000}"
    ns, host_if, ns_if = tag, f"{tag}h", f"{tag}n"
    octet = (os.getpid() + 7) % 250 + 1
    host_ip, ns_ip = f"198.19.{octet}.1", f"198.19.{octet}.2"

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        server = start_sluice("--pg-addr", f"{ns_ip}:0", "--http-addr", f"{ns_ip}:0", "--flight-addr", f"{ns_ip}:0",
                              default_ports=True, wrap=("ip", "netns", "exec", ns))
        try:
            for path, method, body in [("/api/1.0/whoami", "GET", None),
                                       ("/api/2.0/sql/statements", "POST",
                                        {"statement": "select 1", "warehouse_id": "default"}),
                                       ("/ui", "GET", None)]:
                status, answer = rest(server, server.token, method, path, body)
                assert status == 403 and "TLS" in answer["message"], (path, status, answer)
            status, headers, _ = thrift_post(server, bool_bomb(10), server.token)
            assert status == 403 and "TLS" in headers.get("x-thriftserver-error-message", ""), status
            with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=10) as r:
                assert r.status == 200
        finally:
            server.stop()
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


# --- 9. smaller, continued ---------------------------------------------------------------------

def test_files_in_the_data_dir_are_the_owners_alone(target):
    run(target, "rest", READER, "select 1")
    # A result kept as files (EXTERNAL_LINKS).
    status, answer = rest(target, READER, "POST", "/api/2.0/sql/statements",
                          {"statement": "select * from tpch.nation", "warehouse_id": "default",
                           "wait_timeout": "30s", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM"})
    assert answer["status"]["state"] == "SUCCEEDED", answer
    data = target.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    chunks = [p for p in (data / "statements").rglob("*") if p.is_file()]
    assert chunks
    for path in [data / "dev-token", data / "endpoints.json", data / "metadata.redb", *chunks]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    for path in [p for p in (data / "statements").rglob("*") if p.is_dir()]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_the_admin_page_cookie_is_no_token(target):
    conn = http.client.HTTPConnection(target.http, timeout=30)
    conn.request("POST", "/ui/login", body=f"token={target.token}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    r.read()
    assert r.status == 303
    cookie = r.getheader("Set-Cookie")
    value = cookie.split(";")[0].split("=", 1)[1]
    assert target.token not in cookie and len(value) >= 32
    for presented, signed_in in [(value, True), (target.token, False)]:
        conn.request("GET", "/ui", headers={"Cookie": f"sluice_ui={presented}"})
        page = conn.getresponse().read()
        assert (b'id="token"' not in page) == signed_in, presented
    conn.request("POST", "/ui/logout", headers={"Cookie": f"sluice_ui={value}"})
    conn.getresponse().read()
    conn.request("GET", "/ui", headers={"Cookie": f"sluice_ui={value}"})
    assert b'id="token"' in conn.getresponse().read()


def test_healthz_tells_strangers_nothing_about_workers(target):
    with urllib.request.urlopen(f"{target.http_url}/healthz", timeout=10) as r:
        body = json.loads(r.read())
    assert body == {"status": "ok"}, body
    assert "workers" in json.dumps(target.health())
    req = urllib.request.Request(f"{target.http_url}/healthz", headers={"Authorization": f"Bearer {READER}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok"}


def test_tokens_in_statements_are_not_recorded(target):
    for front in ("pg", "flight", "hs2", "rest"):
        run(target, front, READER, f"select '{READER}' as t, '{target.token}' as d")
    # Other tests' statements may end later than these (the history is shared): pick these out.
    deadline = time.monotonic() + 20
    while True:
        rows = run(target, "pg", target.token,
                   "select statement_text from system.query_history "
                   "where lower(statement_text) like '%as t, %as d%' and statement_text not like '%query_history%'")
        if len(rows) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rows) >= 4, run(target, "pg", target.token,
                               "select statement_text, state from system.query_history order by end_time desc limit 20")
    text = json.dumps(rows)
    assert READER not in text and target.token not in text and "***" in text
    # A running statement in system.queries too.
    done = threading.Event()

    def slow():
        try:
            run(target, "pg", READER,
                f"select '{READER}', count(*) from tpch.nation a, tpch.nation b, tpch.nation c, tpch.nation d, "
                "tpch.nation e where a.n_nationkey + b.n_nationkey + c.n_nationkey + d.n_nationkey "
                "+ e.n_nationkey < 0")
        except Refused:
            pass
        done.set()
    thread = threading.Thread(target=slow)
    thread.start()
    seen = wait_for(lambda: [r for r in run(target, "pg", target.token, "select statement_text from system.queries")
                             if "nation" in str(r)], 30, "the running statement")
    assert READER not in json.dumps(seen)
    thread.join(120)
    assert READER not in target.log()

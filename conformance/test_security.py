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
import os
import pathlib
import signal
import socket
import subprocess
import time

import duckdb
import psycopg
import pytest

import grpc
import pyarrow as pa

from attack import FRONT_ENDS, Refused, rest, run
from conftest import start_sluice, wait_for
from flightraw import FlightRaw, ipc_messages, lz4_bomb
from oidc import AUDIENCE, OidcProvider

NOGRANT = "nogrant-token-0123456789abcdef0123456789abcdef"
READER = "reader-token-0123456789abcdef0123456789abcdef"
MANAGER = "manager-token-0123456789abcdef0123456789abcdef"
SVC = "svc-token-0123456789abcdef0123456789abcdef0123"
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

[[grants]]
principals = ["token:svc"]
select = ["tpch.orders"]

[[grants]]
roles = ["reader"]
select = ["sandbox.*", "tpch.nation"]

[[grants]]
roles = ["manager"]
select = ["lake.*", "sandbox.*"]
privileges = ["MANAGE"]

[storage]
allowed_locations = ["{lake}/shared"]

[limits]
max_prepared_statements = 20
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

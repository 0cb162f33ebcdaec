"""Entra-style OIDC tokens, TLS and grants, end to end: a real OIDC provider (the npm
`oidc-provider`, shaped like Entra ID v1 and v2) issues tokens by client credentials; real
clients (psql, psycopg, asyncpg, PgJDBC, curl-like HTTP) log in with them over verified TLS.

Grants in this server: role Warehouse.Read (readonly-app) may SELECT tpch.nation only;
role Warehouse.Write (gateway-tests) may SELECT every tpch table; no-roles-app has none.
"""
import asyncio
import concurrent.futures
import json
import os
import pathlib
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import asyncpg
import psycopg
import pytest

from conftest import HERE, start_sluice
from oidc import AUDIENCE, OTHER_TENANT, TENANT, OidcProvider, b64, free_port
from pgraw import PgRaw

GRANTS = """
[auth]
jwks_min_refetch = "1s"

[[grants]]
roles = ["Warehouse.Read"]
select = ["tpch.nation"]

[[grants]]
roles = ["Warehouse.Write"]
select = ["sluice.tpch.*"]
"""


@pytest.fixture(scope="module")
def idp():
    v2 = OidcProvider("v2").start()
    v1 = OidcProvider("v1").start()
    yield v2, v1
    v2.stop()
    v1.stop()


@pytest.fixture(scope="module")
def secure(idp, tmp_path_factory):
    v2, v1 = idp
    config = tmp_path_factory.mktemp("auth") / "sluice.toml"
    config.write_text(GRANTS)
    server = start_sluice("--config", str(config), "--tls-self-signed",
                          "--oidc-issuer", v2.issuer, "--oidc-issuer", v1.issuer,
                          "--oidc-issuer", DOWN_ISSUER, "--oidc-audience", AUDIENCE)
    yield server
    server.stop()


# A trusted issuer nobody answers for: its tokens cannot be checked.
DOWN_ISSUER = f"http://127.0.0.1:{free_port()}/{TENANT}/v2.0"


def tls_dsn(server, token, **extra):
    params = dict(host="127.0.0.1", port=server.pg_port, user="powerbi-user", dbname="default",
                  password=token, sslmode="verify-full", sslrootcert=server.tls_cert)
    params.update(extra)
    return " ".join(f"{k}={v}" for k, v in params.items())


def refusal(server, token):
    """The ErrorResponse fields a login with `token` gets (plain TCP on loopback, where
    tokens are allowed, so the exact SQLSTATE can be read)."""
    with pytest.raises(RuntimeError) as refused:
        PgRaw(server.pg_host, server.pg_port, "tester", token, "default")
    return refused.value.args[0]


# --- logging in -----------------------------------------------------------------------------

def test_psql_over_verified_tls_with_an_entra_token(idp, secure):
    v2, _ = idp
    env = {**os.environ, "PGPASSWORD": v2.token("readonly-app"), "PGSSLMODE": "verify-full",
           "PGSSLROOTCERT": secure.tls_cert}
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(secure.pg_port), "-U", "powerbi-user", "-d", "default",
                          "-X", "-A", "-t", "-c", "\\conninfo", "-c", "SELECT count(*) FROM tpch.nation",
                          "-c", "SELECT current_user"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SSL connection" in out.stdout, out.stdout
    lines = out.stdout.strip().splitlines()
    assert lines[-2:] == ["25", "powerbi-user"], out.stdout


def test_psycopg_v1_and_v2_issuers(idp, secure):
    v2, v1 = idp
    for provider in (v2, v1):
        with psycopg.connect(tls_dsn(secure, provider.token("gateway-tests"))) as conn:
            assert conn.info.pgconn.ssl_in_use
            assert conn.execute("SELECT count(*) FROM tpch.region").fetchone() == (5,)


def test_asyncpg_with_a_token(idp, secure):
    v2, _ = idp
    token = v2.token("readonly-app")

    async def run():
        context = ssl.create_default_context(cafile=secure.tls_cert)
        conn = await asyncpg.connect(host="127.0.0.1", port=secure.pg_port, user="analyst", database="default",
                                     password=token, ssl=context)
        try:
            n = await conn.fetchval("SELECT count(*) FROM tpch.nation WHERE n_regionkey = $1", 1)
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM tpch.orders LIMIT 1")
            return n, await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    assert asyncio.run(run()) == (5, 1)


def test_pgjdbc_with_a_token(idp, secure, tmp_path):
    v2, _ = idp
    subprocess.run(["javac", "-d", str(tmp_path), str(HERE / "jdbc" / "TokenLogin.java")], check=True, timeout=300)
    url = (f"jdbc:postgresql://127.0.0.1:{secure.pg_port}/default?sslmode=verify-full"
           f"&sslrootcert={secure.tls_cert}")
    out = subprocess.run(["java", "-cp", f"{tmp_path}:/usr/share/java/postgresql.jar", "TokenLogin", url,
                          v2.token("readonly-app"), "SELECT * FROM tpch.nation",
                          "SELECT * FROM tpch.nation n JOIN tpch.region r ON n.n_regionkey = r.r_regionkey"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["rows=25", "denied=42501", "after=1"], out.stdout


def test_dev_token_still_reads_everything(secure):
    with psycopg.connect(tls_dsn(secure, secure.token)) as conn:
        assert conn.execute("SELECT count(*) FROM tpch.lineitem").fetchone()[0] > 0


# --- bad tokens -------------------------------------------------------------------------------

def bad_tokens(provider):
    good = provider.token("readonly-app")
    header, payload, signature = good.split(".")
    claims = json.loads(__import__("base64").urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["Warehouse.Write"]
    tampered_payload = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    now = int(time.time())
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.private_jwk()["kid"]}).encode())
    hs_body = b64(json.dumps(provider.claims()).encode())
    import hashlib
    import hmac
    hs_sig = b64(hmac.new(provider.public_pem(), f"{hs_header}.{hs_body}".encode(), hashlib.sha256).digest())
    return {
        "alg none": (f"{none_header}.{b64(json.dumps(provider.claims()).encode())}.", "not accepted"),
        "HS256 with the public key": (f"{hs_header}.{hs_body}.{hs_sig}", "HS256"),
        "expired": (provider.sign(provider.claims(exp=now - 3600, iat=now - 7200, nbf=now - 7200)), "expired"),
        "nbf in the future": (provider.sign(provider.claims(nbf=now + 3600)), "not valid yet"),
        "wrong audience": (provider.sign(provider.claims(aud="api://other")), "audience"),
        "wrong issuer": (provider.sign(provider.claims(iss="http://127.0.0.1:1/evil/v2.0")), "issuer"),
        "wrong tenant": (provider.sign(provider.claims(tid=OTHER_TENANT)), "tenant"),
        "unknown kid": (provider.sign(provider.claims(), kid="no-such-key"), "does not publish"),
        "tampered payload": (tampered_payload, "signature"),
        "tampered signature": (f"{header}.{payload}.{flipped}", "signature"),
        "truncated": (good[: len(good) // 3], "JWT"),
        "not a JWT": ("hello-i-am-not-a-token", "neither a known service token nor a JWT"),
    }


def test_bad_tokens_are_refused_with_the_reason_and_never_echoed(idp, secure):
    v2, _ = idp
    for case, (token, reason) in bad_tokens(v2).items():
        fields = refusal(secure, token)
        assert fields["C"] == "28P01", (case, fields)
        assert fields["S"] == "FATAL", (case, fields)
        assert reason in fields["M"], (case, fields["M"])
        assert token[-40:] not in fields["M"], case
        # The same refusal through a real driver over TLS.
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(tls_dsn(secure, token), connect_timeout=10)
        assert reason in str(refused.value), (case, str(refused.value))
    # 1 MB of junk: the pg front-end refuses a password message over 64 KiB as it streams
    # in, never holding it, and says so before it closes the connection; over HTTP the auth
    # layer says why.
    junk = "x" * (1 << 20)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(secure.dsn(password=junk, sslmode="disable"), connect_timeout=10)
    assert "password message is too long" in str(refused.value), str(refused.value)
    status, body, _ = whoami(secure, junk[:70_000])
    assert status == 401 and "too long" in body["message"], body
    status, _, _ = whoami(secure, junk)
    assert status in (400, 401, 431)
    # Nothing was lost: the server still answers, and no token reached the log.
    with psycopg.connect(tls_dsn(secure, v2.token("readonly-app"))) as conn:
        assert conn.execute("SELECT count(*) FROM tpch.nation").fetchone() == (25,)
    log = secure.log()
    for token, _ in bad_tokens(v2).values():
        signature = token.split(".")[-1]
        if len(signature) > 20:
            assert signature not in log
    assert "pg login refused" in log and "sha256:" in log
    assert "reason=\"expired\"" in log or "reason=expired" in log


def test_an_unreachable_issuer_is_the_servers_problem(idp, secure):
    v2, _ = idp
    token = v2.sign(v2.claims(iss=DOWN_ISSUER))
    fields = refusal(secure, token)
    assert fields["C"] == "57P03" and "cannot be fetched right now" in fields["M"], fields
    status, body, _ = whoami(secure, token)
    assert status == 503 and body["error"] == "temporarily_unavailable"


def test_groups_overage_is_reported(idp, secure):
    v2, _ = idp
    token = v2.sign(v2.claims(_claim_names={"groups": "src1"}, _claim_sources={"src1": {"endpoint": "x"}}))
    with psycopg.connect(tls_dsn(secure, token)) as conn:
        conn.execute("SELECT 1")
    assert "groups overage" in secure.log()
    assert whoami(secure, token)[1]["groups_overage"] is True


def test_key_rotation_costs_one_fetch_and_retires_old_tokens(tmp_path):
    provider = OidcProvider("v2").start()
    config = tmp_path / "sluice.toml"
    # This server also demands a role: apps without one are refused at login.
    config.write_text(GRANTS.replace("[auth]\n", '[auth]\nrequired_roles = ["Warehouse.Read", "sql.admin"]\n'))
    server = start_sluice("--config", str(config), "--oidc-issuer", provider.issuer, "--oidc-audience", AUDIENCE)
    try:
        old = provider.token("readonly-app")
        with psycopg.connect(server.dsn(password=old)) as conn:
            assert conn.execute("SELECT count(*) FROM tpch.nation").fetchone() == (25,)
        provider.restart_with_new_key()
        time.sleep(1.2)  # the server's least time between refetches (jwks_min_refetch)
        # Twenty logins at once, each with a new token signed by the new key: they share
        # one refetch (single flight) and all succeed.
        fresh = [provider.token("readonly-app") for _ in range(20)]

        def login(token):
            with psycopg.connect(server.dsn(password=token)) as conn:
                return conn.execute("SELECT count(*) FROM tpch.nation").fetchone()[0]

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            assert list(pool.map(login, fresh)) == [25] * 20
        # The restarted provider counts its own fetches: exactly the one refetch.
        assert provider.jwks_fetches() == 1
        for _ in range(20):
            with psycopg.connect(server.dsn(password=provider.token("readonly-app"))):
                pass
        assert provider.jwks_fetches() == 1
        fields = refusal(server, old)
        assert fields["C"] == "28P01" and "does not publish" in fields["M"], fields
        fields = refusal(server, provider.token("no-roles-app"))
        assert fields["C"] == "28P01" and "none of the required roles" in fields["M"], fields
    finally:
        server.stop()
        provider.stop()


def test_tokens_need_tls_off_loopback(tmp_path):
    """A pg listener on a non-loopback address (in a network namespace of the test's own,
    reached over a veth pair) refuses logins over plain TCP before the token is sent, and
    accepts the same token over TLS."""
    tag = f"sl{os.getpid() % 100000}"
    ns, host_if, ns_if = tag, f"{tag}h", f"{tag}n"
    octet = os.getpid() % 250 + 1
    host_ip, ns_ip = f"198.18.{octet}.1", f"198.18.{octet}.2"

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
        server = start_sluice("--pg-addr", f"{ns_ip}:0", "--http-addr", f"{ns_ip}:0", "--tls-self-signed",
                              default_ports=True, wrap=("ip", "netns", "exec", ns))
        try:
            assert server.pg_host == ns_ip
            with pytest.raises(RuntimeError) as refused:
                PgRaw(ns_ip, server.pg_port, "tester", server.token, "default")
            fields = refused.value.args[0]
            assert fields["C"] == "28000" and "TLS" in fields["M"], fields
            with pytest.raises(psycopg.OperationalError) as refused:
                psycopg.connect(server.dsn(sslmode="disable"))
            assert "only over TLS" in str(refused.value)
            with psycopg.connect(server.dsn(sslmode="verify-ca", sslrootcert=server.tls_cert)) as conn:
                assert conn.execute("SELECT count(*) FROM tpch.region").fetchone() == (5,)
            # Only the start-up banner shows the dev token (by design); no log line does.
            assert server.log().count(server.token) == 1
        finally:
            server.stop()
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


# --- grants -----------------------------------------------------------------------------------

def test_a_principal_sees_and_reads_only_its_grants(idp, secure):
    v2, _ = idp
    with psycopg.connect(tls_dsn(secure, v2.token("readonly-app")), autocommit=True) as conn:
        def rows(sql):
            return conn.execute(sql).fetchall()

        assert rows("SELECT count(*) FROM tpch.nation") == [(25,)]
        # The system tables (warehouse state) are there for everyone; of the data tables,
        # only the granted one.
        user_tables = "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        assert rows(f"SELECT table_schema, table_name FROM information_schema.tables {user_tables}") == \
            [("system", "cache"), ("system", "queries"), ("system", "query_history"), ("system", "warehouses"),
             ("system", "workers"), ("tpch", "nation")]
        assert rows("SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'tpch'") == \
            [("nation",)]
        assert rows("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'tpch'") == [("tpch", "nation")]
        # nation and the index of its (informational) primary key; no other table's.
        assert rows("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'tpch'") == [("nation",), ("nation_pkey",)]
        assert rows("SELECT count(DISTINCT attrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tpch'") == [(2,)]
        # Its foreign key names region, which this principal may not read: hidden.
        assert rows("SELECT conname FROM pg_constraint WHERE connamespace = 'tpch'::regnamespace") == \
            [("nation_pkey",)]
        # Row types and their arrays: only nation's.
        assert rows("SELECT typname FROM pg_type WHERE typname IN ('nation', '_nation', 'orders', '_orders', "
                    "'region', '_region') ORDER BY 1") == [("_nation",), ("nation",)]
        # Nor do the names of unreadable tables' row types come out through the functions
        # that print a type (a regtype, format_type, pg_describe_object).
        with psycopg.connect(tls_dsn(secure, v2.token("gateway-tests"))) as admin:
            orders, orders_array, nation = admin.execute(
                "SELECT oid, typarray, 'tpch.nation'::regtype::oid FROM pg_type WHERE typname = 'orders'"
            ).fetchone()
        assert rows(f"SELECT {orders}::regtype::text, {orders_array}::regtype::text, format_type({orders}, NULL), "
                    f"format_type({orders_array}, NULL), pg_describe_object(1247, {orders}, 0)") == \
            [(str(orders), str(orders_array), "???", "???", None)]
        assert rows(f"SELECT {nation}::regtype::text, format_type({nation}, NULL), "
                    f"pg_describe_object(1247, {nation}, 0)") == [("tpch.nation", "nation", "type tpch.nation")]
        assert rows("SELECT has_table_privilege('tpch.nation', 'SELECT'), "
                    "has_table_privilege('tpch.orders', 'SELECT'), "
                    "has_table_privilege('tpch.nation', 'INSERT')") == [(True, False, False)]
        denied = {
            "table": "SELECT * FROM tpch.orders",
            "join": "SELECT * FROM tpch.nation n JOIN tpch.region r ON n.n_regionkey = r.r_regionkey",
            "subquery": "SELECT * FROM tpch.nation WHERE n_regionkey IN (SELECT r_regionkey FROM tpch.region)",
            "scalar subquery": "SELECT n_name, (SELECT count(*) FROM tpch.customer) FROM tpch.nation",
            "exists": "SELECT 1 FROM tpch.nation WHERE EXISTS (SELECT 1 FROM tpch.supplier s WHERE s.s_nationkey = n_nationkey)",
            "cte": "WITH r AS (SELECT * FROM tpch.region) SELECT * FROM tpch.nation, r",
            "union": "SELECT n_name FROM tpch.nation UNION ALL SELECT r_name FROM tpch.region",
            "explain": "EXPLAIN SELECT * FROM tpch.lineitem",
            "search_path": "SET search_path = tpch; SELECT * FROM part",
        }
        for case, sql in denied.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(sql)
            message = str(refused.value)
            assert "permission denied for table tpch." in message, (case, message)
            assert "readonly-app" in message, (case, message)
            # The session goes on.
            assert rows("SELECT 1") == [(1,)]
        conn.execute("RESET search_path")
        # Prepared statements (extended protocol) are checked the same way.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM tpch.orders WHERE o_orderkey = %s", (1,), prepare=True)


def test_no_grant_means_no_tables(idp, secure):
    v2, _ = idp
    with psycopg.connect(tls_dsn(secure, v2.token("no-roles-app"))) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tpch'"
                            ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'tpch'").fetchone() == (0,)
        # Nor does the schema's name come out through a regnamespace or pg_describe_object.
        with psycopg.connect(tls_dsn(secure, v2.token("gateway-tests"))) as admin:
            (tpch,) = admin.execute("SELECT 'tpch'::regnamespace::oid").fetchone()
        assert conn.execute(f"SELECT {tpch}::regnamespace::text, pg_describe_object(2615, {tpch}, 0)"
                            ).fetchone() == (str(tpch), None)
        # The system catalogs stay readable: clients need them to connect.
        assert conn.execute("SELECT count(*) > 0 FROM pg_type").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM tpch.nation")


def test_wider_grant_reads_more(idp, secure):
    v2, _ = idp
    with psycopg.connect(tls_dsn(secure, v2.token("gateway-tests"))) as conn:
        assert conn.execute("SELECT count(*) FROM tpch.nation n JOIN tpch.region r ON n.n_regionkey = r.r_regionkey"
                            ).fetchone() == (25,)
        names = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'tpch' "
                             "ORDER BY 1").fetchall()
        assert [n for (n,) in names] == ["customer", "lineitem", "nation", "orders", "part", "partsupp",
                                         "region", "supplier"]


# --- HTTP ---------------------------------------------------------------------------------------

def whoami(server, token=None, raw_header=None):
    headers = {}
    if raw_header is not None:
        headers["Authorization"] = raw_header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{server.http_url}/api/1.0/whoami", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=server.ssl_context()) as r:
            return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = {"raw": text}  # refused before sluice's handler (e.g. 431 from the HTTP layer)
        return e.code, body, {k.lower(): v for k, v in e.headers.items()}


def test_http_bearer_and_401s(idp, secure):
    v2, _ = idp
    token = v2.token("readonly-app")
    status, body, _ = whoami(secure, token)
    assert status == 200
    assert body["id"] == "oid:aaaaaaaa-0000-0000-0000-000000000002"
    assert body["name"] == "readonly-app" and body["roles"] == ["Warehouse.Read"]
    assert body["tenant"] == "11111111-2222-3333-4444-555555555555"
    assert body["reads_all_tables"] is False

    status, body, headers = whoami(secure)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    expired = v2.sign(v2.claims(exp=int(time.time()) - 3600))
    status, body, headers = whoami(secure, expired)
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert "expired" in headers["www-authenticate"] and "expired" in body["message"]
    assert expired.split(".")[2] not in json.dumps(body) + json.dumps(headers)
    status, _, _ = whoami(secure, raw_header=f"Basic {token}")
    assert status == 401


def test_tls_from_certificate_files(secure, tmp_path):
    """--tls-cert/--tls-key: a certificate the operator provides (here: a copy of another
    server's), verified by the client."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(pathlib.Path(secure.tls_cert).read_bytes())
    key.write_bytes((pathlib.Path(secure.tls_cert).parent / "self-signed.key").read_bytes())
    server = start_sluice("--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert server.tls_cert == str(cert)
        with psycopg.connect(server.dsn(sslmode="verify-full", sslrootcert=str(cert))) as conn:
            assert conn.info.pgconn.ssl_in_use
            assert conn.execute("SELECT count(*) FROM tpch.region").fetchone() == (5,)
    finally:
        server.stop()

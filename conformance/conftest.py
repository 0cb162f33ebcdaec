"""The conformance harness: start a real `sluice serve` and drive real clients at it.

Each test gets the session-wide server from the `sluice` fixture (TPC-H at scale 0.01,
ports chosen by the kernel, a temporary data dir), or starts its own with `start_sluice`
when it needs to break something.
"""
import contextlib
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HERE = pathlib.Path(__file__).resolve().parent
SCALE = "0.01"


def sluice_bin() -> str:
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "sluice")


class Sluice:
    """A running `sluice serve` and how to reach it."""

    def __init__(self, proc, data_dir, log_path, owns_dir):
        self.proc = proc
        self.data_dir = pathlib.Path(data_dir)
        self.log_path = log_path
        self.owns_dir = owns_dir
        endpoints = json.loads((self.data_dir / "endpoints.json").read_text())
        self.pg_host, port = endpoints["pg"].rsplit(":", 1)
        self.pg_port = int(port)
        self.http = endpoints["http"]
        self.flight = endpoints.get("flight")
        # With TLS on, every listener speaks it; the certificate verifies the server.
        self.tls_cert = endpoints.get("tls", {}).get("cert")
        self.http_url = f"{'https' if self.tls_cert else 'http'}://{self.http}"
        token_file = self.data_dir / "dev-token"
        self.token = token_file.read_text().strip() if token_file.exists() else None

    def dsn(self, **extra) -> str:
        params = dict(host=self.pg_host, port=self.pg_port, user="tester", dbname="default",
                      password=self.token, sslmode="disable")
        params.update(extra)
        return " ".join(f"{k}={v}" for k, v in params.items())

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.tls_cert) if self.tls_cert else None

    def health(self) -> dict:
        """/healthz; with the dev token (a MONITOR principal) it has the details. A 503 (no
        worker of the default warehouse ready, e.g. while one is being replaced) carries the
        same document with `status` "starting"; it is returned, not raised."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(f"{self.http_url}/healthz", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.ssl_context()) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            return json.loads(e.read())

    def log(self) -> str:
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_sluice(*args, data_dir=None, cwd=None, scale=SCALE, default_ports=False, timeout=300, env=None,
                 wrap=()) -> Sluice:
    """Start `sluice serve` and wait until /healthz answers 200. `wrap` runs it under another
    command (e.g. `ip netns exec NAME`)."""
    owns_dir = data_dir is None and cwd is None
    if owns_dir:
        data_dir = tempfile.mkdtemp(prefix="sluice-test-")
    cmd = [*wrap, sluice_bin(), "serve"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    else:
        data_dir = pathlib.Path(cwd) / "sluice-data"
    if not default_ports:
        cmd += ["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"]
    if scale is not None:
        cmd += ["--demo-scale", scale]
    cmd += list(args)
    log_path = tempfile.mktemp(prefix="sluice-log-", suffix=".txt")
    extra_env = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.setdefault("SLUICE_LOG", "info")
    env.update(extra_env)
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, cwd=cwd, env=env)
    deadline = time.time() + timeout
    endpoints = pathlib.Path(data_dir) / "endpoints.json"
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sluice exited with {proc.returncode}:\n{pathlib.Path(log_path).read_text()}")
        if endpoints.exists():
            try:
                s = Sluice(proc, data_dir, log_path, owns_dir)
                if s.health().get("status") == "ok":
                    return s
            except (OSError, ValueError, KeyError, urllib.error.URLError):
                pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"sluice did not become healthy:\n{pathlib.Path(log_path).read_text()}")


@contextlib.contextmanager
def configured_sluice(tmp_path_factory, name, config_text, *args):
    """`sluice serve --config` with `config_text` written to a fresh `<name>` directory, for
    the length of a `with` block (a module's `server` fixture)."""
    config = tmp_path_factory.mktemp(name) / "sluice.toml"
    config.write_text(config_text)
    server = start_sluice("--config", str(config), *args)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def monitor(server):
    """A pg session on the module's `server` (the default warehouse) that watches system.*."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        yield conn


def wait_for(predicate, timeout, what):
    """The first truthy value of `predicate()`, polled every 50 ms for `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write_parquet(path, sql):
    """The rows of a DuckDB query as a Parquet file at `path`, appearing whole (written
    aside, then renamed into place, as writers of lakes do)."""
    import duckdb
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    duckdb.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet)")
    os.replace(tmp, path)


def process_gone(pid) -> bool:
    """The process has exited: no /proc entry, or a zombie not yet reaped (the entry can
    vanish between two reads, so every read may fail)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def self_signed(tmp_path, ip, stem=None):
    """A certificate for `ip` (an address, or a list of them: one certificate several
    workers share) and its key, made with `cryptography`, written as `<stem>.crt` and
    `<stem>.key` (stem: the first address)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ips = [ip] if isinstance(ip, str) else list(ip)
    ip = ips[0]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice-worker")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in ips]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    stem = stem or ip
    cert_path, key_path = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="session")
def sluice():
    server = start_sluice()
    yield server
    server.stop()


# The comparison server: a real PostgreSQL, and a database there shaped like sluice's demo.
PG = "host=127.0.0.1 port=5432 user=postgres"
REFERENCE_DB = "sluice_conformance"


@pytest.fixture(scope="session")
def reference(sluice):
    """A PostgreSQL database with sluice's tpch tables recreated (same columns, types,
    nullability, rows), built from sluice's own information_schema and COPY, and a `system`
    schema (where sluice's warehouse state lives)."""
    with psycopg.connect(PG + " dbname=postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (REFERENCE_DB,)).fetchone():
            c.execute(f"CREATE DATABASE {REFERENCE_DB}")
    with psycopg.connect(sluice.dsn(), autocommit=True) as s:
        columns = s.execute(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'tpch' "
            "ORDER BY table_name, ordinal_position").fetchall()
        system_columns = s.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'system' ORDER BY table_name, ordinal_position").fetchall()
    assert columns, "sluice's information_schema lists no tpch columns"
    assert system_columns, "sluice's information_schema lists no system columns"
    tables = {}
    for table, column, data_type, precision, scale, nullable in columns:
        if data_type == "numeric" and precision is not None:
            data_type = f"numeric({precision},{scale})"
        tables.setdefault(table, []).append(
            f"{column} {data_type}{' NOT NULL' if nullable == 'NO' else ''}")
    dsn = PG + f" dbname={REFERENCE_DB}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS tpch CASCADE")
        c.execute("CREATE SCHEMA tpch")
        c.execute("DROP SCHEMA IF EXISTS system CASCADE")
        c.execute("CREATE SCHEMA system")
        # sluice's system tables are views over its own state (PostgreSQL gives views row
        # types too, which getTypeInfo lists), with their columns (empty here).
        views = {}
        for view, column, data_type in system_columns:
            views.setdefault(view, []).append(f"NULL::{data_type} AS {column}")
        for view, cols in views.items():
            c.execute(f"CREATE VIEW system.{view} AS SELECT {', '.join(cols)} WHERE false")
        for table, cols in tables.items():
            c.execute(f"CREATE TABLE tpch.{table} ({', '.join(cols)})")
        # The same rows: statements that read data (a tool's preview, a dashboard's query)
        # are compared too.
        with psycopg.connect(sluice.dsn(), autocommit=True) as s:
            for table in tables:
                with s.cursor().copy(f"COPY tpch.{table} TO STDOUT") as source, \
                        c.cursor().copy(f"COPY tpch.{table} FROM STDIN") as sink:
                    for data in source:
                        sink.write(data)
        # TPC-H's keys (the specification, 1.4.2), which sluice's demo declares as
        # informational keys.
        for table, key in TPCH_PRIMARY_KEYS.items():
            c.execute(f"ALTER TABLE tpch.{table} ADD PRIMARY KEY ({key})")
        for table, columns, referenced in TPCH_FOREIGN_KEYS:
            c.execute(f"ALTER TABLE tpch.{table} ADD FOREIGN KEY ({columns}) REFERENCES tpch.{referenced}")
        c.execute("ANALYZE")
    return dsn


TPCH_PRIMARY_KEYS = {
    "region": "r_regionkey", "nation": "n_nationkey", "part": "p_partkey",
    "supplier": "s_suppkey", "partsupp": "ps_partkey, ps_suppkey", "customer": "c_custkey",
    "orders": "o_orderkey", "lineitem": "l_orderkey, l_linenumber",
}
TPCH_FOREIGN_KEYS = [
    ("nation", "n_regionkey", "region"), ("supplier", "s_nationkey", "nation"),
    ("partsupp", "ps_partkey", "part"), ("partsupp", "ps_suppkey", "supplier"),
    ("customer", "c_nationkey", "nation"), ("orders", "o_custkey", "customer"),
    ("lineitem", "l_orderkey", "orders"), ("lineitem", "l_partkey, l_suppkey", "partsupp"),
]

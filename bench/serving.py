"""What the bench harnesses share: a release `sluice serve` started on free ports for the
length of a `with` block, the resident memory of a process, pgbench, and the 22 TPC-H
queries timed through any engine (DuckDB as the reference)."""
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import time

QUERIES = pathlib.Path(__file__).resolve().parents[1] / "conformance" / "tpch" / "queries"
TPCH_TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


@contextlib.contextmanager
def sluice(target, data, out, scale, config_text=None, binary=None):
    """Start `<target>/release/sluice serve` (or `binary`) on `data` (generating TPC-H at
    `scale` there if needed), logging to `out/sluice.log`; yields (process, endpoints, dev
    token) once the endpoints are written, and stops the server on exit."""
    out = pathlib.Path(out)
    binary = binary or pathlib.Path(target) / "release" / "sluice"
    cmd = [str(binary), "serve", "--data-dir", str(data),
           "--demo-scale", str(scale), "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
           "--flight-addr", "127.0.0.1:0"]
    if config_text is not None:
        config = out / "sluice.toml"
        config.write_text(config_text)
        cmd += ["--config", str(config)]
    endpoints = pathlib.Path(data) / "endpoints.json"
    endpoints.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, stdout=open(out / "sluice.log", "w"), stderr=subprocess.STDOUT)
    try:
        while not endpoints.exists():
            if proc.poll() is not None:
                raise SystemExit((out / "sluice.log").read_text())
            time.sleep(0.5)
        token = (pathlib.Path(data) / "dev-token").read_text().strip()
        yield proc, json.loads(endpoints.read_text()), token
    finally:
        proc.terminate()
        proc.wait(30)


def wait_ready(dsn, timeout=900):
    """Until a query on a data table answers through pg at `dsn` (the workers are up)."""
    import psycopg
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("select count(*) from tpch.region").fetchall()
                return
        except psycopg.Error:
            time.sleep(1)
    raise SystemExit("the gateway did not become ready")


def free_port(host="127.0.0.1"):
    """A port the kernel has free on `host` now."""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rss_bytes(pid, field="VmRSS"):
    """A process's resident memory (`VmHWM`: its peak so far), from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def pgbench(out, dsn_args, password, sql, clients, seconds, log_prefix=None, mode="simple"):
    """pgbench running `sql` (a script: `\\set` lines, then the statement) from `clients`
    connections for `seconds` with the given protocol (`simple`, `extended`, `prepared`),
    in `out`: (transactions per second, failed transactions)."""
    out = pathlib.Path(out)
    script = out / "bench.sql"
    script.write_text(sql + ";\n")
    cmd = ["pgbench", "-n", "-M", mode, "-f", str(script), "-c", str(clients), "-j", "2", "-T", str(seconds)]
    if log_prefix:
        for old in out.glob(pathlib.Path(log_prefix).name + "*"):
            old.unlink()
        cmd += ["-l", f"--log-prefix={log_prefix}"]
    env = dict(os.environ, PGPASSWORD=password) if password else dict(os.environ)
    run = subprocess.run(cmd + dsn_args, capture_output=True, text=True, env=env, cwd=out)
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    tps = next(float(line.split("=")[1].split()[0]) for line in run.stdout.splitlines()
               if line.startswith("tps"))
    failed = next((int(line.split(":")[1].split()[0]) for line in run.stdout.splitlines()
                   if "failed transactions" in line), 0)
    return tps, failed


def hs2_raw_select_one(address, token):
    """`SELECT 1` as databricks-sql-connector sends it (ExecuteStatement with direct results),
    encoded once and sent as one HTTP POST on a kept-alive connection: a function that runs
    it once (the server's share of a statement; the connector's own Python is most of its)."""
    import http.client

    from databricks.sql.thrift_api.TCLIService import TCLIService, ttypes
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import THttpClient, TTransport

    path = "/sql/1.0/warehouses/default"
    transport = THttpClient.THttpClient(f"http://{address}{path}")
    transport.setCustomHeaders({"Authorization": f"Bearer {token}"})
    client = TCLIService.Client(TBinaryProtocol.TBinaryProtocol(transport))
    session = client.OpenSession(ttypes.TOpenSessionReq(client_protocol_i64=42247)).sessionHandle
    buf = TTransport.TMemoryBuffer()
    proto = TBinaryProtocol.TBinaryProtocol(buf)
    proto.writeMessageBegin("ExecuteStatement", 1, 1)
    TCLIService.ExecuteStatement_args(req=ttypes.TExecuteStatementReq(
        sessionHandle=session, statement="SELECT 1", runAsync=True, canReadArrowResult=True,
        getDirectResults=ttypes.TSparkGetDirectResults(maxRows=100000, maxBytes=104857600))).write(proto)
    body = buf.getvalue()
    raw = http.client.HTTPConnection(address)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-thrift"}

    def select_one():
        raw.request("POST", path, body=body, headers=headers)
        response = raw.getresponse()
        assert response.status == 200
        response.read()
    return select_one


def tpch_times(run, runs):
    """Median seconds and row count of each of the 22 queries, `run(sql)` returning rows."""
    times, counts = {}, {}
    for n in range(1, 23):
        sql = (QUERIES / f"q{n}.sql").read_text()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            rows = run(sql)
            samples.append(time.perf_counter() - started)
        times[n], counts[n] = statistics.median(samples), len(rows)
    return times, counts


def tpch_duckdb(data, runs):
    """`tpch_times` of DuckDB (2 threads, as the machine's cores) on the Parquet files
    under `data`/tpch."""
    import duckdb
    db = duckdb.connect()
    db.execute("set threads = 2")
    db.execute("create schema tpch")
    for table in TPCH_TABLES:
        db.execute(f"create view tpch.{table} as select * from read_parquet('{data}/tpch/{table}/*.parquet')")
    return tpch_times(lambda sql: db.execute(sql).fetchall(), runs)

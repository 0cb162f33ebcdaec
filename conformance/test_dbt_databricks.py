"""dbt-databricks (its own venv, conformance/.venv-dbt) against `sluice serve` over HTTPS with a
self-signed certificate, as a dbt user points it at a Databricks SQL warehouse: `dbt debug`,
`dbt run` twice (the second replaces what the first built), `dbt test` (generic tests) and
`dbt docs generate` (which reads `system`.`information_schema`.`tables` and `.columns`). The
project (conformance/dbt_databricks) builds views over the demo's TPC-H schema; their rows are
compared with DuckDB's answer over the same Parquet files."""
import decimal
import json
import os
import shutil
import subprocess

import duckdb
import pytest
from databricks import sql as dbsql

from conftest import HERE, start_sluice

DBT = HERE / ".venv-dbt" / "bin" / "dbt"
PROJECT = HERE / "dbt_databricks"
SCHEMA = "dbt_models"


@pytest.fixture(scope="module")
def server():
    s = start_sluice("--tls-self-signed")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def project(server, tmp_path_factory):
    """A copy of the project with a profile for this server (host with its port: the SDK's
    metadata probe and token header; `_connection_uri`: the connector's own URL)."""
    root = tmp_path_factory.mktemp("dbt")
    shutil.copytree(PROJECT, root / "project")
    host, port = server.http.rsplit(":", 1)
    (root / "profiles.yml").write_text(json.dumps({"sluice": {"target": "dev", "outputs": {"dev": {
        "type": "databricks", "host": f"{host}:{port}", "http_path": "/sql/1.0/warehouses/default",
        "token": server.token, "catalog": "sluice", "schema": SCHEMA, "threads": 2,
        "connection_parameters": {
            "_connection_uri": f"https://{host}:{port}/sql/1.0/warehouses/default",
            "_tls_trusted_ca_file": server.tls_cert, "enable_telemetry": False},
    }}}}))
    return root


def dbt(server, project, *args):
    """Run a dbt command in the project; its output. The SDK's requests session trusts the
    server's certificate through REQUESTS_CA_BUNDLE, the connector through the profile."""
    env = {**os.environ, "DBT_PROFILES_DIR": str(project), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
           "DBT_LOG_PATH": str(project / "logs"), "REQUESTS_CA_BUNDLE": server.tls_cert,
           "SSL_CERT_FILE": server.tls_cert}
    out = subprocess.run([str(DBT), *args, "--no-use-colors"], cwd=project / "project", env=env,
                         capture_output=True, text=True, timeout=600)
    log = (project / "logs" / "dbt.log")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:] + (
        log.read_text()[-6000:] if log.exists() else "")
    return out.stdout


def connect(server):
    host, port = server.http.rsplit(":", 1)
    return dbsql.connect(server_hostname=host, http_path="/sql/1.0/warehouses/default",
                         access_token=server.token, enable_telemetry=False,
                         _connection_uri=f"https://{host}:{port}/sql/1.0/warehouses/default",
                         _tls_trusted_ca_file=server.tls_cert)


def duck(server, sql):
    con = duckdb.connect()
    for table in ["orders", "customer", "nation", "region"]:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{server.data_dir}/tpch/{table}/*.parquet')")
    return con.execute(sql).fetchall()


REVENUE = """
select n.n_name, r.r_name, cast(extract(year from o.o_orderdate) as varchar), count(*),
       cast(sum(o.o_totalprice) as decimal(18, 2))
from orders o join customer c on o.o_custkey = c.c_custkey
join nation n on c.c_nationkey = n.n_nationkey join region r on n.n_regionkey = r.r_regionkey
group by 1, 2, 3 order by 1, 3"""


def test_debug_run_twice_test_and_docs(server, project):
    assert "All checks passed" in dbt(server, project, "debug")
    for _ in range(2):
        out = dbt(server, project, "run")
        assert "Completed successfully" in out and "PASS=2" in out, out
    out = dbt(server, project, "test")
    assert "Completed successfully" in out and "PASS=6" in out, out

    with connect(server) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT nation, region, order_year, orders, revenue FROM sluice.{SCHEMA}.revenue_by_nation "
                    "ORDER BY nation, order_year")
        got = [tuple(r) for r in cur.fetchall()]
        cur.execute(f"SHOW VIEWS IN {SCHEMA}")
        views = sorted(r[1] for r in cur.fetchall())
    assert got == duck(server, REVENUE) and len(got) > 100
    assert isinstance(got[0][4], decimal.Decimal)
    assert views == ["nations", "revenue_by_nation"]

    dbt(server, project, "docs", "generate")
    catalog = json.loads((project / "project" / "target" / "catalog.json").read_text())
    nodes = catalog["nodes"]
    nations = nodes["model.sluice_tpch.nations"]
    assert nations["metadata"]["type"] == "view" and nations["metadata"]["database"] == "sluice"
    assert [(c["name"], c["type"], c["index"]) for c in
            sorted(nations["columns"].values(), key=lambda c: c["index"])] == \
        [("nation_key", "bigint", 0), ("nation", "string", 1), ("region", "string", 2)]
    revenue = nodes["model.sluice_tpch.revenue_by_nation"]["columns"]
    assert {c: revenue[c]["type"] for c in ["order_year", "orders", "revenue", "built_at"]} == \
        {"order_year": "string", "orders": "bigint", "revenue": "decimal(18,2)", "built_at": "timestamp"}
    # Sources (external tables) are documented the same way.
    assert catalog["sources"]["source.sluice_tpch.tpch.nation"]["metadata"]["type"] == "table"

"""node-postgres (npm `pg`): unnamed and named prepared statements, a simple query, types,
and a session that survives an error."""
import json
import os
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent


def test_node_postgres_prepared_statements(sluice):
    node_dir = HERE / "node"
    assert (node_dir / "node_modules" / "pg").exists(), "run ./test.sh (npm ci in conformance/node)"
    env = dict(os.environ, PGHOST=sluice.pg_host, PGPORT=str(sluice.pg_port), PGUSER="tester",
               PGPASSWORD=sluice.token, PGDATABASE="sluice")
    run = subprocess.run(["node", "prepared.js"], cwd=node_dir, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["unnamed"] == [{"n_name": "CANADA"}]
    assert out["named"] == [{"n_name": "GERMANY", "n_regionkey": "3"},
                            {"n_name": "VIETNAM", "n_regionkey": "2"}]
    assert out["simple"] == [{"n": "5"}]
    assert out["types"] == [{"date": True, "price": "172799.49", "key": "1"}]
    assert out["error"] == "42P01"
    assert out["after_error"] == [{"n_name": "ALGERIA", "n_regionkey": "0"}]

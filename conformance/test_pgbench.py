"""pgbench with a custom script, 64 clients, in all three query modes: simple (literals in
a Query message), extended (unnamed Parse/Bind/Execute each time) and prepared (named
statements parsed once per connection). No transaction may fail."""
import os
import pathlib
import re
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.parametrize("script", ["point.sql", "select1.sql"])
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_64_clients(sluice, mode, script):
    env = dict(os.environ, PGPASSWORD=sluice.token)
    run = subprocess.run(
        ["pgbench", "-n", "-M", mode, "-c", "64", "-j", "4", "-t", "10",
         "-f", str(HERE / "pgbench" / script),
         "-h", sluice.pg_host, "-p", str(sluice.pg_port), "-U", "tester", "sluice"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "number of transactions actually processed: 640/640" in run.stdout, run.stdout
    failed = re.search(r"number of failed transactions: (\d+)", run.stdout)
    assert failed and failed.group(1) == "0", run.stdout
    assert "error" not in run.stderr.lower(), run.stderr

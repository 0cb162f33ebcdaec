"""The demo warehouse exactly as the README runs it, and results that stream.

One server for the module: default ports (5433, 8080), default scale (0.1), default data
dir (./sluice-data in a temporary working directory) — the README's run command.
"""
import asyncio
import subprocess

import asyncpg
import pytest

from conftest import start_sluice


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    server = start_sluice(cwd=cwd, scale=None, default_ports=True, timeout=900)
    server.cwd = cwd
    yield server
    server.stop()


def test_readme_psql_command(demo):
    assert demo.pg_port == 5433
    readme_line = (
        'psql "host=127.0.0.1 port=5433 user=me password=$(cat sluice-data/dev-token) sslmode=disable" '
        '-c "select count(*) from tpch.lineitem"'
    )
    out = subprocess.run(["bash", "-c", readme_line], cwd=demo.cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "600572" in out.stdout


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_large_result_streams_in_bounded_memory(demo):
    """Read all of lineitem slowly: mid-way, the worker is still producing and neither
    process holds the result (600k rows, ~100 MB as text)."""
    workers = demo.health()["warehouses"][0]["workers"]
    pids = {"gateway": demo.proc.pid, **{f"worker{w['id']}": w["pid"] for w in workers}}
    before = {name: rss_mib(pid) for name, pid in pids.items()}

    async def read_slowly():
        conn = await asyncpg.connect(host="127.0.0.1", port=5433, user="me", password=demo.token,
                                     database="default", ssl=False)
        try:
            rows = 0
            during = None
            async with conn.transaction():
                async for _ in conn.cursor("select * from tpch.lineitem", prefetch=2000):
                    rows += 1
                    if rows == 50_000:
                        await asyncio.sleep(3)  # a slow client
                        during = {name: rss_mib(pid) for name, pid in pids.items()}
                        running = sum(w["running"] for w in demo.health()["warehouses"][0]["workers"])
                        assert running == 1, "the query should still be running on its worker"
            return rows, during
        finally:
            await conn.close()

    rows, during = asyncio.run(read_slowly())
    assert rows == 600572
    growth = {name: during[name] - before[name] for name in pids}
    print("RSS growth while paused (MiB):", growth)
    assert growth["gateway"] < 64, growth
    for name in pids:
        if name.startswith("worker"):
            assert growth[name] < 160, growth


def test_extended_protocol_without_row_limit_streams(demo):
    """psycopg's cursor.stream(): Parse/Bind/Execute with no row limit, read row by row.
    The gateway must pass rows on as they come, not gather the portal's result first."""
    import psycopg

    gateway = demo.proc.pid
    before = rss_mib(gateway)
    rows = 0
    with psycopg.connect(demo.dsn(), autocommit=True) as conn:
        with conn.cursor(binary=True) as cur:
            for _ in cur.stream("select * from tpch.lineitem"):
                rows += 1
                if rows == 50_000:
                    import time
                    time.sleep(3)
                    during = rss_mib(gateway)
                    running = sum(w["running"] for w in demo.health()["warehouses"][0]["workers"])
                    assert running == 1, "the query should still be running on its worker"
    assert rows == 600572
    print("gateway RSS growth while paused (MiB):", during - before)
    assert during - before < 64

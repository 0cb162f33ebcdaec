"""Configuration: the example file works as shipped; bad files are refused clearly."""
import hashlib
import pathlib
import secrets
import subprocess

import psycopg
import pytest

from conftest import ROOT, sluice_bin, start_sluice


def test_example_config_serves_its_tables(tmp_path):
    example = (ROOT / "sluice.example.toml").read_text()
    # Same file, pointed at this checkout's example data, on free ports, in a temp dir.
    config = tmp_path / "sluice.toml"
    config.write_text(
        example.replace('pg_addr = "127.0.0.1:5433"', 'pg_addr = "127.0.0.1:0"')
        .replace('http_addr = "127.0.0.1:8080"', 'http_addr = "127.0.0.1:0"')
        .replace('flight_addr = "127.0.0.1:50051"', 'flight_addr = "127.0.0.1:0"')
        .replace('"examples/data/', f'"{ROOT}/examples/data/')
    )
    # The example ships no token (a hash in a public file is no secret): the operator adds
    # one as its comments say.
    etl = "etl-" + secrets.token_hex(24)
    config.write_text(config.read_text() + f"""
[[auth.tokens]]
name = "etl"
sha256 = "{hashlib.sha256(etl.encode()).hexdigest()}"
roles = ["Warehouse.Read"]
""")
    server = start_sluice("--config", str(config), data_dir=tmp_path / "data", scale="0.01")
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "select z.name, count(*) as trips, sum(t.fare) as fares "
                "from mobility.trips t join mobility.zones z on t.pickup_zone = z.zone_id "
                "group by z.name order by z.name"
            ).fetchall()
            assert [(r[0], r[1]) for r in rows] == [("Airport", 2), ("Harbour", 2), ("Market Square", 2)]
            assert abs(float(rows[1][2]) - 42.75) < 1e-9
            # The demo schema is still there next to the configured tables.
            assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
        # The words of the old example token open nothing.
        for guess in ["test", "etl", "secret"]:
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(server.dsn(password=guess), autocommit=True)
        # A service token with role Warehouse.Read, whose grant is mobility.* only.
        with psycopg.connect(server.dsn(password=etl), autocommit=True) as conn:
            assert conn.execute("select count(*) from mobility.trips").fetchone() == (6,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select count(*) from tpch.region")
    finally:
        server.stop()


def test_unknown_config_key_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('pg_addr = "127.0.0.1:0"\nworker_count = 3\n')
    out = subprocess.run([sluice_bin(), "serve", "--config", str(config), "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "worker_count" in out.stderr


def test_missing_table_location_is_reported(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[tables]]\nname = "x.y"\nlocation = "/definitely/not/here"\nformat = "parquet"\n')
    out = subprocess.run([sluice_bin(), "serve", "--config", str(config), "--data-dir", str(tmp_path),
                          "--no-demo", "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "x.y" in out.stderr and "does not exist" in out.stderr


def test_environment_then_flag_precedence(tmp_path):
    # SLUICE_WORKERS=1 in the environment is used...
    server = start_sluice(data_dir=tmp_path / "a", scale="0.01", env={"SLUICE_WORKERS": "1"})
    try:
        assert len(server.health()["warehouses"][0]["workers"]) == 1
    finally:
        server.stop()
    # ...unless a flag says otherwise: --workers 3 wins over SLUICE_WORKERS=1.
    server = start_sluice("--workers", "3", data_dir=tmp_path / "b", scale="0.01", env={"SLUICE_WORKERS": "1"})
    try:
        assert len(server.health()["warehouses"][0]["workers"]) == 3
    finally:
        server.stop()


def test_demo_data_and_dev_token_are_reused(tmp_path):
    data = tmp_path / "data"
    first = start_sluice(data_dir=data, scale="0.01")
    token = first.token
    parquet = data / "tpch" / "lineitem" / "part-0.parquet"
    mtime = parquet.stat().st_mtime_ns
    first.stop()
    second = start_sluice(data_dir=data, scale="0.01")
    try:
        assert second.token == token
        assert parquet.stat().st_mtime_ns == mtime
        assert "reusing TPC-H demo data" in second.log()
        with psycopg.connect(second.dsn(), autocommit=True) as conn:
            assert conn.execute("select count(*) from tpch.lineitem").fetchone() == (60175,)
    finally:
        second.stop()
    # A different scale regenerates.
    third = start_sluice(data_dir=data, scale="0.02")
    try:
        with psycopg.connect(third.dsn(), autocommit=True) as conn:
            assert conn.execute("select count(*) from tpch.region").fetchone() == (5,)
            assert conn.execute("select count(*) from tpch.lineitem").fetchone()[0] > 60175
    finally:
        third.stop()

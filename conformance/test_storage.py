"""Tables on object storage: Azure Blob Storage through Azurite (the emulator, from npm),
read by sluice's gateway and workers through `object_store`, queried through pg, Flight SQL
and HS2, checked against DuckDB over the same files on local disk."""
import pathlib
import socket
import subprocess
import time

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import databricks.sql as dbsql
import duckdb
import psycopg
import pytest
from azure.storage.blob import BlobServiceClient

from conftest import HERE, start_sluice, wait_for

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: every emulator has it).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    def __init__(self, root):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        self.log = root / "azurite.log"
        self.proc = subprocess.Popen(
            [str(HERE / "node" / "node_modules" / ".bin" / "azurite-blob"), "--blobHost", "127.0.0.1",
             "--blobPort", str(self.port), "--location", str(root / "blobs"), "--skipApiVersionCheck",
             "--loose", "--disableTelemetry"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while "successfully listens" not in self.log.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"azurite did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.client = BlobServiceClient.from_connection_string(
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={self.endpoint};")

    def upload(self, container, name, path):
        c = self.client.get_container_client(container)
        if not c.exists():
            c.create_container()
        with open(path, "rb") as f:
            c.upload_blob(name, f, overwrite=True)

    def env(self):
        """object_store's emulator switch reaches Azurite here (default: port 10000)."""
        return {"AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{self.port}"}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def config(self, tables, key=KEY, credential=None):
        credential = credential or f'account_key = "{key}"'
        return f"""
[storage.azure]
account_name = "{ACCOUNT}"
{credential}
use_emulator = true

# Table versions are re-read on every statement here, so a test need not wait out the
# window in which a changed listing may still be trusted (test_cache.py covers that).
[cache]
metadata_refresh = "0s"

{tables}
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The data, written by DuckDB on local disk: what the blobs hold and the reference reads."""
    root = tmp_path_factory.mktemp("lake")
    db = duckdb.connect()
    db.execute(f"""copy (select i as id, 'item ' || i as name, (i * 7) % 100 as amount,
                         case when i % 3 = 0 then 'eu' when i % 3 = 1 then 'us' else 'apac' end as region
                         from range(1, 5001) t(i))
                   to '{root}/sales.parquet' (format parquet, row_group_size 1000)""")
    db.execute(f"copy (select * from '{root}/sales.parquet' where id <= 300) to '{root}/small.csv' (header)")
    for region in ["eu", "us", "apac"]:
        (root / "by_region" / f"region={region}").mkdir(parents=True)
        db.execute(f"""copy (select id, name, amount from '{root}/sales.parquet' where region = '{region}')
                       to '{root}/by_region/region={region}/part-0.parquet' (format parquet)""")
    return root


TABLES = """
[[tables]]
name = "lake.sales"
location = "az://lake/sales/"
format = "parquet"

[[tables]]
name = "lake.small"
location = "az://lake/csv/small.csv"
format = "csv"

[[tables]]
name = "lake.by_region"
location = "az://lake/by_region"
format = "parquet"

[[tables]]
name = "lake.gone"
location = "az://no-such-container/x/"
format = "parquet"

[[tables]]
name = "lake.corrupt"
location = "az://lake/corrupt/"
format = "parquet"
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory, local):
    root = tmp_path_factory.mktemp("azurite")
    azurite = Azurite(root)
    azurite.upload("lake", "sales/part-0.parquet", local / "sales.parquet")
    azurite.upload("lake", "csv/small.csv", local / "small.csv")
    garbage = local / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet at all" * 10)
    azurite.upload("lake", "corrupt/part-0.parquet", garbage)
    for region in ["eu", "us", "apac"]:
        azurite.upload("lake", f"by_region/region={region}/part-0.parquet",
                       local / "by_region" / f"region={region}" / "part-0.parquet")
    config = root / "sluice.toml"
    config.write_text(azurite.config(TABLES))
    server = start_sluice("--config", str(config), env=azurite.env())
    yield azurite, server
    server.stop()
    azurite.stop()


def reference(local, sql):
    db = duckdb.connect()
    db.execute(f"create view sales as select * from '{local}/sales.parquet'")
    db.execute(f"create view small as select * from read_csv('{local}/small.csv', header = true)")
    db.execute(f"create view by_region as select * from read_parquet('{local}/by_region/*/*.parquet', hive_partitioning = true)")
    return [tuple(r) for r in db.execute(sql).fetchall()]


QUERIES = [
    "select region, count(*), sum(amount) from {s}sales group by region order by region",
    "select id, name from {s}small where amount > 90 order by id",
    "select region, count(*), max(id) from {s}by_region where region in ('eu', 'apac') group by region order by region",
]


def pg_rows(server, sql):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def flight_rows(server, sql):
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {server.token}"}
    with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]


def hs2_rows(server, sql):
    with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                       access_token=server.token, enable_telemetry=False,
                       _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default") as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]


@pytest.mark.parametrize("front_end", [pg_rows, flight_rows, hs2_rows], ids=["pg", "flight", "hs2"])
def test_azure_tables_answer_like_duckdb_on_local_files(lake, local, front_end):
    _, server = lake
    for sql in QUERIES:
        expected = reference(local, sql.format(s=""))
        got = front_end(server, sql.format(s="lake."))
        assert [tuple(int(v) if isinstance(v, int) or str(v).isdigit() else v for v in r) for r in got] == expected, sql


def test_partition_filter_reads_only_matching_directories(lake):
    _, server = lake
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        plan = "\n".join(r[-1] for r in conn.execute(
            "explain select name from lake.by_region where region = 'eu' order by id limit 3").fetchall())
    # One file group of the three: the other partitions' directories were pruned.
    assert "region=eu" in plan and "region=us" not in plan and "region=apac" not in plan, plan


def test_an_added_blob_changes_the_answer_and_the_cache_key(lake, local, tmp_path):
    azurite, server = lake
    sql = "select count(*), sum(amount) from lake.sales"
    before = pg_rows(server, sql)
    assert pg_rows(server, sql) == before  # served again (from the result cache)
    extra = tmp_path / "extra.parquet"
    duckdb.connect().execute(
        f"copy (select 9000 + i as id, 'late' as name, 1 as amount, 'eu' as region from range(10) t(i)) to '{extra}' (format parquet)")
    azurite.upload("lake", "sales/part-1.parquet", extra)
    try:
        after = pg_rows(server, sql)
        assert after == [(before[0][0] + 10, before[0][1] + 10)]
    finally:
        azurite.client.get_container_client("lake").delete_blob("sales/part-1.parquet")
    assert pg_rows(server, sql) == before


def refused(conn, sql):
    """The message of the error `sql` fails with: a user's error, never internal."""
    with pytest.raises(psycopg.Error) as failed:
        conn.execute(sql)
    assert failed.value.sqlstate not in ("XX000", None), failed.value
    return failed.value.diag.message_primary


def test_a_missing_container_names_the_table_and_other_tables_work(lake):
    _, server = lake
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        message = refused(conn, "select count(*) from lake.gone")
        assert "lake.gone" in message and "container does not exist" in message, message
        assert conn.execute("select count(*) from lake.small").fetchone()[0] == 300


def test_a_corrupt_file_names_the_table_and_the_cause(lake):
    _, server = lake
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        message = refused(conn, "select count(*) from lake.corrupt")
        assert "lake.corrupt" in message and "Parquet" in message, message
        assert conn.execute("select count(*) from lake.small").fetchone()[0] == 300


def test_a_sas_token_reads_the_container(lake, local, tmp_path):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    import datetime
    azurite, _ = lake
    sas = generate_container_sas(ACCOUNT, "lake", account_key=KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    config = tmp_path / "sluice.toml"
    config.write_text(azurite.config(TABLES, credential=f'sas_token = "{sas}"'))
    server = start_sluice("--config", str(config), env=azurite.env())
    try:
        sql = QUERIES[0]
        assert pg_rows(server, sql.format(s="lake.")) == reference(local, sql.format(s=""))
    finally:
        server.stop()
    import urllib.parse
    signature = sas.split("sig=")[1].split("&")[0]
    for form in (signature, urllib.parse.unquote(signature)):
        assert form not in server.log()


def test_bad_credentials_give_a_clear_error_without_the_secret(lake, tmp_path):
    azurite, _ = lake
    config = tmp_path / "sluice.toml"
    config.write_text(azurite.config(TABLES, key=WRONG_KEY))
    server = start_sluice("--config", str(config), env=azurite.env())
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            message = refused(conn, "select count(*) from lake.sales")
            assert "lake.sales" in message and "refused the credentials" in message, message
            # The server and the connection are fine: the demo tables answer.
            assert conn.execute("select count(*) from tpch.nation").fetchone()[0] == 25
    finally:
        server.stop()
    log = pathlib.Path(server.log_path).read_text()
    assert "refused the credentials" in log or "lake.sales" in log
    for secret in (WRONG_KEY, WRONG_KEY[:20]):
        assert secret not in message and secret not in log


def worker_cache(conn):
    """(hits, misses, bytes) of the one worker's data cache, once it has reported."""
    row = conn.execute("select data_cache_hits, data_cache_misses, data_cache_bytes "
                       "from system.workers where state = 'ready'").fetchone()
    return tuple(row) if row and row[0] is not None else None


CACHED = """
[[tables]]
name = "lake.cached"
location = "az://lake/cached/"
format = "parquet"
"""


def test_worker_data_cache_serves_repeated_scans_and_never_old_bytes(lake, local, tmp_path):
    azurite, _ = lake
    azurite.upload("lake", "cached/part-0.parquet", local / "sales.parquet")
    config = tmp_path / "sluice.toml"
    config.write_text(azurite.config(CACHED))
    server = start_sluice("--config", str(config), "--workers", "1", env=azurite.env())
    sql = "select region, count(*), sum(amount) from {s} group by region order by region"
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("set use_cached_result = false")  # every run reaches the worker
            assert wait_for(lambda: worker_cache(conn), 10, "worker report") == (0, 0, 0)
            worker = conn.execute("select worker_id from system.workers").fetchall()
            expected = reference(local, sql.format(s="sales"))
            assert [tuple(r) for r in conn.execute(sql.format(s="lake.cached")).fetchall()] == expected
            cold = wait_for(lambda: (c := worker_cache(conn)) and c[1] > 0 and c, 10, "misses")
            assert cold[2] > 0  # blocks on disk
            for _ in range(2):
                assert [tuple(r) for r in conn.execute(sql.format(s="lake.cached")).fetchall()] == expected
            warm = wait_for(lambda: (c := worker_cache(conn)) and c[0] > cold[0] and c, 10, "hits")
            assert warm[1] == cold[1], (cold, warm)  # nothing fetched again
            # The same worker all along: reading remote storage leaves nothing running on
            # a query's runtime that would make it look stuck (and get it replaced).
            assert conn.execute("select worker_id from system.workers").fetchall() == worker
            # Rewritten in place: new size, time and ETag, so new blocks; the old never answer.
            changed = tmp_path / "changed.parquet"
            duckdb.connect().execute(
                f"copy (select id, name, amount * 2 as amount, region from '{local}/sales.parquet' "
                f"where id % 2 = 0) to '{changed}' (format parquet)")
            azurite.upload("lake", "cached/part-0.parquet", changed)
            expected = [tuple(r) for r in duckdb.connect().execute(sql.format(s=f"'{changed}'")).fetchall()]
            assert [tuple(r) for r in conn.execute(sql.format(s="lake.cached")).fetchall()] == expected
    finally:
        server.stop()


def test_unknown_storage_option_is_a_config_error(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[storage.azure]\naccount_nme = "x"\n')
    with pytest.raises(RuntimeError) as failed:
        start_sluice("--config", str(config), scale=None, timeout=30)
    assert "account_nme" in str(failed.value)


# Delta Lake: a table written by the `deltalake` package (delta-rs) into Azurite, read by
# sluice's gateway (the log) and workers (the Parquet files).

DELTA_TABLES = TABLES + """
[[tables]]
name = "lake.events"
location = "az://lake/delta/events"
format = "delta"
"""


def events(start, n):
    import pyarrow as pa
    ids = list(range(start, start + n))
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "amount": pa.array([i % 13 for i in ids], pa.int64()),
                     "kind": pa.array(["click" if i % 2 else "view" for i in ids])})


@pytest.fixture(scope="module")
def delta(tmp_path_factory, lake):
    """A Delta table next to the other tables of `lake`'s Azurite, and a server reading it."""
    from deltalake import write_deltalake
    azurite, _ = lake
    root = tmp_path_factory.mktemp("delta")
    # delta-rs's Python package misreads az:// paths under Azurite's emulator switch (it
    # drops a path segment), so the table is written on local disk and its files copied
    # into the container as they appear: each file once, as Delta never rewrites one.
    table = root / "events"
    uploaded = set()

    def write(data, mode):
        write_deltalake(str(table), data, mode=mode, partition_by=["kind"])
        for path in sorted(table.rglob("*"), key=lambda p: ("_delta_log" in p.parts, str(p))):
            if path.is_file() and path not in uploaded:
                azurite.upload("lake", f"delta/events/{path.relative_to(table)}", path)
                uploaded.add(path)

    write(events(0, 1000), "error")
    config = root / "sluice.toml"
    config.write_text(azurite.config(DELTA_TABLES))
    server = start_sluice("--config", str(config), env=azurite.env())
    yield azurite, server, lambda data: write(data, "append")
    server.stop()


def delta_reference(tables, sql):
    import pyarrow as pa
    db = duckdb.connect()
    events_table = pa.concat_tables(tables)  # noqa: F841 (read by DuckDB by name)
    db.execute("create view events as select * from events_table")
    return [tuple(r) for r in db.execute(sql).fetchall()]


DELTA_QUERY = "select kind, count(*), sum(amount), min(id), max(id) from {s}events group by kind order by kind"


def test_delta_table_through_every_front_end_and_time_travel(delta):
    azurite, server, append = delta
    v0 = [events(0, 1000)]
    expected = delta_reference(v0, DELTA_QUERY.format(s=""))
    for front_end in (pg_rows, flight_rows, hs2_rows):
        assert front_end(server, DELTA_QUERY.format(s="lake.")) == expected, front_end.__name__
    # A filter on the partition column, and the column named through the table.
    assert pg_rows(server, "select count(*) from lake.events e where e.kind = 'view' and amount > 6") == \
        delta_reference(v0, "select count(*) from events where kind = 'view' and amount > 6")

    time.sleep(1.2)
    between = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    time.sleep(1.2)
    append(events(1000, 500))
    v1 = v0 + [events(1000, 500)]
    new = delta_reference(v1, DELTA_QUERY.format(s=""))
    assert new != expected
    # The append is seen by the next statement, through every front-end.
    for front_end in (pg_rows, flight_rows, hs2_rows):
        assert front_end(server, DELTA_QUERY.format(s="lake.")) == new, front_end.__name__
    # Time travel in Databricks' syntax reads the old snapshot.
    assert pg_rows(server, DELTA_QUERY.format(s="lake.").replace("events", "events VERSION AS OF 0")) == expected
    assert hs2_rows(server, DELTA_QUERY.format(s="lake.").replace("events", f"events TIMESTAMP AS OF '{between}'")) == expected
    assert pg_rows(server, DELTA_QUERY.format(s="lake.").replace("events", "events version as of 1")) == new
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert "lake.events" in refused(conn, "select count(*) from lake.events VERSION AS OF 7")
        assert "not a Delta table" in refused(conn, "select count(*) from lake.sales VERSION AS OF 1")


def test_a_delta_append_changes_the_result_cache_key(delta):
    azurite, server, append = delta
    sql = "select count(*), sum(amount), 'cache-key' from lake.events where kind = 'click'"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        first = conn.execute(sql).fetchone()
        assert conn.execute(sql).fetchone() == first
        append(events(5000, 20))
        after = conn.execute(sql).fetchone()
        assert after[0] == first[0] + 10
        assert conn.execute(sql).fetchone() == after

        def served():
            rows = conn.execute(
                "select from_cache from system.query_history where statement_text like '%cache-key%' "
                "and statement_text not like '%query_history%' order by end_time").fetchall()
            return [r[0] for r in rows] if len(rows) >= 4 else None
        # miss, hit; the append: miss (a new key), then hit again.
        assert wait_for(served, 10, "history")[-4:] == ["miss", "hit", "miss", "hit"]

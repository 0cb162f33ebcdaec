"""The measuring side of bench/storage.sh. One JSON object per measurement, then a table."""
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

import psycopg
from azure.storage.blob import BlobServiceClient

import serving

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ["CARGO_TARGET_DIR"])
SCALE, RUNS = sys.argv[1], int(sys.argv[2])
OUT = ROOT / "bench" / "out" / "storage"
DATA = ROOT / "bench" / "data" / f"sf{SCALE}"
QUERIES = ROOT / "conformance" / "tpch" / "queries"
TABLES = ["lineitem", "orders", "customer", "part"]
NUMBERS = [1, 3, 6, 14]
ACCOUNT = "devstoreaccount1"
# Azurite's published development key.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def generate():
    """TPC-H at SCALE as Parquet, written by sluice's demo generator (once)."""
    if (DATA / "tpch" / "lineitem").exists():
        return
    DATA.mkdir(parents=True, exist_ok=True)
    with serving.sluice(TARGET, DATA, OUT, SCALE):
        pass


def azurite():
    port = serving.free_port()
    root = OUT / "azurite"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log = root / "azurite.log"
    proc = subprocess.Popen(
        [str(ROOT / "conformance" / "node" / "node_modules" / ".bin" / "azurite-blob"),
         "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(root / "blobs"),
         "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    while "successfully listens" not in log.read_text():
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.1)
    return proc, port


def upload(port):
    client = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")
    container = client.get_container_client("tpch")
    container.create_container()
    total = 0
    for table in TABLES:
        for path in sorted((DATA / "tpch" / table).glob("*.parquet")):
            with open(path, "rb") as f:
                container.upload_blob(f"{table}/{path.name}", f, overwrite=True, max_concurrency=4)
            total += path.stat().st_size
    return total


def config(data_cache):
    tables = "".join(
        f'\n[[tables]]\nname = "lake.{t}"\nlocation = "az://tpch/{t}/"\nformat = "parquet"\n'
        f'\n[[tables]]\nname = "disk.{t}"\nlocation = "{DATA / "tpch" / t}"\nformat = "parquet"\n'
        for t in TABLES)
    return f"""
[storage]
data_cache_size = "{data_cache}"
[storage.azure]
account_name = "{ACCOUNT}"
account_key = "{KEY}"
use_emulator = true

[cache]
enabled = false
{tables}"""


def run(conn, sql):
    start = time.perf_counter()
    conn.execute(sql).fetchall()
    return time.perf_counter() - start


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    generate()
    proc, port = azurite()
    try:
        size = upload(port)
        print(json.dumps({"uploaded_bytes": size}), flush=True)
        os.environ["AZURITE_BLOB_STORAGE_URL"] = f"http://127.0.0.1:{port}"
        rows = []
        for n in NUMBERS:
            text = (QUERIES / f"q{n}.sql").read_text()
            # A fresh server for each query: its one worker starts with an empty cache.
            with sluice_one_worker(OUT / "server") as dsn:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    cold = run(conn, text.replace("tpch.", "lake."))
                    warm = [run(conn, text.replace("tpch.", "lake.")) for _ in range(RUNS)]
                    local = [run(conn, text.replace("tpch.", "disk.")) for _ in range(RUNS)]
                    cache = conn.execute("select data_cache_hits, data_cache_misses, data_cache_bytes "
                                         "from system.workers").fetchall()
            row = {"query": f"q{n}", "cold_s": round(cold, 3), "warm_s": round(statistics.median(warm), 3),
                   "local_s": round(statistics.median(local), 3), "worker_cache": cache}
            print(json.dumps(row), flush=True)
            rows.append(row)
        # The same, without the data cache: what the cache is worth against Azurite alone.
        with sluice_one_worker(OUT / "server", data_cache="0") as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for row, n in zip(rows, NUMBERS):
                    text = (QUERIES / f"q{n}.sql").read_text().replace("tpch.", "lake.")
                    row["uncached_s"] = round(statistics.median([run(conn, text) for _ in range(RUNS)]), 3)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"\nTPC-H SF{SCALE} on Azurite, one worker, medians of {RUNS} warm runs\n")
    print("| query | first run s | warm s | cold/warm | local disk s | warm/local | no data cache s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['query']} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {r['cold_s'] / r['warm_s']:.2f} | "
              f"{r['local_s']:.3f} | {r['warm_s'] / r['local_s']:.2f} | {r['uncached_s']:.3f} |")


def sluice_one_worker(data, data_cache="4GiB"):
    """A release server with one worker (so every run meets the same cache), no demo."""
    import contextlib

    @contextlib.contextmanager
    def server():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        conf = OUT / "storage.toml"
        conf.write_text(config(data_cache))
        cmd = [str(TARGET / "release" / "sluice"), "serve", "--data-dir", str(data), "--no-demo",
               "--workers", "1", "--config", str(conf), "--pg-addr", "127.0.0.1:0",
               "--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"]
        log = OUT / "sluice.log"
        proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        try:
            endpoints = data / "endpoints.json"
            while not endpoints.exists():
                if proc.poll() is not None:
                    raise SystemExit(log.read_text())
                time.sleep(0.2)
            ep = json.loads(endpoints.read_text())
            token = (data / "dev-token").read_text().strip()
            host, port = ep["pg"].rsplit(":", 1)
            dsn = f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable"
            deadline = time.time() + 120
            while True:  # ready: the worker is up (/healthz answers 200)
                try:
                    with urllib.request.urlopen(f"http://{ep['http']}/healthz", timeout=5):
                        break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise SystemExit(log.read_text())
                    time.sleep(0.2)
            yield dsn
        finally:
            proc.terminate()
            proc.wait(30)
    return server()


if __name__ == "__main__":
    main()

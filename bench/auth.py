"""The measuring side of bench/auth.sh. Prints one JSON object per figure and a summary."""
import concurrent.futures
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "conformance"))
os.environ["SLUICE_BIN"] = str(pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "sluice")

from conftest import start_sluice  # noqa: E402
from oidc import AUDIENCE, OidcProvider  # noqa: E402

CONNECTIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
OUT = ROOT / "bench" / "out" / "auth"
OUT.mkdir(parents=True, exist_ok=True)


def emit(name, **figures):
    print(json.dumps({"bench": name, **figures}), flush=True)
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps({"bench": name, **figures}) + "\n")


def connect_latency(dsn, n=300):
    """Milliseconds for connect + authenticate + SELECT 1 + close, n times in a row."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1").fetchone()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3), "n": n}


def main():
    (OUT / "results.jsonl").unlink(missing_ok=True)
    provider = OidcProvider("v2").start()
    config = pathlib.Path(tempfile.mkdtemp()) / "sluice.toml"
    config.write_text('[[grants]]\nroles = ["Warehouse.Read"]\nselect = ["tpch.*"]\n')
    server = start_sluice("--config", str(config), "--tls-self-signed", "--oidc-issuer", provider.issuer,
                          "--oidc-audience", AUDIENCE)
    try:
        base = dict(host="127.0.0.1", port=server.pg_port, user="bench", dbname="default")

        def dsn(password, tls):
            params = dict(base, password=password,
                          **({"sslmode": "verify-full", "sslrootcert": server.tls_cert} if tls
                             else {"sslmode": "disable"}))
            return " ".join(f"{k}={v}" for k, v in params.items())

        # 1. 500 connections, 500 distinct tokens, all open at once.
        time.sleep(1)
        fetches_at_start = provider.jwks_fetches()
        tokens = [provider.token("readonly-app") for _ in range(CONNECTIONS)]
        assert len(set(tokens)) == CONNECTIONS
        opened, lock = [], threading.Lock()

        def open_one(token):
            conn = psycopg.connect(dsn(token, tls=True))
            conn.execute("SELECT 1").fetchone()
            with lock:
                opened.append(conn)

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(open_one, tokens))
        elapsed = time.perf_counter() - start
        open_together = len(opened)
        for conn in opened:
            conn.close()
        emit("distinct_tokens", connections=CONNECTIONS, open_together=open_together,
             seconds=round(elapsed, 2), jwks_fetches_at_start=fetches_at_start,
             jwks_fetches_total=provider.jwks_fetches())

        # 2. Connect + auth + SELECT 1: TLS with an OIDC token vs plain TCP with the dev token.
        token = provider.token("readonly-app")
        plain = connect_latency(dsn(server.token, tls=False))
        tls_static = connect_latency(dsn(server.token, tls=True))
        tls_oidc = connect_latency(dsn(token, tls=True))
        postgres = connect_latency("host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
        emit("connect_latency", plain_dev_token=plain, tls_dev_token=tls_static, tls_oidc_token=tls_oidc,
             postgresql_plain=postgres,
             ratio_tls_oidc_vs_plain=round(tls_oidc["median_ms"] / plain["median_ms"], 2),
             ratio_tls_vs_plain_same_token=round(tls_static["median_ms"] / plain["median_ms"], 2))

        # 3. Validation in-process: first sight and cached.
        out = subprocess.run([str(pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "sluice-bench"),
                              "auth-validate", provider.issuer, AUDIENCE, "200000", token,
                              *[provider.token("readonly-app") for _ in range(200)]],
                             capture_output=True, text=True, check=True, timeout=300)
        emit("token_validation", **json.loads(out.stdout))
    finally:
        server.stop()
        provider.stop()


if __name__ == "__main__":
    main()

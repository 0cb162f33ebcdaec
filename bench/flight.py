"""The measuring side of bench/flight.sh. One JSON object per measurement, then a summary.

Each measurement also gives the CPU time each process spent per transfer (the server
side: sluice's gateway and its workers, or the plain pyarrow.flight server; the client:
this process, where ADBC and pyarrow decode): on 2 shared cores, where the time goes.
BINARY=path measures a given sluice binary (default: $CARGO_TARGET_DIR/release/sluice)."""
import json
import multiprocessing
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ["CARGO_TARGET_DIR"])
BINARY = os.environ.get("BINARY") or str(TARGET / "release" / "sluice")
SCALE, RUNS = sys.argv[1], int(sys.argv[2])
OUT = ROOT / "bench" / "out" / "flight"
DATA = OUT / f"data-sf{SCALE}"
OUT.mkdir(parents=True, exist_ok=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Peak:
    """Samples a process's resident memory every 20 ms while active."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def serve_from_memory(files, port, ready):
    table = pa.concat_tables([pq.read_table(f) for f in files])
    # The same types sluice sends (plain strings).
    table = table.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type)
                                  for f in table.schema]))

    class Server(flight.FlightServerBase):
        def do_get(self, context, ticket):
            return flight.RecordBatchStream(table)

    server = Server(f"grpc://127.0.0.1:{port}")
    ready.set()
    server.serve()


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    """The processes whose parent is `pid` (sluice's workers)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def measure(label, fetch, processes):
    """Best of RUNS transfers; `processes` names the pids whose CPU time to account (the
    client, this process, is added)."""
    results = []
    cpu = {name: 0.0 for name in [*processes, "client"]}
    for _ in range(RUNS):
        before = {name: sum(cpu_seconds(p) for p in pids()) for name, pids in processes.items()}
        client_before = time.process_time()
        start = time.perf_counter()
        table = fetch()
        seconds = time.perf_counter() - start
        cpu["client"] += time.process_time() - client_before
        for name, pids in processes.items():
            cpu[name] += sum(cpu_seconds(p) for p in pids()) - before[name]
        results.append((seconds, table.num_rows, table.nbytes))
        del table
    best = min(results)
    seconds, rows, nbytes = best
    figure = {"path": label, "seconds": round(seconds, 3), "rows": rows, "bytes": nbytes,
              "gb_per_s": round(nbytes / seconds / 1e9, 3), "rows_per_s": round(rows / seconds),
              "all_seconds": [round(r[0], 3) for r in results],
              "cpu_seconds_per_transfer": {name: round(total / RUNS, 3) for name, total in cpu.items()},
              "mean_seconds": round(sum(r[0] for r in results) / RUNS, 3)}
    print(json.dumps(figure), flush=True)
    return figure


def main():
    sluice = subprocess.Popen([BINARY, "serve", "--data-dir", str(DATA),
                               "--demo-scale", SCALE, "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                               "--flight-addr", "127.0.0.1:0"],
                              stdout=open(OUT / "sluice.log", "w"), stderr=subprocess.STDOUT)
    endpoints = DATA / "endpoints.json"
    try:
        endpoints.unlink(missing_ok=True)
        while not endpoints.exists():
            if sluice.poll() is not None:
                raise SystemExit((OUT / "sluice.log").read_text())
            time.sleep(0.5)
        time.sleep(2)
        ep = json.loads(endpoints.read_text())
        token = (DATA / "dev-token").read_text().strip()
        files = sorted((DATA / "tpch" / "lineitem").glob("*.parquet"))

        ready = multiprocessing.Event()
        port = 50990
        server = multiprocessing.Process(target=serve_from_memory, args=(files, port, ready), daemon=True)
        server.start()
        ready.wait(300)
        time.sleep(1)
        client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        raw = measure("pyarrow.flight from memory", lambda: client.do_get(flight.Ticket(b"lineitem")).read_all(),
                      {"server": lambda: [server.pid]})
        server.terminate()

        kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
        conn = flight_sql.connect(f"grpc://{ep['flight']}", db_kwargs=kwargs, autocommit=True)

        def adbc():
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM tpch.lineitem")
                return cur.fetch_arrow_table()

        gateway_before_mib = round(rss_kib(sluice.pid) / 1024, 1)
        peak = Peak(sluice.pid)
        via_adbc = measure("sluice Flight SQL (ADBC)", adbc,
                           {"gateway": lambda: [sluice.pid], "workers": lambda: children(sluice.pid)})
        gateway_peak_mib = round(peak.stop() / 1024, 1)
        conn.close()

        dsn = f"host=127.0.0.1 port={ep['pg'].rsplit(':', 1)[1]} user=bench password={token} dbname=sluice sslmode=disable"
        pg_runs = []
        for _ in range(RUNS):
            out = subprocess.run([str(TARGET / "release" / "sluice-bench"), "stream-pg", dsn,
                                  "select * from tpch.lineitem", "binary"], capture_output=True, text=True, check=True)
            pg_runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps({"path": "sluice pg (binary, sluice-bench)", "runs": pg_runs}), flush=True)
        pg_rows_per_s = max(r["rows_per_second"] for r in pg_runs)
        summary = {
            "adbc_vs_raw_flight": round(via_adbc["rows_per_s"] / raw["rows_per_s"], 2),
            "adbc_vs_pg": round(via_adbc["rows_per_s"] / pg_rows_per_s, 2),
            "gateway_rss_mib_before": gateway_before_mib,
            "gateway_peak_rss_mib_during_adbc": gateway_peak_mib,
        }
        print(json.dumps(summary), flush=True)
    finally:
        sluice.terminate()
        sluice.wait(30)


if __name__ == "__main__":
    main()

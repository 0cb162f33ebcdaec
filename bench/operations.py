"""The cost of operating sluice: `SELECT 1` throughput with the query history and the metrics
on (the default) against both off, through pg with pgbench (simple protocol, N clients).
The two configurations run alternately, `rounds` times each, on one release binary and one
data dir; medians are compared. Also: what one /metrics scrape costs, and how many history
records the on-runs wrote (all of them must reach the store) and in how many commits.

Usage: bench/operations.py [clients=8] [seconds=10] [rounds=5]
"""
import json
import pathlib
import statistics
import sys
import time
import urllib.request

from serving import pgbench, sluice

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "operations"
DATA = ROOT / "bench" / "data" / "operations"
TARGET = pathlib.Path(__import__("os").environ.get("CARGO_TARGET_DIR", ROOT / "target"))

ON = "[warehouses.default]\nworkers = 1\n"
OFF = ON + "\n[history]\nenabled = false\n\n[metrics]\nenabled = false\n"


def cpu_seconds(pid):
    """User + system CPU time of a process (its threads) so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / __import__("os").sysconf("SC_CLK_TCK")


def metrics(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text, name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def main():
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    OUT.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    tps = {"on": [], "off": []}
    # The gateway's CPU time per statement: throughput on 2 shared cores is noisy, CPU
    # time per statement much less so, and it is what the history and metrics cost.
    cpu_us = {"on": [], "off": []}
    written = []
    scrape_ms = []
    for r in range(rounds):
        # Alternate which goes first, so drift on the machine does not favour one side.
        order = (("on", ON), ("off", OFF)) if r % 2 == 0 else (("off", OFF), ("on", ON))
        for name, config in order:
            with sluice(TARGET, DATA, OUT, 0.01, config) as (proc, endpoints, token):
                host, port = endpoints["pg"].rsplit(":", 1)
                args = ["-h", host, "-p", port, "-U", "bench", "default"]
                pgbench(OUT, args, token, "SELECT 1", clients, 2)  # warm-up: connections, plan memo
                before = cpu_seconds(proc.pid)
                t, failed = pgbench(OUT, args, token, "SELECT 1", clients, seconds)
                used = cpu_seconds(proc.pid) - before
                if failed:
                    raise SystemExit(f"{failed} failed transactions")
                tps[name].append(t)
                cpu_us[name].append(used / (t * seconds) * 1e6)
                if name == "on":
                    for _ in range(20):
                        started = time.perf_counter()
                        text = metrics(endpoints["http"])
                        scrape_ms.append((time.perf_counter() - started) * 1e3)
                    queries = sample(text, "sluice_queries_total")
                    # Wait for the writer to drain (it flushes every 250 ms).
                    deadline = time.time() + 10
                    while time.time() < deadline:
                        text = metrics(endpoints["http"])
                        if sample(text, "sluice_history_written_total") >= queries:
                            break
                        time.sleep(0.25)
                    written.append((queries, sample(text, "sluice_history_written_total"),
                                    sample(text, "sluice_history_dropped_total"),
                                    sample(text, "sluice_history_batches_total")))
            print(f"round {r + 1} {name}: {t:.0f} tps, gateway {cpu_us[name][-1]:.1f} µs CPU/statement",
                  flush=True)
    on, off = statistics.median(tps["on"]), statistics.median(tps["off"])
    print(json.dumps({
        "clients": clients, "seconds": seconds, "rounds": rounds,
        "tps_on": tps["on"], "tps_off": tps["off"],
        "median_on": on, "median_off": off, "ratio": on / off,
        "pair_ratios": [a / b for a, b in zip(tps["on"], tps["off"])],
        "history": [{"statements": q, "written": w, "dropped": d, "commits": c}
                    for q, w, d, c in written],
        "metrics_scrape_ms_p50": statistics.median(scrape_ms),
        "gateway_cpu_us_per_statement": {k: v for k, v in cpu_us.items()},
        "median_cpu_us_on": statistics.median(cpu_us["on"]),
        "median_cpu_us_off": statistics.median(cpu_us["off"]),
    }, indent=2))


if __name__ == "__main__":
    main()

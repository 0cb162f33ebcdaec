"""perf profile of the gateway under pgbench (bench/profile.sh).

Usage: bench/profile.py BINARY select1|point|hit [clients=1] [seconds=5]
"""
import pathlib
import subprocess
import sys
import threading

from serving import pgbench, sluice, wait_ready

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINARY = pathlib.Path(sys.argv[1]).resolve()
WHAT = sys.argv[2]
CLIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
SECONDS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
OUT = ROOT / "bench" / "out" / "profile"
DATA = ROOT / "bench" / "data" / "sf1"
SQL = {
    "select1": "SELECT 1",
    "point": "\\set k random(0, 24)\nSELECT * FROM tpch.nation WHERE n_nationkey = :k",
    "hit": "\\set k random(0, 24)\nSELECT * FROM tpch.nation WHERE n_nationkey = :k",
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    config = "" if WHAT == "hit" else "[cache]\nenabled = false\n"
    with sluice(None, DATA, OUT, "1", config, BINARY) as (proc, endpoints, token):
        host, port = endpoints["pg"].rsplit(":", 1)
        wait_ready(f"host={host} port={port} user=bench password={token} dbname=default sslmode=disable")
        args = ["-h", host, "-p", port, "-U", "bench", "default"]
        pgbench(OUT, args, token, SQL[WHAT], CLIENTS, 2, mode="prepared")  # warm-up
        data = OUT / f"{WHAT}-{CLIENTS}.perf.data"
        load = threading.Thread(target=pgbench,
                                args=(OUT, args, token, SQL[WHAT], CLIENTS, SECONDS + 2),
                                kwargs={"mode": "prepared"})
        load.start()
        subprocess.run(["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,16384",
                        "-p", str(proc.pid), "-o", str(data), "--", "sleep", str(SECONDS)], check=True)
        load.join()
    for mode, flags in (("self", ["--no-children"]), ("inclusive", ["--children"])):
        report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-g", "none", "--no-inline",
                                 "--percent-limit", "1", *flags], capture_output=True, text=True, check=True).stdout
        path = OUT / f"{WHAT}-{CLIENTS}.{mode}.txt"
        path.write_text(report)
        print(f"== {mode} (bench/out/profile/{path.name})")
        print("\n".join(line for line in report.splitlines() if line and not line.startswith("#"))[:6000])


if __name__ == "__main__":
    main()

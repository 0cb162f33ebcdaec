"""Summarise bench/out/*.jsonl: per-query medians, totals and the ratios the issues set."""
import json
import pathlib
import statistics
import sys

out = pathlib.Path(sys.argv[1])
scale = sys.argv[2]


def load(name):
    return [json.loads(line) for line in (out / name).read_text().splitlines() if line.strip()]


def medians(rows):
    by_query = {}
    for r in rows:
        by_query.setdefault(r["query"], []).append(r["seconds"])
    return {q: statistics.median(v) for q, v in sorted(by_query.items())}


tpch = load("tpch.jsonl")
inproc = medians([r for r in tpch if r["engine"] == "datafusion"])
gateway = medians([r for r in tpch if r["engine"] == "pg"])
print(f"TPC-H SF{scale}: median seconds per query")
print("query  in-process  gateway  ratio")
for q in inproc:
    print(f"q{q:<5} {inproc[q]:10.3f} {gateway[q]:8.3f} {gateway[q] / inproc[q]:6.2f}")
total_in, total_gw = sum(inproc.values()), sum(gateway.values())
print(f"total  {total_in:10.3f} {total_gw:8.3f} {total_gw / total_in:6.3f}  (target <= 1.10)")

stream = load("stream.jsonl")
print(f"\nSELECT * FROM lineitem (SF{scale}): median rows/s")
for fmt in ("text", "binary"):
    s = statistics.median(r["rows_per_second"] for r in stream if r["server"] == "sluice" and r["format"] == fmt)
    p = statistics.median(r["rows_per_second"] for r in stream if r["server"] == "postgresql" and r["format"] == fmt)
    print(f"{fmt:6}  sluice {s:12,.0f}  postgresql {p:12,.0f}  ratio {s / p:5.2f}  (target >= 1.0)")

idle = json.loads((out / "rss-idle.json").read_text())
peak = json.loads((out / "rss-peak.json").read_text())
print(f"\nresident memory during the streams (MiB): gateway idle {idle['gateway']}, peaks {peak}")

"""Sample the resident memory of a process and its children until SIGTERM, then print the
peak of each as JSON: `python3 bench/rss.py <pid> > peaks.json &`."""
import json
import os
import signal
import sys
import time

root = int(sys.argv[1])
peaks = {}
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


while running:
    for pid in [root] + children(root):
        kib = rss_kib(pid)
        if kib is not None:
            name = "gateway" if pid == root else f"worker-{pid}"
            peaks[name] = max(peaks.get(name, 0), kib)
    time.sleep(0.05)

print(json.dumps({name: round(kib / 1024, 1) for name, kib in peaks.items()}))

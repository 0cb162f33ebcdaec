#!/usr/bin/env bash
# Where the gateway's CPU goes under a pgbench load (issue 26): perf samples of the
# gateway process with call graphs unwound from DWARF (the release build keeps no frame
# pointers), reported as the functions that take the most time themselves and the ones
# whose callees do (inclusive), in bench/out/profile/.
# Usage: [BINARY=path] bench/profile.sh [select1|point|hit] [clients=1] [seconds=5]
#   select1: `SELECT 1`; point: the point query on tpch.nation, result cache off;
#   hit: the same point query with the result cache on (every execution after the first
#   of each key a hit). Needs perf (linux-perf) and kernel.perf_event_paranoid <= 2.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${BINARY:-}" ]; then
  cargo build --release --locked --workspace
  BINARY=$CARGO_TARGET_DIR/release/sluice
fi
cd bench
../conformance/.venv/bin/python profile.py "$BINARY" "${1:-point}" "${2:-1}" "${3:-5}"

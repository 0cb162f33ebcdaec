#!/usr/bin/env bash
# Distributed execution (release build), one sitting: TPC-H SF1 on one worker against the
# same queries split over two workers, each worker pinned to a core of its own (taskset),
# interleaved; bytes the workers send per query; the gateway's peak resident memory; and
# small queries with `distributed = "auto"` against `"off"` (the path they keep).
# Usage: bench/distributed.sh [scale=1] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p sluice
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/distributed.py "${1:-1}" "${2:-3}"

#!/usr/bin/env bash
# The hot paths before and after a change, in one sitting: pg `SELECT 1` tps and TPC-H SF1
# through the gateway, two release binaries measured alternately (used for the security work,
# issue 21, and the crate split, issue 25). FRONTEND=hs2 measures through the HS2 front-end
# and databricks-sql-connector instead (Databricks SQL, issue 23).
# Usage: [FRONTEND=pg|hs2] [AFTER=revision] bench/before_after.sh [before-revision=86ba978] [clients=8] [seconds=10] [rounds=3]
# Builds the after-revision (HEAD unless AFTER names one; the last commit, not uncommitted
# changes) and the before-revision, each in a git worktree sharing the target dir (so only
# sluice's own crates are rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:-86ba978}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=bench/out/before-after
mkdir -p "$OUT"
build() { # revision, output
  local tree
  tree=$(mktemp -d /tmp/sluice-build-XXXX)
  git worktree add --detach "$tree" "$1" >/dev/null
  (cd "$tree" && cargo build --release --locked --workspace)
  cp "$CARGO_TARGET_DIR/release/sluice" "$2"
  git worktree remove --force "$tree"
}
build "${AFTER:-HEAD}" "$OUT/sluice-after"
build "$BEFORE" "$OUT/sluice-before"
# The worktrees' crates share names and relative paths with this checkout's: cargo could
# take their artifacts as this checkout's. Drop them.
cargo clean --release -p auth -p planner -p workers -p gateway -p pg -p flight -p databricks -p spark -p sluice
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
cd bench && ../conformance/.venv/bin/python before_after.py "../$OUT/sluice-before" "../$OUT/sluice-after" \
  "${2:-8}" "${3:-10}" "${4:-3}"

#!/usr/bin/env bash
# Incremental debug build after a one-line change in the pg encoder, before and after the
# crate split (issue 25): 3 runs each. Each revision builds in a worktree of its own with a
# copy of the target dir (so neither takes the other's artifacts for its own), warmed by one
# untimed build; then each run appends one line to the encoder and times
# `cargo build --workspace`.
# Usage: bench/build_time.sh [before-revision=b60db2c] [after-revision=HEAD] [runs=3]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:-b60db2c}
AFTER=${2:-HEAD}
RUNS=${3:-3}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$(mktemp -d /tmp/sluice-build-time-XXXX)
trap 'git worktree remove --force "$WORK/before" 2>/dev/null; git worktree remove --force "$WORK/after" 2>/dev/null; rm -rf "$WORK"' EXIT
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F); $(cargo --version)"
for side in before after; do
  rev=$BEFORE; [ "$side" = after ] && rev=$AFTER
  git worktree add --detach "$WORK/$side" "$rev" >/dev/null
  encoder=frontends/pg/src/encode.rs
  [ -f "$WORK/$side/$encoder" ] || encoder=gateway/src/pg/encode.rs
  cp -a "$TARGET" "$WORK/$side-target"  # -a: cargo reads mtimes
  (cd "$WORK/$side" && CARGO_TARGET_DIR="$WORK/$side-target" cargo build --locked --workspace -q 2>/dev/null)
  for run in $(seq 1 "$RUNS"); do
    echo "const _BUILD_TIME_PROBE_$run: u32 = $run;" >> "$WORK/$side/$encoder"
    start=$(date +%s.%N)
    (cd "$WORK/$side" && CARGO_TARGET_DIR="$WORK/$side-target" cargo build --locked --workspace -q 2>/dev/null)
    end=$(date +%s.%N)
    printf '%s (%s) run %d: %.1f s\n' "$side" "$(git rev-parse --short "$rev")" "$run" "$(echo "$end - $start" | bc)"
  done
  rm -rf "$WORK/$side-target"
done

#!/usr/bin/env bash
# Auth benchmarks (release build): cached token validation time; 500 pg connections with
# 500 distinct OIDC tokens and the JWKS fetches they cause; connect+auth+SELECT 1 latency
# with TLS and a token vs plain TCP (and PostgreSQL). Usage: bench/auth.sh [connections=500]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --workspace
npm ci --prefix conformance/node --no-audit --no-fund --loglevel=error
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
conformance/.venv/bin/python bench/auth.py "${1:-500}"

#!/usr/bin/env bash
# Runs every test of sluice on a fresh machine: installs what the tests need (Debian
# packages when missing, Python clients in conformance/.venv), builds, runs the Rust unit
# tests, then the conformance suite (real clients against a running `sluice serve`).
set -euo pipefail
cd "$(dirname "$0")"

# 1. System packages: pg clients, a JDK and PgJDBC, Python's venv, Chromium.
need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pgbench >/dev/null 2>&1 || need+=(postgresql-client)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -f /usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so ] || need+=(odbc-postgresql)
command -v odbcinst >/dev/null 2>&1 || need+=(unixodbc)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# Perl DBI with DBD::Pg (conformance/perl/dbd_pg.pl).
perl -MDBD::Pg -e 1 >/dev/null 2>&1 || need+=(libdbd-pg-perl)
# Headless Chromium for the admin page test (driven by playwright-core from npm).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

# 2. Python clients and the reference engine, pinned, in a local venv.
if [ ! -x conformance/.venv/bin/python ]; then
  python3 -m venv conformance/.venv
fi
conformance/.venv/bin/pip install -q --disable-pip-version-check -r conformance/requirements.txt
# dbt-databricks pins an older databricks-sql-connector: its own venv.
if [ ! -x conformance/.venv-dbt/bin/python ]; then
  python3 -m venv conformance/.venv-dbt
fi
conformance/.venv-dbt/bin/pip install -q --disable-pip-version-check -r conformance/requirements-dbt.txt
# node-postgres, pinned by conformance/node/package-lock.json.
npm ci --prefix conformance/node --no-audit --no-fund --loglevel=error

# 3. Build and Rust tests; the fuzz targets (fuzz_* tests) run 20 s each.
cargo build --locked --workspace
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" cargo test --locked --workspace

# 4. Conformance: real clients against real servers.
export SLUICE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/sluice"
conformance/.venv/bin/python -m pytest conformance -q -p no:cacheprovider

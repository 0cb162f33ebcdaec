#!/bin/bash
# dbt's first commands against a warehouse, each after a marker in the statement log.
set -e
cd "$(dirname "$0")"
m() { psql -h 127.0.0.1 -U postgres -d sluice_harvest -qc "SELECT 'harvest: $1'" >/dev/null; }
export DBT_PROFILES_DIR=.
m "dbt debug"; "${DBT:-dbt}" debug >/dev/null
m "dbt run"; "${DBT:-dbt}" run >/dev/null
m "dbt test"; "${DBT:-dbt}" test >/dev/null
m "dbt docs generate"; "${DBT:-dbt}" docs generate >/dev/null

"""SQLAlchemy's PostgreSQL dialect reflecting the tpch schema the way Superset, Airflow,
pandas (read_sql_table) and Alembic do, each call after a `SELECT 'harvest: <call>'`
marker (for harvest_log.py)."""
import sys

import sqlalchemy as sa

engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{sys.argv[1]}")
with engine.connect() as conn:
    insp = sa.inspect(conn)

    def mark(call):
        conn.exec_driver_sql(f"SELECT 'harvest: {call}'").fetchall()

    calls = [
        ("get_schema_names", lambda: insp.get_schema_names()),
        ("get_table_names", lambda: insp.get_table_names(schema="tpch")),
        ("get_view_names", lambda: insp.get_view_names(schema="tpch")),
        ("get_materialized_view_names", lambda: insp.get_materialized_view_names(schema="tpch")),
        ("get_sequence_names", lambda: insp.get_sequence_names(schema="tpch")),
        ("get_foreign_table_names", lambda: insp.dialect._get_foreign_table_names(conn, schema="tpch")),
        ("has_table", lambda: insp.has_table("nation", schema="tpch")),
        ("has_schema", lambda: insp.has_schema("tpch")),
        ("get_columns", lambda: insp.get_columns("nation", schema="tpch")),
        ("get_pk_constraint", lambda: insp.get_pk_constraint("nation", schema="tpch")),
        ("get_foreign_keys", lambda: insp.get_foreign_keys("lineitem", schema="tpch")),
        ("get_indexes", lambda: insp.get_indexes("nation", schema="tpch")),
        ("get_unique_constraints", lambda: insp.get_unique_constraints("nation", schema="tpch")),
        ("get_check_constraints", lambda: insp.get_check_constraints("nation", schema="tpch")),
        ("get_table_comment", lambda: insp.get_table_comment("nation", schema="tpch")),
        ("get_multi_columns", lambda: insp.get_multi_columns(schema="tpch")),
        ("get_multi_pk_constraint", lambda: insp.get_multi_pk_constraint(schema="tpch")),
        ("get_multi_foreign_keys", lambda: insp.get_multi_foreign_keys(schema="tpch")),
        ("get_enums", lambda: insp.get_enums(schema="*")),
        ("get_domains", lambda: insp.get_domains(schema="*")),
        ("Table autoload", lambda: sa.Table("region", sa.MetaData(), schema="tpch", autoload_with=conn)),
        ("select with a bound parameter", lambda: conn.execute(
            sa.text("SELECT n_name FROM tpch.nation WHERE n_nationkey = :k"), {"k": 3}).fetchall()),
    ]
    for call, run in calls:
        mark(call)
        insp.info_cache.clear()
        run()

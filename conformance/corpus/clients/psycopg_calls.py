"""psycopg 3's type registry lookups (TypeInfo.fetch and friends, psycopg/_typeinfo.py)
as applications and adapters (hstore, composites, ranges) run them, after markers."""
import sys

import psycopg
from psycopg.types import TypeInfo
from psycopg.types.composite import CompositeInfo
from psycopg.types.enum import EnumInfo
from psycopg.types.multirange import MultirangeInfo
from psycopg.types.range import RangeInfo

with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={sys.argv[1]}", autocommit=True) as conn:
    def mark(call):
        conn.execute(f"SELECT 'harvest: {call}'")

    for call, fetch in [
        ("TypeInfo.fetch(int4)", lambda: TypeInfo.fetch(conn, "int4")),
        ("TypeInfo.fetch(hstore)", lambda: TypeInfo.fetch(conn, "hstore")),
        ("TypeInfo.fetch(text[])", lambda: TypeInfo.fetch(conn, "text[]")),
        ("RangeInfo.fetch(int4range)", lambda: RangeInfo.fetch(conn, "int4range")),
        ("MultirangeInfo.fetch(int4multirange)", lambda: MultirangeInfo.fetch(conn, "int4multirange")),
        ("CompositeInfo.fetch(tpch.nation)", lambda: CompositeInfo.fetch(conn, "tpch.nation")),
        ("EnumInfo.fetch(mood)", lambda: EnumInfo.fetch(conn, "mood")),
    ]:
        mark(call)
        fetch()
    mark("execute with parameters")
    conn.execute("SELECT n_name FROM tpch.nation WHERE n_nationkey = %s AND n_name LIKE %s", (3, "C%")).fetchall()

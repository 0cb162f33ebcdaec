"""asyncpg's introspection as it runs for a new type codec, a table's row type, arrays and
ranges (its statements live in asyncpg/introspection.py), each after a marker."""
import asyncio
import sys

import asyncpg


async def main(database):
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database=database)

    async def mark(call):
        await conn.execute(f"SELECT 'harvest: {call}'")

    await mark("set_type_codec (TYPE_BY_NAME)")
    await conn.set_type_codec("numeric", encoder=str, decoder=str, schema="pg_catalog", format="text")
    await mark("introspect a table row type (INTRO_LOOKUP_TYPES)")
    await conn.fetch("SELECT n FROM tpch.nation n LIMIT 1")
    await mark("introspect a range and an array of it")
    await conn.fetch("SELECT int4range(1, 5), ARRAY[int8range(1, 2)]")
    await mark("introspect an enum-like domain (information_schema.sql_identifier)")
    await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'tpch' ORDER BY 1 LIMIT 1")
    await mark("prepared statement with parameters")
    await conn.fetch("SELECT n_name FROM tpch.nation WHERE n_regionkey = $1 ORDER BY n_nationkey LIMIT $2", 1, 3)
    await mark("reload_schema_state")
    await conn.reload_schema_state()
    await conn.close()


asyncio.run(main(sys.argv[1]))

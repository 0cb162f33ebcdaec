// postgres.js (npm `postgres`): what a new user does first — connect, list schemas and
// tables, describe a table, preview rows, a parameterized query, a cursor. Prints one JSON
// object, so the test can compare sluice's answers with PostgreSQL's.
import postgres from "postgres";

const sql = postgres({
  host: process.env.PGHOST,
  port: Number(process.env.PGPORT),
  user: process.env.PGUSER,
  password: process.env.PGPASSWORD || undefined,
  database: process.env.PGDATABASE,
  ssl: false,
  max: 1,
  connect_timeout: 30,
});

const out = {};
try {
  out.schemas = (await sql`select schema_name from information_schema.schemata
                           where schema_name = 'tpch'`).map((r) => r.schema_name);
  out.tables = (await sql`select table_name from information_schema.tables
                          where table_schema = ${"tpch"} order by table_name`).map((r) => r.table_name);
  out.columns = await sql`select column_name, data_type, is_nullable
                          from information_schema.columns
                          where table_schema = 'tpch' and table_name = 'nation'
                          order by ordinal_position`;
  const preview = await sql`select * from tpch.nation order by n_nationkey limit 3`;
  out.preview = preview;
  out.preview_types = preview.columns.map((c) => [c.name, c.type]);
  out.param = await sql`select n_name, n_regionkey from tpch.nation
                        where n_regionkey = ${1} and n_name > ${"B"} order by n_name`;
  out.typed = await sql`select o_orderdate, o_totalprice, o_orderkey from tpch.orders
                        where o_orderkey = ${1}`;
  // A cursor reads in batches through one portal (Execute with a row limit).
  let batches = 0, rows = 0;
  for await (const batch of sql`select l_orderkey from tpch.lineitem
                                 where l_orderkey < ${200} order by l_orderkey`.cursor(50)) {
    batches += 1;
    rows += batch.length;
  }
  out.cursor = { batches, rows };
  try {
    await sql`select * from tpch.no_such_table`;
  } catch (e) {
    out.error = e.code;
  }
  out.after_error = await sql`select count(*)::int as n from tpch.region`;
} finally {
  await sql.end({ timeout: 5 });
}
console.log(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v)));

// node-postgres against sluice: unnamed and named prepared statements, a simple query.
// Usage: node prepared.js   (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE from the env)
const { Client } = require("pg");

async function main() {
  const client = new Client();
  await client.connect();
  const out = {};
  // Parameters: unnamed Parse/Bind/Describe/Execute/Sync.
  let r = await client.query("SELECT n_name FROM tpch.nation WHERE n_nationkey = $1", [3]);
  out.unnamed = r.rows;
  // A named statement: parsed once, then bound again with other values.
  for (const key of [7, 21]) {
    r = await client.query({
      name: "nation_by_key",
      text: "SELECT n_name, n_regionkey FROM tpch.nation WHERE n_nationkey = $1",
      values: [key],
    });
    (out.named = out.named || []).push(r.rows[0]);
  }
  // No parameters: a simple Query.
  r = await client.query("SELECT count(*) AS n FROM tpch.region");
  out.simple = r.rows;
  // Types come back as node values.
  r = await client.query(
    "SELECT o_orderdate, o_totalprice, o_orderkey FROM tpch.orders WHERE o_orderkey = $1", [1]);
  out.types = r.rows.map((row) => ({
    date: row.o_orderdate instanceof Date,
    price: row.o_totalprice,
    key: row.o_orderkey,
  }));
  // An error leaves the connection usable.
  try {
    await client.query("SELECT * FROM tpch.no_such_table WHERE x = $1", [1]);
  } catch (e) {
    out.error = e.code;
  }
  r = await client.query({ name: "nation_by_key", text: "SELECT n_name, n_regionkey FROM tpch.nation WHERE n_nationkey = $1", values: [0] });
  out.after_error = r.rows;
  await client.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e.stack || e);
  process.exit(1);
});

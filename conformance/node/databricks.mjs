// @databricks/sql against sluice over HTTPS (driven by conformance/test_hs2.py).
// Usage: node databricks.mjs <host:port> <token> <ca-cert-file>
import { DBSQLClient } from '@databricks/sql';
import { readFileSync } from 'node:fs';

const [hostPort, token, caFile] = process.argv.slice(2);
const [host, port] = hostPort.split(':');
const client = new DBSQLClient();
await client.connect({
  host,
  port: Number(port),
  path: '/sql/1.0/warehouses/default',
  token,
  customCaCert: readFileSync(caFile),
  telemetryEnabled: false,
});
const session = await client.openSession();
const out = {};

const query = await session.executeStatement(
  'SELECT n_nationkey, n_name FROM tpch.nation WHERE n_regionkey = :r ORDER BY n_nationkey',
  { namedParameters: { r: 1 } },
);
out.rows = await query.fetchAll();
await query.close();

const tables = await session.getTables({ schemaName: 'tpch' });
out.tables = (await tables.fetchAll()).map((t) => t.TABLE_NAME);
await tables.close();

const columns = await session.getColumns({ schemaName: 'tpch', tableName: 'region' });
out.columns = (await columns.fetchAll()).map((c) => [c.COLUMN_NAME, c.TYPE_NAME]);
await columns.close();

const schemas = await session.getSchemas({});
out.schemas = (await schemas.fetchAll()).map((s) => s.TABLE_SCHEM);
await schemas.close();

try {
  const bad = await session.executeStatement('SELECT no_such_column FROM tpch.nation');
  await bad.fetchAll();
  out.error = null;
} catch (e) {
  out.error = String(e.message);
}

await session.close();
await client.close();
console.log(JSON.stringify(out));

// The Databricks SQL corpus through @databricks/sql (driven by conformance/test_spark_corpus.py).
// Usage: node databricks_corpus.mjs <host:port> <token> <ca-cert-file> < statements.json
// statements.json: [[statement, …], …], one list per session (a corpus file: a USE holds for
// the statements after it). Prints, per statement, {names, rows} or {error}, values as JSON
// can hold them (a Date as its ISO text, a BigInt as its decimal text).
import { DBSQLClient } from '@databricks/sql';
import { readFileSync } from 'node:fs';

const [hostPort, token, caFile] = process.argv.slice(2);
const [host, port] = hostPort.split(':');
const sessions = JSON.parse(readFileSync(0, 'utf8'));
const client = new DBSQLClient();
await client.connect({
  host,
  port: Number(port),
  path: '/sql/1.0/warehouses/default',
  token,
  customCaCert: readFileSync(caFile),
  telemetryEnabled: false,
});

const plain = (v) => {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object') {
    if (typeof v.toArray === 'function') return plain(v.toArray());
    if (typeof v.toJSON === 'function') return plain(v.toJSON());
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
};

const out = [];
for (const statements of sessions) {
  const session = await client.openSession();
  for (const sql of statements) {
    try {
      const op = await session.executeStatement(sql);
      const schema = await op.getSchema();
      const names = schema ? schema.columns.map((c) => c.columnName) : [];
      const rows = schema ? (await op.fetchAll()).map((r) => names.map((n) => plain(r[n]))) : [];
      await op.close();
      out.push({ names, rows });
    } catch (e) {
      out.push({ error: String(e.message).split('\n')[0].slice(0, 200) });
    }
  }
  await session.close();
}
await client.close();
console.log(JSON.stringify(out));

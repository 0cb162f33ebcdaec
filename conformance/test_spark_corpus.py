"""The Databricks SQL differential corpus: statements Databricks clients and tools send, run
through databricks-sql-connector on sluice and on Apache Spark in local mode (PySpark, ANSI
mode on, as Databricks SQL warehouses run) over the same Parquet files.

Each `spark_corpus/*.yaml` holds the statements of one source (a tool's macros, a dialect's
introspection, the Spark SQL function reference), naming where each statement comes from.
Statements of one file run in order in one session on each side (a `USE` holds for the
statements after it). Results must be equal once what may legitimately differ is normalized
(see `normalize` and `spark_text`, with their reasons); a statement whose answer differs is
listed in spark_corpus/differences.yaml with what differs (or, written by hand, "because …":
why it may). Set CORPUS_UPDATE=1 to rewrite that list from this run (keeping the reasons
written by hand).

Done means for issue 23: at least 200 statements, at least 95 % equal.
"""
import datetime
import decimal
import math
import os
import pathlib
import re
import shutil
import tempfile

import json
import subprocess
import urllib.request

import pyarrow as pa
import pytest
import yaml
from databricks import sql as dbsql
from databricks.sdk import WorkspaceClient

from conftest import start_sluice
from test_hs2 import connect

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "spark_corpus"
DIFFERENCES = CORPUS / "differences.yaml"
TPCH = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
# sluice's one catalog, as statements in the corpus name it; local Spark's session catalog.
CATALOG = "sluice"
SPARK_CATALOG = "spark_catalog"


def load_corpus():
    files = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path == DIFFERENCES:
            continue
        doc = yaml.safe_load(path.read_text())
        statements = [{"id": s["id"], "source": s.get("source", doc["source"]), "sql": s["sql"]}
                      for s in doc["statements"]]
        files.append((doc["tool"], statements))
    return files


@pytest.fixture(scope="module")
def spark(sluice):
    """A local Spark session over sluice's demo Parquet files: database `tpch` with its eight
    tables as external Parquet tables. ANSI mode on and the session time zone UTC (as
    Databricks SQL warehouses run; sluice's sessions are UTC). `keepCommandOutputSchema`
    gives SHOW's result columns the names Databricks documents (`database`, `databaseName`),
    which open-source Spark renamed (`namespace`)."""
    os.environ["TZ"] = "UTC"
    os.environ.setdefault("PYSPARK_PYTHON", str(pathlib.Path(os.sys.executable)))
    from pyspark.sql import SparkSession
    warehouse = tempfile.mkdtemp(prefix="spark-warehouse-")
    session = (SparkSession.builder.master("local[1]").appName("sluice-reference")
               .config("spark.sql.ansi.enabled", "true")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.legacy.keepCommandOutputSchema", "true")
               .config("spark.sql.shuffle.partitions", "1")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.warehouse.dir", warehouse)
               .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    session.sql("CREATE DATABASE IF NOT EXISTS tpch")
    for table in TPCH:
        session.sql(f"CREATE TABLE IF NOT EXISTS tpch.{table} USING parquet "
                    f"LOCATION '{sluice.data_dir}/tpch/{table}'")
    yield session
    session.stop()
    shutil.rmtree(warehouse, ignore_errors=True)


def spark_text(sql):
    """The statement as local Spark runs it: sluice's catalog named by Spark's own name for
    its session catalog (`spark_catalog`), the one catalog each side has."""
    return re.sub(rf"`{CATALOG}`|\b{CATALOG}\b(?=\s*\.)", f"`{SPARK_CATALOG}`", sql)


SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A day-time interval in Hive's text form, as Databricks' connector receives it.
HIVE_INTERVAL = re.compile(r"^(-?)(\d+) (\d{2}):(\d{2}):(\d{2})\.(\d{9})$")


def normalize(value):
    """A value as the two sides are compared:
    - numbers by kind and value: an integer, a decimal (by value, whatever its scale: the
      decimal's type is each engine's choice within Spark's rules) and a double (to 12
      significant digits: the last bits of a float sum depend on the order of addition);
    - dates and timestamps as ISO text (both in UTC); a day-time interval as microseconds
      (PySpark reads it as a timedelta; the connector receives Hive's text,
      `1 00:00:00.000000000`, as from Databricks; the Statement Execution API's Arrow files
      carry Arrow's month-day-nanosecond interval);
    - `spark_catalog`, Spark's name for its one catalog, as sluice's (`sluice`);
    - arrays, maps and structs element by element (Arrow reads a map as (key, value)
      pairs, PySpark as a dict; a struct as a dict, PySpark as a Row)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, decimal.Decimal):
        return ("decimal", format(value.normalize(), "f"))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ("double", str(value))
        return ("double", float(f"{value:.12g}"))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return ("timestamp", value.isoformat())
    if isinstance(value, datetime.date):
        return ("date", value.isoformat())
    if isinstance(value, datetime.timedelta):
        return ("interval", value / datetime.timedelta(microseconds=1))
    if type(value).__name__ == "MonthDayNano" and value.months == 0:  # an Arrow interval
        return ("interval", float(value.days * 86_400_000_000 + value.nanoseconds // 1000))
    if isinstance(value, str):
        m = HIVE_INTERVAL.match(value)
        if m:
            sign, d, h, mi, sec, nanos = m.groups()
            micros = ((int(d) * 24 + int(h)) * 60 + int(mi)) * 60_000_000 + int(sec) * 1_000_000 \
                + int(nanos) // 1000
            return ("interval", float(-micros if sign else micros))
        return value.replace(SPARK_CATALOG, CATALOG)
    if isinstance(value, (bytes, bytearray)):
        return ("binary", bytes(value).hex())
    if hasattr(value, "asDict"):  # a PySpark Row (a struct)
        return {k: normalize(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {str(k): normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(k): normalize(v) for k, v in value}  # a map, read as pairs
        return [normalize(v) for v in value]
    return repr(value)


def column_name(name):
    """A result column's name when it is an alias or a column (an unaliased expression's
    name is each engine's own rendering of the expression: `<expr>`)."""
    return name if SIMPLE_NAME.match(name) else "<expr>"


def rows_of(names, rows, ordered, value=None):
    names, rows = documented(list(names), rows)
    value = value or normalize
    rendered = [repr([value(v) for v in row]) for row in rows]
    return {"names": [column_name(n) for n in names],
            "rows": rendered if ordered else sorted(rendered)}


def ordered(sql):
    return re.search(r"\border\s+by\b", sql, re.I) is not None


# Schemas each side has of its own: local Spark's empty `default`; sluice's
# information_schema (as a Unity Catalog catalog has), `system` (its warehouse state) and
# `public` (where PostgreSQL clients' objects go). The schemas of the data are compared.
OWN_SCHEMAS = {"default", "information_schema", "system", "public"}
# DESCRIBE TABLE EXTENDED's detail rows that are each server's own facts (when and by whom
# the table was made, where its files are, Spark's table properties); the columns, Catalog,
# Database, Table and Type rows are compared.
OWN_DETAILS = {"Owner", "Created Time", "Last Access", "Created By", "Provider", "Location",
               "Statistics", "Serde Library", "InputFormat", "OutputFormat", "Table Properties",
               "Storage Properties", "Partition Provider", "Comment"}


def documented(names, rows):
    """What Databricks documents beyond open-source Spark, and each server's own facts:
    - SHOW VIEWS' `isMaterialized` column (Databricks SQL has materialized views; Spark has
      no such column);
    - SHOW SCHEMAS' rows for OWN_SCHEMAS; DESCRIBE SCHEMA's OWN_DETAILS rows (Location,
      Owner);
    - DESCRIBE TABLE EXTENDED: the OWN_DETAILS rows, and sluice's `# Constraints` section
      (its informational keys, as Databricks lists a table's constraints; the Parquet tables
      local Spark reads declare none)."""
    if names == ["namespace", "viewName", "isTemporary", "isMaterialized"]:
        return names[:3], [r[:3] for r in rows]
    if names == ["database_description_item", "database_description_value"]:
        return names, [r for r in rows if r[0] not in OWN_DETAILS]
    if names == ["databaseName"]:
        return names, [r for r in rows if r[0] not in OWN_SCHEMAS]
    if names == ["col_name", "data_type", "comment"] and any(
            r[0] == "# Detailed Table Information" for r in rows):
        kept, constraints = [], False
        for r in rows:
            if r[0] == "# Constraints":
                constraints = True
            elif constraints and r[0] == "":
                constraints = False
            if not constraints and r[0] not in OWN_DETAILS:
                kept.append(r)
        while kept and kept[-1][0] == "":
            kept.pop()
        return names, kept
    return names, rows


def on_sluice(cur, sql):
    try:
        cur.execute(sql)
        if cur.description is None:
            return {"names": [], "rows": []}
        # Read as Arrow (what sluice sent), not through the connector's pandas conversion,
        # which turns a list of integers with a NULL into floats and NaN.
        table = cur.fetchall_arrow()
        rows = list(zip(*[column.to_pylist() for column in table.columns])) if table.num_columns else []
        names = [d[0] for d in cur.description]
        return {**rows_of(names, rows, ordered(sql)), "raw": (names, rows)}
    except dbsql.exc.Error as e:
        return {"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
    except Exception as e:  # the client could not read what sluice sent: never equal
        return {"error": f"client fails: {type(e).__name__}: {str(e)[:160]}", "client": True}


# Files whose statements need no session of their own (no USE or SET): they run through the
# Statement Execution API too, one request each.
SESSIONLESS = {"Spark SQL built-in functions", "Databricks SQL literals", "dbt-databricks",
               "databricks-sqlalchemy", "TPC-H"}


def on_rest(api, sql):
    """A statement through the Statement Execution API, its result as Arrow (ARROW_STREAM
    over EXTERNAL_LINKS), normalized as the connector's."""
    from databricks.sdk.service.sql import Disposition, Format, StatementState
    try:
        r = api.execute_statement(statement=sql, warehouse_id="default", wait_timeout="50s",
                                  disposition=Disposition.EXTERNAL_LINKS, format=Format.ARROW_STREAM)
    except Exception as e:  # a refused request
        return {"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
    if r.status.state != StatementState.SUCCEEDED:
        error = r.status.error.message if r.status.error else str(r.status.state)
        return {"error": (error or "").splitlines()[0][:200]}
    columns = (r.manifest.schema.columns or []) if r.manifest and r.manifest.schema else []
    tables, chunk = [], r.result
    while chunk is not None and chunk.external_links:
        for link in chunk.external_links:
            with urllib.request.urlopen(link.external_link, timeout=60) as resp:
                tables.append(pa.ipc.open_stream(resp.read()).read_all())
        if chunk.next_chunk_index is None:
            break
        chunk = api.get_statement_result_chunk_n(r.statement_id, chunk.next_chunk_index)
    rows = []
    for t in tables:
        rows.extend(zip(*[c.to_pylist() for c in t.columns]))
    return rows_of([c.name for c in columns], rows, ordered(sql))


def plain(value):
    """A value as the Node connector hands it over, made JSON (see
    node/databricks_corpus.mjs): numbers as doubles (it reads decimals and BIGINTs as
    JavaScript numbers or text), dates and timestamps as the instant's ISO text to the
    millisecond, binary as a Buffer's JSON."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(f"{float(value):.10g}")
    if isinstance(value, str):
        if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value):
            return float(f"{float(value):.10g}")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", value):
            return value[:-1]
        return value.replace(SPARK_CATALOG, CATALOG)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, datetime.date):
        return f"{value.isoformat()}T00:00:00.000"
    if isinstance(value, (bytes, bytearray)):
        return {"type": "Buffer", "data": [float(b) for b in value]}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(k): plain(v) for k, v in value}
        return [plain(v) for v in value]
    return repr(value)


def on_node(server, files):
    """Every file's statements through @databricks/sql (one session per file), against a
    server with TLS (the Node connector speaks HTTPS only)."""
    sessions = [[s["sql"] for s in statements] for _, statements in files]
    out = subprocess.run(["node", str(HERE / "node" / "databricks_corpus.mjs"), server.http, server.token,
                          server.tls_cert], input=json.dumps(sessions), capture_output=True, text=True,
                         timeout=900, cwd=HERE / "node")
    assert out.returncode == 0, out.stderr[-2000:]
    # The connector logs to standard output too: the answer is the last line.
    return json.loads(out.stdout.strip().splitlines()[-1])


def on_spark(spark, sql):
    try:
        df = spark.sql(spark_text(sql))
        return {**rows_of(df.columns, [tuple(r) for r in df.collect()], ordered(sql)), "raw_names": df.columns}
    except Exception as e:  # AnalysisException, ParseException, the JVM's runtime errors
        return {"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}


def difference(got, want):
    """What differs, in words (None when nothing does). Two failures are equal: the
    connector does not carry an error's SQLSTATE, and each engine words its own message."""
    if got.get("client"):
        return got["error"]
    if "error" in got and "error" in want:
        return None
    if "error" in got:
        return f"sluice fails: {got['error']}"
    if "error" in want:
        return f"Spark fails ({want['error'][:120]}), sluice answers"
    if got["names"] != want["names"]:
        return f"column names {got['names']}, Spark {want['names']}"
    if got["rows"] != want["rows"]:
        if len(got["rows"]) != len(want["rows"]):
            return f"rows differ ({len(got['rows'])} rows, Spark {len(want['rows'])})"
        first = next(i for i, (g, w) in enumerate(zip(got["rows"], want["rows"])) if g != w)
        return f"rows differ: {got['rows'][first][:150]}, Spark {want['rows'][first][:150]}"
    return None


@pytest.fixture(scope="module")
def tls_sluice():
    server = start_sluice("--tls-self-signed")
    yield server
    server.stop()


def test_corpus_matches_spark(sluice, spark, tls_sluice):
    files = load_corpus()
    known = (yaml.safe_load(DIFFERENCES.read_text()) or {}) if DIFFERENCES.exists() else {}
    found, total = {}, 0
    named, names_differ = 0, {}
    # The same statements through the Statement Execution API and the Node connector must
    # answer as through databricks-sql-connector.
    api = WorkspaceClient(host=sluice.http_url, token=sluice.token, auth_type="pat").statement_execution
    node = iter(on_node(tls_sluice, files))
    other_clients = {}
    for tool, statements in files:
        spark.sql("USE default")
        # A gateway that went away fails the statement at once (no retries for minutes).
        with connect(sluice, _retry_stop_after_attempts_count=1) as conn, conn.cursor() as cur:
            for s in statements:
                total += 1
                ours = on_sluice(cur, s["sql"])
                theirs = on_spark(spark, s["sql"])
                why = difference(ours, theirs)
                if why:
                    found[s["id"]] = why
                elif "raw" in ours and theirs.get("raw_names"):
                    # Output names exactly, unaliased expressions' included (the comparison
                    # above reads those as `<expr>`): counted, and kept from going down.
                    named += 1
                    if list(ours["raw"][0]) != list(theirs["raw_names"]):
                        names_differ[s["id"]] = (list(ours["raw"][0]), theirs["raw_names"])
                if tool in SESSIONLESS:
                    rest = difference(on_rest(api, s["sql"]), ours)
                    if rest:
                        other_clients[f"{s['id']} (Statement Execution API)"] = rest
                from_node = next(node)
                if "error" in ours or "error" in from_node:
                    if ("error" in ours) != ("error" in from_node):
                        other_clients[f"{s['id']} (Node)"] = f"Node {from_node}, connector {ours}"[:300]
                    continue
                names, rows = ours.get("raw", ([], []))
                want = rows_of(names, rows, ordered(s["sql"]), plain)
                got = rows_of(from_node["names"], [tuple(r) for r in from_node["rows"]], ordered(s["sql"]),
                              plain)
                if got != want:
                    other_clients[f"{s['id']} (Node)"] = f"Node {got}, connector {want}"[:300]
    assert not other_clients, f"other clients answer differently: {other_clients}"
    ids = [s["id"] for _, statements in files for s in statements]
    assert len(ids) == len(set(ids)), "corpus ids are unique"
    if os.environ.get("CORPUS_UPDATE"):
        keep = {k: v for k, v in known.items() if k in found and str(v).startswith("because")}
        keep.update({k: v for k, v in found.items() if k not in keep})
        DIFFERENCES.write_text("# Corpus statements whose answer differs from local Spark's, and how "
                               "(test_spark_corpus.py).\n" + yaml.safe_dump(keep, sort_keys=False, width=200,
                                                                             allow_unicode=True))
        known = keep
    equal = total - len(found)
    print(f"\nDatabricks SQL corpus: {equal}/{total} statements equal to local Spark "
          f"({100 * equal / total:.1f} %); output names exactly Spark's in "
          f"{named - len(names_differ)}/{named}")
    # The one documented difference: Databricks' SHOW VIEWS has `isMaterialized`.
    show_views = ["namespace", "viewName", "isTemporary", "isMaterialized"]
    names_differ = {k: v for k, v in names_differ.items() if v != (show_views, show_views[:3])}
    assert not names_differ, f"output names differ from Spark's: {names_differ}"
    unlisted = {k: v for k, v in found.items() if k not in known}
    assert not unlisted, f"statements differ from Spark and are not in differences.yaml: {unlisted}"
    stale = [k for k in known if k not in found]
    assert not stale, f"statements in differences.yaml now equal Spark's answer (take them off): {stale}"
    assert total >= 200, f"the corpus has {total} statements (at least 200)"
    assert equal >= 0.95 * total, f"{equal}/{total} equal to Spark (at least 95 %)"

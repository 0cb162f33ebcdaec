"""The differential corpus: statements real tools send, run on sluice and on PostgreSQL.

Each `corpus/*.yaml` holds the statements one tool or driver sends (harvested from its
source or from what it sent to a PostgreSQL server, see corpus/README.md), with the
tool's version and the source each statement comes from. Every statement runs on sluice
and on the reference PostgreSQL database (the tpch tables recreated with the same shape);
column names, column type OIDs and rows must be the same once what may legitimately
differ is normalized (`normalize`, below, with its reasons).

A statement whose answer differs must be listed in corpus/differences.yaml with what
differs (or, written by hand, "because …": why it may); one listed there that now matches
must be taken off. Set CORPUS_UPDATE=1 to rewrite the list from this run (keeping the
reasons written by hand).
"""
import os
import pathlib
import re

import psycopg
import pytest
import yaml

from conftest import REFERENCE_DB

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
DIFFERENCES = CORPUS / "differences.yaml"

# Types whose values are object identifiers.
OID_TYPES = {26, 24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 28}
FIRST_USER_OID = 16384
XID = 28
# The roles that own objects: PostgreSQL's bootstrap superuser and sluice's owner role, the
# user each side is connected as, and PostgreSQL 15's owner of the public schema.
ROLES = re.compile(r"\b(postgres|sluice|pg_database_owner)\b")
VERSION = re.compile(r"^PostgreSQL \d+\.\d+ .* on ")


def load_corpus():
    statements = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path == DIFFERENCES:
            continue
        doc = yaml.safe_load(path.read_text())
        for s in doc["statements"]:
            statements.append({"id": s["id"], "tool": doc["tool"], "version": doc["version"],
                               "source": s["source"], "sql": s["sql"]})
    return statements


# Columns that report storage sizes (bytes, 8 kB pages): PostgreSQL stores heap and index
# pages, sluice stores Parquet files and no index. Row counts (reltuples) are compared.
SIZE_COLUMN = re.compile(r"(^|_)(size|pages|relpages|relallvisible)($|_)|^(pg_(total_)?relation_size|"
                         r"pg_table_size|pg_indexes_size|index_rel_size|table_rel_size)$", re.I)
# Counters of what each server has done itself (index and table scans since its statistics
# were reset): PostgreSQL scanned the reference's indexes while it created its keys.
COUNTER_COLUMN = re.compile(r"(^|_)(num_?scans|idx_scan|seq_scan|idx_tup_fetch|seq_tup_read)$", re.I)
# How each server stores a table and enforces its keys (see `normalize`).
STORAGE_COLUMN = {"reltoastrelid", "relhastriggers", "hastoasttable"}
PRETTY_SIZE = re.compile(r"^-?\d+ (bytes|kB|MB|GB|TB)$")
# PostgreSQL names a NOT NULL column's implicit CHECK constraint after OIDs
# (`<schema oid>_<table oid>_<column>_not_null`), which each server assigns itself.
NOT_NULL_NAME = re.compile(r"^\d+_\d+_(\d+)_not_null$")


def normalize(value, type_oid, name=""):
    """What may differ between two servers holding the same tables, and nothing else:
    - storage sizes (columns named like `*_size`, `relpages`; see SIZE_COLUMN) and each
      server's own activity counters (COUNTER_COLUMN);
    - OIDs of user objects (≥ 16384): each server numbers its own tables, also inside the
      names PostgreSQL derives from them (NOT_NULL_NAME);
    - the owner's role name (sluice's objects belong to `sluice`, the reference's to
      `postgres`), also inside ACL strings;
    - `version()`'s text, which names the server's build (sluice says it is sluice);
    - transaction ids (`xid`: relfrozenxid, datminmxid, …), the server's own counters;
    - the text of a plan (EXPLAIN's `QUERY PLAN` lines, see `outcome`): each engine plans
      with its own operators (PostgreSQL's Seq Scan and costs, DataFusion's execution
      plan), so only the column, its type and that there is a plan are compared;
    - `pg_attver=…` in a column's attoptions: the reference server's build stores that
      option on every column it creates (a patch of its packager; stock PostgreSQL and
      sluice store none);
    - heap storage and key enforcement (STORAGE_COLUMN): PostgreSQL keeps long values in
      a TOAST table (reltoastrelid, pgAdmin's hastoasttable) and enforces a foreign key with internal triggers on
      both tables (relhastriggers; PostgreSQL 15 has no NOT ENFORCED keys); sluice stores
      Parquet and its keys are informational, like PostgreSQL 18's NOT ENFORCED keys,
      which have no triggers. Neither server has a trigger of its own;
    - the reference server's other databases (see `outcome`): it is a shared server
      (postgres, template0/1, test, …); sluice has the one database a session connects to,
      whose row is compared."""
    if value is None:
        return None
    if name == "attoptions" and isinstance(value, list):
        value = [o for o in value if not str(o).startswith("pg_attver=")] or None
        if value is None:
            return None
    if name and SIZE_COLUMN.search(name) and (
            isinstance(value, (int, float)) or PRETTY_SIZE.match(str(value))):
        return "<size>"
    if name and COUNTER_COLUMN.search(name) and isinstance(value, int):
        return "<counter>"
    if name in STORAGE_COLUMN:
        return "<storage>"
    if isinstance(value, str) and NOT_NULL_NAME.match(value):
        return NOT_NULL_NAME.sub(r"<oid>_<oid>_\1_not_null", value)
    if isinstance(value, str) and VERSION.match(value):
        return "<server version>"
    if type_oid == XID:
        return "<xid>"
    if type_oid in OID_TYPES:
        try:
            if int(value) >= FIRST_USER_OID:
                return "<user oid>"
        except (TypeError, ValueError):
            pass
    if isinstance(value, str):
        return ROLES.sub("<owner>", value)
    if isinstance(value, list):
        return [normalize(v, None) for v in value]
    return value


# The column a statement over pg_database names a database in (DBeaver's, pgAdmin's,
# psql's \l).
DATABASE_NAME = {"datname", "name"}


def outcome(conn, sql, other_databases=frozenset()):
    """Every result of a statement (a text may hold several): (names, type OIDs, sorted
    normalized rows) or the command tag; or the SQLSTATE it failed with. A statement over
    pg_database drops the rows naming one of `other_databases` (the reference server's
    databases but the one connected to)."""
    about_databases = "pg_database" in sql.lower()
    try:
        cur = conn.execute(sql)
        results = []
        while True:
            if cur.description:
                names = [d.name for d in cur.description]
                types = [d.type_code for d in cur.description]
                fetched = cur.fetchall()
                database = next((i for i, n in enumerate(names) if n.lower() in DATABASE_NAME), None)
                if about_databases and database is not None:
                    fetched = [r for r in fetched if r[database] not in other_databases]
                rows = sorted((repr([normalize(v, t, n) for v, t, n in zip(row, types, names)])
                               for row in fetched))
                if names == ["QUERY PLAN"] and rows:
                    rows = ["<plan>"]
                results.append({"names": names, "types": types, "rows": rows})
            else:
                results.append({"tag": cur.statusmessage})
            if not cur.nextset():
                break
        return results
    except psycopg.Error as e:
        return {"error": e.sqlstate, "message": str(e).splitlines()[0] if str(e) else ""}


def difference(got, want):
    """What differs, in words (None when nothing does)."""
    if isinstance(want, dict) and isinstance(got, dict):
        return None if got["error"] == want["error"] else f"sluice {got['error']}, PostgreSQL {want['error']}"
    if isinstance(got, dict):
        return f"sluice fails: {got['error']} {got['message'][:160]}"
    if isinstance(want, dict):
        return f"PostgreSQL fails ({want['error']}), sluice answers"
    if len(got) != len(want):
        return f"{len(got)} results, PostgreSQL {len(want)}"
    for g, w in zip(got, want):
        if "tag" in w or "tag" in g:
            if g.get("tag") != w.get("tag"):
                return f"command tag {g.get('tag')!r}, PostgreSQL {w.get('tag')!r}"
            continue
        if g["names"] != w["names"]:
            return f"column names {g['names']}, PostgreSQL {w['names']}"
        if g["types"] != w["types"]:
            cols = [f"{n}: {a} not {b}" for n, a, b in zip(g["names"], g["types"], w["types"]) if a != b]
            return "column types " + ", ".join(cols)
        if g["rows"] != w["rows"]:
            return f"rows differ ({len(g['rows'])} rows, PostgreSQL {len(w['rows'])})"
    return None


def test_corpus_matches_postgresql(sluice, reference):
    statements = load_corpus()
    known = yaml.safe_load(DIFFERENCES.read_text()) or {} if DIFFERENCES.exists() else {}
    # Connected as PostgreSQL's reference is, so that current_user and current_database()
    # read the same on both sides.
    ours = psycopg.connect(sluice.dsn(user="postgres", dbname=REFERENCE_DB), autocommit=True)
    theirs = psycopg.connect(reference, autocommit=True)
    other_databases = frozenset(r[0] for r in theirs.execute(
        "SELECT datname FROM pg_database WHERE datname <> current_database()"))
    found = {}
    try:
        for s in statements:
            got = outcome(ours, s["sql"], other_databases)
            if isinstance(got, dict) and got["error"] in ("08006", "08003"):
                ours = psycopg.connect(sluice.dsn(user="postgres", dbname=REFERENCE_DB), autocommit=True)
            want = outcome(theirs, s["sql"], other_databases)
            why = difference(got, want)
            if why:
                found[s["id"]] = why
    finally:
        ours.close()
        theirs.close()
    identical = len(statements) - len(found)
    tools = sorted({s["tool"] for s in statements})
    print(f"\ncorpus: {len(statements)} statements from {len(tools)} tools ({', '.join(tools)}); "
          f"{identical} identical to PostgreSQL ({100 * identical / len(statements):.1f} %)")
    if os.environ.get("CORPUS_UPDATE"):
        kept = dict(found)
        for k, v in known.items():
            if k in kept and v.startswith("because "):
                kept[k] = v  # a reason written by hand
        DIFFERENCES.write_text(
            "# Corpus statements whose answer differs from PostgreSQL's, and how (test_pg_corpus.py).\n"
            + yaml.safe_dump(kept, sort_keys=False, allow_unicode=True, width=200))
        return
    new = {k: v for k, v in found.items() if k not in known}
    fixed = [k for k in known if k not in found]
    assert not new, "statements that now differ from PostgreSQL (or are new and differ):\n" + "\n".join(
        f"  {k}: {v}" for k, v in list(new.items())[:20])
    assert not fixed, "statements that now match PostgreSQL: take them off corpus/differences.yaml:\n" + \
        "\n".join(f"  {k}" for k in fixed[:20])


def test_corpus_statements_name_their_source():
    statements = load_corpus()
    ids = [s["id"] for s in statements]
    assert len(ids) == len(set(ids)), "statement ids repeat"
    for s in statements:
        assert s["tool"] and s["version"] and s["source"] and s["sql"].strip(), s["id"]

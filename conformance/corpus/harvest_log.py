#!/usr/bin/env python3
"""Harvest the statements a real client sends, from PostgreSQL's statement log.

Runs a command (a client doing what users do first: connect, list schemas and tables,
describe one, read keys…) against a database whose `log_statement` is `all`, then reads
the statements it sent from the server log into a corpus file. The client marks which of
its calls sent what by running `SELECT 'harvest: <call>'` first; bound parameters are
written into the text as literals (the corpus runs them as plain statements).

    ALTER DATABASE sluice_harvest SET log_statement = 'all';   -- once, as a superuser
    python3 conformance/corpus/harvest_log.py --tool pgjdbc --version 42.5.5 \\
        --source pgjdbc/src/main/java/org/postgresql/jdbc/PgDatabaseMetaData.java \\
        --out conformance/corpus/pgjdbc.yaml -- java -cp … HarvestJdbc jdbc:postgresql://…

The log is /var/log/postgresql/postgresql-15-main.log (Debian's), with the default
`log_line_prefix` ("%m [%p] %q%u@%d ").
"""
import argparse
import os
import re
import subprocess

import yaml

LOG = "/var/log/postgresql/postgresql-15-main.log"
ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+ \[\d+\] \S*@(\S*) (\w+):  (.*)$")
STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (.*)$", re.S)
MARK = re.compile(r"^SELECT 'harvest: (.*)'$")
BOOKKEEPING = re.compile(r"^(?:(?:RELEASE|SAVEPOINT) _EXEC_SVP_\w+|BEGIN)$")


def block(dumper, text):
    """Multi-line SQL as a YAML literal block (trailing blanks, which YAML blocks cannot
    hold, dropped)."""
    if "\n" in text:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


def entries(lines):
    """(database, level, message) of each log entry; continuation lines start with a tab."""
    current = None
    for line in lines:
        m = ENTRY.match(line.rstrip("\n"))
        if m:
            if current:
                yield current
            current = [m.group(1), m.group(2), m.group(3)]
        elif current and line.startswith("\t"):
            current[2] += "\n" + line[1:].rstrip("\n")
    if current:
        yield current


def bind(sql, detail):
    """Write `$n` parameters into the text: DETAIL "parameters: $1 = 'x', $2 = NULL"."""
    values = dict(re.findall(r"\$(\d+) = ((?:'(?:[^']|'')*')|NULL)", detail))
    return re.sub(r"\$(\d+)\b", lambda m: values.get(m.group(1), m.group(0)), sql)


def table_oids(database):
    """The tpch tables' OIDs in the harvest database: a client that feeds one into its next
    statement wrote this server's number, which means nothing on another."""
    import psycopg
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        return dict(conn.execute("SELECT c.oid::text, c.relname FROM pg_class c "
                                 "WHERE c.relnamespace = 'tpch'::regnamespace").fetchall())


def portable(sql, oids):
    """A tpch table's OID as `'tpch.<table>'::regclass` (quoted: compared with a regclass
    or oid column; bare: an oid value)."""
    sql = re.sub(r"'(\d+)'", lambda m: f"'tpch.{oids[m.group(1)]}'::regclass"
                 if m.group(1) in oids else m.group(0), sql)
    return re.sub(r"(?<![\w.'])(\d{5})(?![\w.'])", lambda m: f"'tpch.{oids[m.group(1)]}'::regclass::oid"
                  if m.group(1) in oids else m.group(0), sql)


def harvest(lines, database):
    out, source, pending = [], None, None
    for db, level, message in entries(lines):
        if db != database:
            continue
        if level == "DETAIL" and pending is not None and message.startswith("parameters:"):
            out[pending] = (out[pending][0], bind(out[pending][1], message))
            continue
        pending = None
        m = STATEMENT.match(message) if level == "LOG" else None
        if not m:
            continue
        sql = m.group(1).strip()
        # psqlODBC sends its savepoint bookkeeping (named after a pointer) in the same
        # Query as the statement: the marker and the bookkeeping are not the client's SQL.
        kept = []
        for part in sql.split(";"):
            mark = MARK.match(part.strip())
            if mark:
                source = mark.group(1)
            elif not BOOKKEEPING.match(part.strip()):
                kept.append(part)
        sql = ";".join(kept).strip()
        if not sql:
            continue
        out.append((source, sql))
        pending = len(out) - 1
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tool", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--source", required=True, help="the source file the statements come from")
    p.add_argument("--out", required=True)
    p.add_argument("--database", default="sluice_harvest")
    p.add_argument("--skip", action="append", default=[], help="regex of statements to leave out")
    p.add_argument("command", nargs="+")
    args = p.parse_args()
    with open(LOG) as f:
        start = sum(1 for _ in f)
    subprocess.run(args.command, check=True, stdout=subprocess.DEVNULL)
    with open(LOG) as f:
        lines = f.readlines()[start:]
    statements, seen = [], set()
    oids = table_oids(args.database)
    for source, sql in harvest(lines, args.database):
        # The harvest database's name, where a client wrote it into the text, is the one
        # the corpus runs in.
        sql = portable(sql, oids).replace(args.database, "sluice_conformance")
        if sql in seen or any(re.search(s, sql) for s in args.skip):
            continue
        seen.add(sql)
        call = source or "connect"
        n = sum(1 for s in statements if s["source"].endswith(" " + call)) + 1
        statements.append({"id": f"{args.tool} {call} #{n}",
                           "source": f"{args.source} {call}", "sql": sql + "\n"})
    yaml.SafeDumper.add_representer(str, block)
    with open(args.out, "w") as f:
        client = " ".join(os.path.basename(a) for a in args.command if not a.startswith("jdbc:"))
        f.write(f"# Statements {args.tool} {args.version} sends, harvested by harvest_log.py from: {client}\n")
        yaml.safe_dump({"tool": args.tool, "version": args.version, "statements": statements}, f,
                       sort_keys=False, allow_unicode=True, width=100)
    print(f"{len(statements)} statements -> {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Harvest the queries psql sends for its backslash commands into psql.yaml.

psql prints every query a backslash command sends when run with -E (ECHO_HIDDEN); each
comes from src/bin/psql/describe.c (or command.c for \\sf). Run against a PostgreSQL
database holding the tpch tables (the conformance reference database will do):

    python3 conformance/corpus/harvest_psql.py "host=127.0.0.1 user=postgres dbname=sluice_conformance"

OIDs of the tpch tables that psql feeds from one query into the next are written back as
`'tpch.<table>'::regclass`, so that the statement means the same table on any server.
"""
import os
import re
import subprocess
import sys

import psycopg
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

# Backslash command -> the describe.c function that builds its queries.
COMMANDS = [
    (r"\d", "listTables"), (r"\d tpch.nation", "describeTableDetails"),
    (r"\d+ tpch.lineitem", "describeTableDetails"), (r"\d tpch.*", "describeTableDetails"),
    (r"\dt", "listTables"), (r"\dt tpch.*", "listTables"), (r"\dt+ tpch.*", "listTables"),
    (r"\dv", "listTables"), (r"\dv tpch.*", "listTables"), (r"\di", "listTables"),
    (r"\dm", "listTables"), (r"\ds", "listTables"), (r"\dE", "listTables"),
    (r"\dn", "listSchemas"), (r"\dn+", "listSchemas"), (r"\df", "describeFunctions"),
    (r"\df format_type", "describeFunctions"), (r"\df+ pg_catalog.lower", "describeFunctions"),
    (r"\dT", "describeTypes"), (r"\dT pg_catalog.int4", "describeTypes"),
    (r"\dT+ numeric", "describeTypes"), (r"\du", "describeRoles"), (r"\dg", "describeRoles"),
    (r"\l", "listAllDbs"), (r"\l+", "listAllDbs"), (r"\dx", "listExtensions"),
    (r"\dp tpch.*", "permissionsList"), (r"\z tpch.nation", "permissionsList"),
    (r"\dd tpch.*", "objectDescription"), (r"\dC", "listCasts"), (r"\dD", "listDomains"),
    (r"\dc", "listConversions"), (r"\do +", "describeOperators"),
    (r"\db", "describeTablespaces"), (r"\des", "listForeignServers"),
    (r"\dew", "listForeignDataWrappers"), (r"\det", "listForeignTables"),
    (r"\deu", "listUserMappings"), (r"\dF", "listTSConfigs"), (r"\dFd", "listTSDictionaries"),
    (r"\dFp", "listTSParsers"), (r"\dFt", "listTSTemplates"), (r"\dL", "listLanguages"),
    (r"\dO", "listCollations"), (r"\dy", "listEventTriggers"),
    (r"\drds", "listDbRoleSettings"), (r"\dRp", "listPublications"),
    (r"\dRs", "describeSubscriptions"), (r"\dA", "describeAccessMethods"),
    (r"\dAc", "listOperatorClasses"), (r"\da", "describeAggregates"),
    (r"\dconfig", "describeConfigurationParameters"), (r"\dP", "listPartitionedTables"),
    (r"\d+ tpch.orders", "describeTableDetails"), (r"\dt+ tpch.nation", "listTables"),
    (r"\di+", "listTables"), (r"\dv+", "listTables"), (r"\dm+", "listTables"),
    (r"\dx+", "listExtensions"), (r"\dD+", "listDomains"), (r"\dL+", "listLanguages"),
    (r"\dO+", "listCollations"), (r"\du+", "describeRoles"), (r"\dp tpch.nation", "permissionsList"),
    (r"\dconfig search*", "describeConfigurationParameters"), (r"\dS pg_class", "describeTableDetails"),
    (r"\dT+ tpch.*", "describeTypes"), (r"\df+ pg_catalog.upper", "describeFunctions"),
]


def block(dumper, text):
    """Multi-line SQL as a YAML literal block, readable and diffable."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def main(dsn):
    yaml.SafeDumper.add_representer(str, block)
    with psycopg.connect(dsn) as conn:
        oids = dict(conn.execute(
            "SELECT c.oid::text, c.relname FROM pg_class c "
            "WHERE c.relnamespace = 'tpch'::regnamespace").fetchall())
    # "psql (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
    version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.split()[2]
    args = dict(kv.split("=", 1) for kv in dsn.split())
    statements, seen = [], set()
    for command, function in COMMANDS:
        out = subprocess.run(
            ["psql", "-X", "-E", "-h", args.get("host", "127.0.0.1"), "-U", args.get("user", "postgres"),
             "-d", args["dbname"], "-c", command],
            capture_output=True, text=True, timeout=60).stdout
        for n, sql in enumerate(re.findall(r"^\*+ QUERY \*+\n(.*?)\n\*+$", out, re.S | re.M)):
            sql = re.sub(r"'(\d+)'", lambda m: f"'tpch.{oids[m.group(1)]}'::regclass"
                         if m.group(1) in oids else m.group(0), sql.strip())
            if sql in seen:
                continue
            seen.add(sql)
            statements.append({"id": f"psql {command} #{n + 1}",
                               "source": f"src/bin/psql/describe.c {function}", "sql": sql + "\n"})
    with open(os.path.join(HERE, "psql.yaml"), "w") as f:
        f.write(f"# Queries psql {version} sends for its backslash commands (harvest_psql.py).\n")
        yaml.safe_dump({"tool": "psql", "version": version, "statements": statements}, f,
                       sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    main(sys.argv[1])

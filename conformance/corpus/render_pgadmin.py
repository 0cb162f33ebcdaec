#!/usr/bin/env python3
"""Render the SQL templates pgAdmin 4's object browser runs, into pgadmin.yaml.

pgAdmin builds its catalog queries from Jinja templates (web/pgadmin/browser/**/templates),
one directory per server version (`15_plus`, …, `default`). This renders the ones its tree
runs when a user opens a server, a database, the tpch schema and the nation table, with the
values pgAdmin would pass for them, the way pgAdmin picks them for a PostgreSQL 15 server.

    git -C <pgadmin4 clone> archive HEAD web/pgadmin | tar -x -C /tmp/pgadmin
    python3 conformance/corpus/render_pgadmin.py /tmp/pgadmin/web <commit>

Object ids are written so that they mean the same object on any server:
`'tpch'::regnamespace::oid`, `'tpch.nation'::regclass::oid`, the current database's oid.
"""
import os
import re
import sys

import jinja2
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_VERSION = 150000


class Raw(str):
    """A value pgAdmin would bind as a number: written into the SQL as it is."""


def qt_literal(value, conn=None):
    if isinstance(value, (Raw, int, float)):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


def qt_ident(conn, *names):
    return ".".join('"' + n.replace('"', '""') + '"' for n in names if n)


def pick(web, template):
    """`dir/sql/#ver#/file.sql` -> the version directory pgAdmin uses for PostgreSQL 15."""
    if "/#ver#/" not in template:
        return template
    head, tail = template.split("/#ver#/")
    for root, dirs, _ in os.walk(web):
        if root.endswith("/templates") and os.path.isdir(os.path.join(root, head)):
            base = os.path.join(root, head)
            versions = sorted((int(d.split("_")[0]) for d in os.listdir(base)
                               if re.fullmatch(r"\d+_plus", d)), reverse=True)
            for v in versions:
                found = os.path.join(base, f"{v}_plus", tail)
                if v * 10000 <= SERVER_VERSION and os.path.exists(found):
                    return f"{head}/{v}_plus/{tail}"
            if os.path.exists(os.path.join(base, "default", tail)):
                return f"{head}/default/{tail}"
    raise FileNotFoundError(template)


DB = Raw("(SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())")
SCHEMA = Raw("'tpch'::regnamespace::oid")
TABLE = Raw("'tpch.nation'::regclass::oid")
COMMON = dict(conn=None, show_sys_objects=False, last_system_oid=16383, datlastsysoid=16383, did=None, scid=None,
              tid=None, schema_diff=False)

# (what the tree node shows, template, values)
RENDER = [
    ("server: databases", "databases/sql/#ver#/nodes.sql", {}),
    ("server: one database", "databases/sql/#ver#/nodes.sql", {"did": DB}),
    ("database properties", "databases/sql/#ver#/properties.sql", {"did": DB}),
    ("server: roles", "roles/sql/#ver#/nodes.sql", {}),
    ("server: tablespaces", "tablespaces/sql/#ver#/nodes.sql", {}),
    ("database: schemas", "schemas/pg/#ver#/sql/nodes.sql", {"did": DB}),
    ("schema properties", "schemas/pg/#ver#/sql/properties.sql", {"scid": SCHEMA, "did": DB}),
    ("database: casts", "casts/sql/#ver#/nodes.sql", {}),
    ("database: event triggers", "event_triggers/sql/#ver#/nodes.sql", {}),
    ("database: extensions", "extensions/sql/properties.sql", {}),
    ("database: foreign data wrappers", "foreign_data_wrappers/sql/#ver#/properties.sql", {}),
    ("database: languages", "languages/sql/#ver#/properties.sql", {}),
    ("database: publications", "publications/pg/#ver#/sql/nodes.sql", {}),
    ("schema: collations", "collations/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: domains", "domains/sql/#ver#/node.sql", {"scid": SCHEMA}),
    ("schema: fts configurations", "fts_configurations/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: fts dictionaries", "fts_dictionaries/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: fts parsers", "fts_parsers/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: fts templates", "fts_templates/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: functions", "functions/pg/sql/#ver#/node.sql", {"scid": SCHEMA}),
    ("schema: operators", "operators/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: sequences", "sequences/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: tables", "tables/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: types", "types/pg/sql/#ver#/nodes.sql", {"scid": SCHEMA}),
    ("schema: views", "views/pg/#ver#/sql/nodes.sql", {"scid": SCHEMA}),
    ("schema: materialized views", "mviews/pg/#ver#/sql/nodes.sql", {"scid": SCHEMA}),
    ("schema: foreign tables", "foreign_tables/sql/#ver#/node.sql", {"scid": SCHEMA}),
    ("table node", "tables/sql/#ver#/nodes.sql", {"scid": SCHEMA, "tid": TABLE}),
    ("table: count of tables", "tables/sql/#ver#/count.sql", {"scid": SCHEMA}),
    ("table: row count", "tables/sql/#ver#/get_table_row_count.sql",
     {"data": {"schema": "tpch", "name": "nation"}}),
    ("table: statistics of the schema's tables", "tables/sql/#ver#/coll_table_stats.sql", {"scid": SCHEMA}),
    ("table: privileges", "tables/sql/#ver#/acl.sql", {"scid": SCHEMA, "tid": TABLE}),
    ("table: columns", "columns/sql/#ver#/nodes.sql", {"tid": TABLE}),
    ("table: column properties", "columns/sql/#ver#/properties.sql", {"tid": TABLE}),
    ("table: indexes", "indexes/sql/#ver#/nodes.sql", {"tid": TABLE}),
    ("table: primary key", "index_constraint/sql/#ver#/nodes.sql", {"tid": TABLE, "constraint_type": "p"}),
    ("table: unique constraints", "index_constraint/sql/#ver#/nodes.sql", {"tid": TABLE, "constraint_type": "u"}),
    ("table: foreign keys", "foreign_key/sql/#ver#/nodes.sql", {"tid": TABLE}),
    ("table: check constraints", "check_constraint/sql/#ver#/nodes.sql", {"tid": TABLE}),
    ("table: exclusion constraints", "exclusion_constraint/sql/#ver#/nodes.sql", {"tid": TABLE}),
    ("table: triggers", "triggers/sql/pg/#ver#/nodes.sql", {"tid": TABLE}),
    ("table: rules", "rules/sql/nodes.sql", {"tid": TABLE}),
    ("table: policies", "row_security_policies/sql/#ver#/nodes.sql", {"tid": TABLE}),
    ("table properties", "tables/sql/#ver#/properties.sql", {"did": DB, "scid": SCHEMA, "tid": TABLE}),
    ("index properties", "indexes/sql/#ver#/properties.sql", {"did": DB, "tid": TABLE}),
    ("foreign key properties", "foreign_key/sql/#ver#/properties.sql", {"tid": TABLE}),
    ("primary key properties", "index_constraint/sql/#ver#/properties.sql",
     {"did": DB, "tid": TABLE, "constraint_type": "p"}),
    ("dashboard: server activity", "dashboard/sql/#ver#/activity.sql", {}),
    ("dashboard: locks", "dashboard/sql/#ver#/locks.sql", {}),
    ("dashboard: prepared transactions", "dashboard/sql/#ver#/prepared.sql", {}),
    ("dashboard: configuration", "dashboard/sql/#ver#/config.sql", {}),
    ("dashboard: statistics", "dashboard/sql/#ver#/dashboard_stats.sql",
     {"chart_names": ["session_stats", "tps_stats", "ti_stats", "to_stats", "bio_stats"]}),
    ("dashboard: database activity", "dashboard/sql/#ver#/activity.sql", {"did": DB}),
    # View/Edit Data on the nation table: its name, key, columns, first rows, a filter.
    ("view data: object name", "sqleditor/sql/#ver#/objectname.sql", {"obj_id": TABLE}),
    ("view data: primary key", "sqleditor/sql/#ver#/primary_keys.sql", {"obj_id": TABLE}),
    ("view data: columns", "sqleditor/sql/#ver#/get_columns.sql", {"obj_id": TABLE}),
    ("view data: first rows", "sqleditor/sql/#ver#/objectquery.sql",
     {"nsp_name": "tpch", "object_name": "nation", "limit": 1000,
      "data_sorting": [{"name": "n_nationkey", "order": "asc"}]}),
    ("view data: filtered rows", "sqleditor/sql/#ver#/objectquery.sql",
     {"nsp_name": "tpch", "object_name": "nation", "limit": 100, "sql_filter": "n_regionkey = 1"}),
    ("view data: validate a filter", "sqleditor/sql/#ver#/validate.sql",
     {"nsp_name": "tpch", "object_name": "nation", "row_filter": "n_regionkey = 1"}),
    ("table: partitions", "partitions/sql/pg/#ver#/nodes.sql", {"did": DB, "scid": SCHEMA, "tid": TABLE}),
]


def main(web, commit):
    roots = sorted({root for root, _, _ in os.walk(web) if root.endswith("/templates")})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(roots), extensions=["jinja2.ext.do"])
    env.filters["qtLiteral"] = qt_literal
    # `conn|qtIdent(name, …)` and `name|qtIdent(conn)`: the connection is None here.
    env.filters["qtIdent"] = lambda value, *more: qt_ident(None, *[v for v in (value, *more) if v is not None])
    env.globals["qtIdent"] = qt_ident
    env.globals["qtLiteral"] = qt_literal
    env.globals["_"] = lambda text: text  # gettext: column labels stay in English
    statements = []
    for what, template, values in RENDER:
        try:
            path = pick(web, template)
        except FileNotFoundError:
            print("no template:", template, file=sys.stderr)
            continue
        sql = env.get_template(path).render(**{**COMMON, **values})
        sql = "\n".join(line.rstrip() for line in sql.splitlines() if line.strip())
        statements.append({"id": f"pgadmin {what}", "source": f"web/pgadmin/browser/**/templates/{path}",
                           "sql": sql + "\n"})

    def block(dumper, text):
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)

    yaml.SafeDumper.add_representer(str, block)
    with open(os.path.join(HERE, "pgadmin.yaml"), "w") as f:
        f.write(f"# pgAdmin 4's object browser (commit {commit}), its SQL templates rendered for a PostgreSQL 15\n"
                "# server by render_pgadmin.py: a server, its database, the tpch schema and table nation.\n")
        yaml.safe_dump({"tool": "pgadmin", "version": f"9.x ({commit})", "statements": statements}, f,
                       sort_keys=False, allow_unicode=True, width=120)
    print(len(statements), "statements")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

#!/usr/bin/env python3
"""Regenerate planner/src/pg_catalog/data/*.tsv from a real PostgreSQL server.

sluice's pg_catalog and information_schema have the exact column names and types of
PostgreSQL's, and the built-in rows (types, functions, ranges, access methods, …) are
PostgreSQL's own. This script reads both from a running server and writes one TSV per table:

    line 1:  column:type <TAB> column:type …      (types: oid bool int2 int4 int8 float4
                                                    text name char timestamptz, `[]` for arrays;
                                                    `@oid` the type reported, `!` NOT NULL)
    line 2+: rows in PostgreSQL COPY text format   (\\N is NULL; arrays as {a,b,"c d"})

Tables listed in STATIC keep their rows (the server's built-in objects only: oid < 16384);
the others are written with no rows — sluice fills them from its own catalog at run time.

    python3 planner/src/pg_catalog/extract.py "host=127.0.0.1 user=postgres dbname=test"
"""
import os
import re
import sys

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")

# table -> WHERE clause for the rows we keep (None: schema only).
STATIC = {
    "pg_catalog.pg_type": "oid < 16384",
    "pg_catalog.pg_proc": "oid < 16384",
    "pg_catalog.pg_range": "rngtypid < 16384",
    "pg_catalog.pg_am": "oid < 16384",
    "pg_catalog.pg_collation": "collname in ('default', 'C', 'POSIX', 'ucs_basic')",
    "pg_catalog.pg_tablespace": "oid < 16384",
    "pg_catalog.pg_extension": "oid < 16384",
    "pg_catalog.pg_language": "oid < 16384",
    "pg_catalog.pg_cast": "oid < 16384",
    "pg_catalog.pg_operator": "oid < 16384",
    "pg_catalog.pg_conversion": "oid < 16384",
    "pg_catalog.pg_description": "objoid < 16384",
    "pg_catalog.pg_ts_config": "oid < 16384",
    "pg_catalog.pg_ts_dict": "oid < 16384",
    "pg_catalog.pg_ts_parser": "oid < 16384",
    "pg_catalog.pg_ts_template": "oid < 16384",
    "pg_catalog.pg_opfamily": "oid < 16384",
    "pg_catalog.pg_opclass": "oid < 16384",
    # System catalogs clients list (PgJDBC's getTables of SYSTEM TABLEs) with their
    # built-in rows.
    "pg_catalog.pg_aggregate": "aggfnoid < 16384",
    "pg_catalog.pg_amop": "oid < 16384",
    "pg_catalog.pg_amproc": "oid < 16384",
    "pg_catalog.pg_init_privs": "objoid < 16384",
    "pg_catalog.pg_ts_config_map": "mapcfg < 16384",
    # The predefined roles' memberships (pg_monitor's).
    "pg_catalog.pg_auth_members": "roleid < 16384 AND member < 16384",
    # The extensions sluice has (pg_extension): PL/pgSQL, which every PostgreSQL has.
    "pg_catalog.pg_available_extensions": "name = 'plpgsql'",
    "pg_catalog.pg_timezone_names": "true",
}
SCHEMA_ONLY = [
    "pg_catalog.pg_namespace", "pg_catalog.pg_class", "pg_catalog.pg_attribute",
    "pg_catalog.pg_database", "pg_catalog.pg_roles", "pg_catalog.pg_user",
    "pg_catalog.pg_settings", "pg_catalog.pg_cursors", "pg_catalog.pg_index",
    "pg_catalog.pg_constraint", "pg_catalog.pg_attrdef", "pg_catalog.pg_inherits",
    "pg_catalog.pg_sequence", "pg_catalog.pg_enum", "pg_catalog.pg_policy",
    "pg_catalog.pg_statistic_ext", "pg_catalog.pg_publication", "pg_catalog.pg_publication_rel",
    "pg_catalog.pg_publication_namespace", "pg_catalog.pg_trigger", "pg_catalog.pg_rewrite",
    "pg_catalog.pg_depend", "pg_catalog.pg_foreign_table", "pg_catalog.pg_partitioned_table",
    "pg_catalog.pg_event_trigger", "pg_catalog.pg_shdescription", "pg_catalog.pg_tables",
    "pg_catalog.pg_views", "pg_catalog.pg_matviews",
    "pg_catalog.pg_stat_user_tables", "pg_catalog.pg_foreign_server",
    "pg_catalog.pg_foreign_data_wrapper", "pg_catalog.pg_user_mapping",
    "pg_catalog.pg_seclabel", "pg_catalog.pg_seclabels", "pg_catalog.pg_db_role_setting",
    "pg_catalog.pg_subscription", "pg_catalog.pg_user_mappings", "pg_catalog.pg_prepared_xacts",
    "information_schema.schemata", "information_schema.tables", "information_schema.columns",
    "information_schema.views", "information_schema.table_constraints",
    "information_schema.key_column_usage", "information_schema.referential_constraints",
    "information_schema.constraint_column_usage", "pg_catalog.pg_policies",
    "pg_catalog.pg_stat_activity", "pg_catalog.pg_locks", "pg_catalog.pg_default_acl",
    "pg_catalog.pg_stat_all_tables", "pg_catalog.pg_authid", "pg_catalog.pg_replication_slots",
    "pg_catalog.pg_stat_gssapi", "information_schema.character_sets",
    # System catalogs of what sluice has none of (large objects, replication origins,
    # shared dependencies, security labels, statistics, subscriptions, transforms,
    # parameter privileges): listed, empty.
    "pg_catalog.pg_largeobject", "pg_catalog.pg_largeobject_metadata",
    "pg_catalog.pg_parameter_acl", "pg_catalog.pg_replication_origin",
    "pg_catalog.pg_shdepend", "pg_catalog.pg_shseclabel", "pg_catalog.pg_statistic",
    "pg_catalog.pg_statistic_ext_data", "pg_catalog.pg_subscription_rel",
    "pg_catalog.pg_transform",
]

# PostgreSQL type (after resolving domains) -> the TSV type name.
TYPES = {
    "oid": "oid", "regproc": "oid", "regtype": "oid", "xid": "oid", "cid": "oid",
    "boolean": "bool", "smallint": "int2", "integer": "int4", "bigint": "int8",
    "real": "float4", "double precision": "float8", "text": "text", "name": "name",
    '"char"': "char", "character varying": "text", "character": "text",
    "pg_node_tree": "text", "anyarray": "text", "aclitem": "text", "pg_lsn": "text",
    "timestamp with time zone": "timestamptz", "interval": "text", "inet": "text",
    "oidvector": "oid[]", "int2vector": "int2[]", "oid[]": "oid[]", "smallint[]": "int2[]",
    "text[]": "text[]", '"char"[]': "char[]", "aclitem[]": "text[]", "name[]": "name[]",
    "real[]": "text[]", "anyarray[]": "text[]", "bytea": "text",
    "double precision[]": "text[]", "regproc[]": "oid[]", "regtype[]": "oid[]", "char[]": "text",
    "pg_ndistinct": "text", "pg_dependencies": "text", "pg_mcv_list": "text",
    "pg_statistic[]": "text",
}


# Types stored as another one with the same text, reported with their own OID
# (`column:stored@oid` in the header).
REPORTED = {"aclitem[]": 1034, "inet": 869, "character varying": 1043, "anyarray": 2277,
            "bytea": 17, "regproc": 24, "regtype": 2206, "pg_node_tree": 194, "xid": 28, "name[]": 1003,
            "int2vector": 22, "oidvector": 30, "pg_ndistinct": 3361, "pg_dependencies": 3402,
            "pg_mcv_list": 5017, "pg_statistic[]": 10028}


def column_types(cur, table):
    # Domains (information_schema.sql_identifier, …) are described by their base type.
    cur.execute(
        """
        SELECT a.attname,
               format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
                           NULL),
               a.attnotnull
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (table,),
    )
    cols = []
    for name, pgtype, not_null in cur.fetchall():
        if pgtype not in TYPES:
            sys.exit(f"{table}.{name}: no mapping for type {pgtype}")
        stored = TYPES[pgtype]
        spec = f"{stored}@{REPORTED[pgtype]}" if pgtype in REPORTED else stored
        cols.append((name, spec + ("!" if not_null else "")))
    return cols


def write_table(cur, table):
    cols = column_types(cur, table)
    header = "\t".join(f"{n}:{t}" for n, t in cols)
    rows = b""
    where = STATIC.get(table)
    if where is not None:
        # Text output of every column; arrays keep PostgreSQL's literal syntax and
        # vectors (oidvector, int2vector) become arrays.
        exprs = []
        for n, t in cols:
            q = f'"{n}"'
            t = t.split("@")[0].rstrip("!")
            exprs.append(f"({q}::oid[])::text" if t == "oid[]" else
                         f"({q}::int2[])::text" if t == "int2[]" else
                         f"({q}::oid)::text" if t == "oid" else f"{q}::text")
        sql = f"COPY (SELECT {', '.join(exprs)} FROM {table} WHERE {where} ORDER BY 1) TO STDOUT"
        with cur.copy(sql) as copy:
            rows = b"".join(bytes(chunk) for chunk in copy)
    name = table.replace("pg_catalog.", "")
    with open(os.path.join(OUT, f"{name}.tsv"), "wb") as f:
        f.write(header.encode() + b"\n" + rows)


def write_relations(cur):
    # The real OIDs of the catalog relations themselves (pg_class rows for pg_type, …),
    # so that pg_type's row types and `'pg_class'::regclass` agree with PostgreSQL.
    names = ", ".join(f"'{t}'::regclass" for t in list(STATIC) + SCHEMA_ONLY)
    with cur.copy(
        f"""COPY (SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltype
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid IN ({names}) ORDER BY 1) TO STDOUT"""
    ) as copy:
        rows = b"".join(bytes(chunk) for chunk in copy)
    with open(os.path.join(OUT, "relations.tsv"), "wb") as f:
        f.write(b"oid:oid\tnspname:name\trelname:name\trelkind:char\treltype:oid\n" + rows)


def main():
    """extract.py DSN [table …]: every table (or only those named) and the relations."""
    dsn = sys.argv[1] if len(sys.argv) > 1 else "host=127.0.0.1 user=postgres dbname=test"
    only = sys.argv[2:]
    os.makedirs(OUT, exist_ok=True)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        for table in list(STATIC) + SCHEMA_ONLY:
            if not only or table in only:
                write_table(cur, table)
        write_relations(cur)
        if only:
            return
        # pg_get_keywords(): the server's SQL keywords (PgJDBC's getSQLKeywords reads them).
        with cur.copy("COPY (SELECT word, catcode, barelabel, catdesc, baredesc "
                      "FROM pg_get_keywords() ORDER BY 1) TO STDOUT") as copy:
            rows = b"".join(bytes(chunk) for chunk in copy)
        with open(os.path.join(OUT, "pg_get_keywords.tsv"), "wb") as f:
            f.write(b"word:text\tcatcode:char\tbarelabel:bool\tcatdesc:text\tbaredesc:text\n" + rows)
        # What pg_settings says of the settings sluice has (planner/src/session.rs DEFAULTS).
        with open(os.path.join(HERE, "..", "session.rs")) as f:
            session_rs = f.read()
        block = session_rs[session_rs.index("const DEFAULTS"):]
        block = block[:block.index("];")]
        known = ", ".join(f"'{n}'" for n in re.findall(r'\("([a-z_]+)"', block))
        with cur.copy(f"COPY (SELECT lower(name), category, short_desc, extra_desc, context, "
                      f"vartype, unit, min_val, max_val, enumvals::text FROM pg_settings "
                      f"WHERE lower(name) IN ({known}) ORDER BY 1) TO STDOUT") as copy:
            rows = b"".join(bytes(chunk) for chunk in copy)
        with open(os.path.join(OUT, "settings_info.tsv"), "wb") as f:
            f.write(b"name:text\tcategory:text\tshort_desc:text\textra_desc:text\tcontext:text\t"
                    b"vartype:text\tunit:text\tmin_val:text\tmax_val:text\tenumvals:text[]\n" + rows)
        with open(os.path.join(OUT, "VERSION"), "w") as f:
            f.write(f"extracted from PostgreSQL {version}\n")


if __name__ == "__main__":
    main()

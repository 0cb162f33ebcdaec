//! The PostgreSQL rewrites (`planner::compat`), on parsed statements.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use planner::compat::*;

/// The statement after the expression rewrites (output names and types aside: see
/// `output_columns_keep_their_postgresql_names_and_types`).
fn rewritten(sql: &str) -> String {
    rewritten_with(sql, rewrite_as_written)
}

fn rewritten_with(sql: &str, rewrite: fn(&mut ast::Statement, &CatalogNames)) -> String {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
    let mut catalog = CatalogNames::default();
    for (table, columns) in [
        ("pg_type", &["oid", "typname", "typcollation"][..]),
        ("pg_class", &["oid", "relname", "reltype"]),
        ("pg_collation", &["oid", "collname"]),
        ("pg_attribute", &["attrelid", "attname", "attcollation"]),
        ("pg_roles", &["oid", "rolname"]),
        ("pg_policy", &["polroles"]),
    ] {
        catalog.pg_catalog.insert(table.to_string());
        catalog.columns.insert(
            table.into(),
            columns.iter().map(|c| c.to_string()).collect(),
        );
    }
    rewrite(&mut statements[0], &catalog);
    statements[0].to_string()
}

#[test]
fn output_columns_keep_their_postgresql_names_and_types() {
    let full = |sql: &str| rewritten_with(sql, planner::compat::rewrite);
    // A constant that fits is integer; the name stays PostgreSQL's.
    assert_eq!(
        full("SELECT 1, -2 AS m, 3000000000"),
        format!("SELECT CAST(1 AS INTEGER) AS \"{NAME_ALIAS}0_?column?\", CAST(-2 AS INTEGER) AS m, 3000000000")
    );
    // A rewritten expression is named as written (the subquery after its column).
    let sql = full(
        "SELECT a.attname, (SELECT c.collname FROM pg_collation c WHERE c.oid = a.attcollation \
         AND c.collname <> 'x') FROM pg_attribute a",
    );
    assert!(
        sql.contains(&format!("AS \"{NAME_ALIAS}1_collname\"")),
        "{sql}"
    );
    // Untouched expressions keep no alias.
    assert_eq!(
        full("SELECT a.attname FROM t a"),
        "SELECT a.attname FROM t a"
    );
}

#[test]
fn catalog_wildcards_expand_so_repeats_can_be_aliased() {
    let sql = rewritten("SELECT n.oid, n.* FROM pg_class n");
    let expected =
        format!("SELECT n.oid, n.oid AS \"{DUPLICATE_ALIAS}1\", n.relname, n.reltype FROM");
    assert!(sql.starts_with(&expected), "{sql}");
    // Data tables, lone wildcards and wildcards with options are left alone.
    assert_eq!(
        rewritten("SELECT t.id, t.* FROM trips t"),
        "SELECT t.id, t.* FROM trips t"
    );
    assert_eq!(
        rewritten("SELECT n.* FROM pg_class n"),
        "SELECT n.* FROM pg_catalog.pg_class n"
    );
}

#[test]
fn array_literals_are_read_as_postgresql_reads_them() {
    assert_eq!(
        rewritten("SELECT 1 WHERE 'r' = ANY('{r,p,f}'::text[])"),
        "SELECT 1 WHERE 'r' = ANY(ARRAY['r', 'p', 'f']::TEXT[])"
    );
    assert_eq!(
        rewritten("SELECT '{}'::int2[], CAST('{1, 2 }' AS int2[])"),
        "SELECT ARRAY[]::INT2[], CAST(ARRAY['1', '2'] AS INT2[])"
    );
    let items = |t: &str| pg_array_items(t);
    assert_eq!(
        items(r#"{a,"b,c", NULL ,"NULL","q\"x",d\,e}"#),
        Some(vec![
            Some("a".into()),
            Some("b,c".into()),
            None,
            Some("NULL".into()),
            Some("q\"x".into()),
            Some("d,e".into()),
        ])
    );
    // Not one-dimensional or not well-formed: left to the cast.
    for text in [
        "{{1,2},{3,4}}",
        "[1:2]={1,2}",
        "{a,,b}",
        "{\"a}",
        "{a\"b}",
        "a,b",
    ] {
        assert_eq!(items(text), None, "{text}");
    }
}

#[test]
fn catalog_tables_are_qualified_unless_a_cte_shadows_them() {
    assert_eq!(
        rewritten("SELECT oid FROM pg_type"),
        "SELECT oid FROM pg_catalog.pg_type"
    );
    assert_eq!(
        rewritten("WITH pg_class AS (SELECT 1) SELECT * FROM pg_class, pg_type"),
        "WITH pg_class AS (SELECT CAST(1 AS INTEGER)) SELECT * FROM pg_class, pg_catalog.pg_type"
    );
    assert_eq!(rewritten("SELECT * FROM trips"), "SELECT * FROM trips");
}

#[test]
fn reg_casts_become_lookups() {
    assert_eq!(
        rewritten("SELECT 'pg_class'::regclass, oid::regtype::text FROM pg_type"),
        "SELECT sluice_regclass_in('pg_class'), sluice_regtype_out(sluice_regtype_in(oid)) FROM pg_catalog.pg_type"
    );
    assert_eq!(
        rewritten("SELECT x::pg_catalog.text, y::pg_catalog.regtype::pg_catalog.text"),
        "SELECT x::TEXT, sluice_regtype_out(sluice_regtype_in(y))"
    );
    assert_eq!(
        rewritten("SELECT CAST($2 AS REGCLASS)"),
        "SELECT sluice_regclass_in($2)"
    );
}

#[test]
fn catalog_scalar_subqueries_aggregate() {
    assert_eq!(
        rewritten("SELECT (SELECT t.typname FROM pg_type t WHERE t.oid = c.reltype ORDER BY 1 LIMIT 1) FROM pg_class c"),
        "SELECT (SELECT first_value(t.typname ORDER BY 1) FROM pg_catalog.pg_type t WHERE t.oid = c.reltype) FROM pg_catalog.pg_class c"
    );
    // Over data tables a second row stays an error: no rewrite.
    assert_eq!(
        rewritten("SELECT (SELECT x FROM trips WHERE id = 1)"),
        "SELECT (SELECT x FROM trips WHERE id = 1)"
    );
}

#[test]
fn other_correlations_run_per_outer_row() {
    use planner::pg_catalog::subquery::seal;
    let inner = "SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t \
                 WHERE c.oid = $1 AND $1 <> t.typcollation";
    assert_eq!(
        rewritten(
            "SELECT (SELECT c.collname FROM pg_collation c, pg_type t \
             WHERE c.oid = a.attcollation AND a.attcollation <> t.typcollation) \
             FROM pg_attribute a"
        ),
        format!(
            "SELECT sluice_subquery('{inner}', '{}', a.attcollation) FROM pg_catalog.pg_attribute a",
            seal(inner)
        )
    );
    let inner = "SELECT array_agg(rolname ORDER BY 1) FROM pg_catalog.pg_roles WHERE oid = ANY($1)";
    assert_eq!(
        rewritten("SELECT array(SELECT rolname FROM pg_roles WHERE oid = ANY(p.polroles) ORDER BY 1) FROM pg_policy p"),
        format!(
            "SELECT coalesce(sluice_subquery('{inner}', '{}', p.polroles), make_array()) \
             FROM pg_catalog.pg_policy p",
            seal(inner)
        )
    );
    // Uncorrelated: left to DataFusion.
    assert_eq!(
        rewritten("SELECT (SELECT max(oid) FROM pg_type)"),
        "SELECT (SELECT max(oid) FROM pg_catalog.pg_type)"
    );
}

#[test]
fn like_escape_characters_become_backslashes() {
    assert_eq!(
        rewritten("SELECT 1 WHERE 'a_b' NOT LIKE 'a/_' || '%' ESCAPE '/'"),
        "SELECT 1 WHERE 'a_b' NOT LIKE replace(replace('a/_' || '%', '\\', '\\\\'), '/', '\\')"
    );
}

#[test]
fn operators_collations_and_qualified_functions() {
    assert_eq!(
        rewritten(
            "SELECT pg_catalog.format_type(1, 2) FROM pg_class c \
             WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"
        ),
        "SELECT format_type(CAST(1 AS INTEGER), CAST(2 AS INTEGER)) FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$'"
    );
    assert_eq!(
        rewritten("SELECT * FROM pg_catalog.generate_series(1, 32) pos(n)"),
        "SELECT * FROM generate_series(1, 32) pos (n)"
    );
    assert_eq!(
        rewritten("SELECT s FROM generate_series(1, 2) s"),
        "SELECT s FROM generate_series(1, 2) s (s)"
    );
}

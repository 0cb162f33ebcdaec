//! What one statement may ask: nesting, length and size limits checked before and after
//! parsing (planner::limits).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use planner::limits::{nested_calls, MAX_NESTED_CALLS, MAX_NESTED_SPECIAL_FORMS};
use planner::{ErrorKind, Limits, QueryError};

fn check(limits: Limits, sql: &str) -> Result<(), QueryError> {
    limits.check_text(sql)?;
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
    limits.check_statement(&statements)
}

#[test]
fn nested_special_forms_are_refused_before_parsing() {
    let limits = Limits::default();
    let nested = |form: &str, n: usize| format!("SELECT {}1{}", form.repeat(n), ")".repeat(n));
    // 100 bytes that took minutes to parse: refused at once.
    let started = std::time::Instant::now();
    let err = limits.check_text(&nested("cast(", 16)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooComplex);
    assert!(err.message.contains("16 nested"), "{}", err.message);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(limits
        .check_text(&nested("position(", MAX_NESTED_SPECIAL_FORMS + 1))
        .is_err());
    // Well-formed nesting up to the limit, other functions and strings are fine.
    let casts = format!(
        "SELECT {}1{}",
        "CAST(".repeat(MAX_NESTED_SPECIAL_FORMS),
        " AS int)".repeat(MAX_NESTED_SPECIAL_FORMS)
    );
    assert!(check(limits, &casts).is_ok());
    assert!(limits
        .check_text(&nested("coalesce(", MAX_NESTED_CALLS))
        .is_ok());
    assert!(limits
        .check_text(&format!("SELECT '{}'", "cast(".repeat(40)))
        .is_ok());
    assert_eq!(
        nested_calls("SELECT cast((1) AS int), cast(2 AS int)"),
        (1, 1)
    );
    // Any function: 100 bytes that took 40 s to parse in a debug build, refused.
    let err = limits.check_text(&nested("abs(", 20)).unwrap_err();
    assert!(err.message.contains("nested 20 deep"), "{}", err.message);
    assert!(limits.check_text(&nested("abs(", MAX_NESTED_CALLS)).is_ok());
    // Grouping is not calling: a deep filter of ANDs; subqueries nest like calls.
    let filter = format!(
        "SELECT 1 WHERE {}a = 1{}",
        "a = 1 AND (".repeat(40),
        ")".repeat(40)
    );
    assert!(limits.check_text(&filter).is_ok());
    let subqueries = format!(
        "SELECT 1 WHERE x IN {}1{}",
        "(SELECT y FROM t WHERE y IN ".repeat(20),
        ")".repeat(20)
    );
    assert_eq!(nested_calls(&subqueries), (20, 0));
    let scalar = format!("SELECT {}1{}", "(SELECT ".repeat(20), ")".repeat(20));
    assert!(limits.check_text(&scalar).is_err());
    assert_eq!(
        nested_calls("SELECT ((1)), (SELECT 1), x IN (1, 2)"),
        (1, 0)
    );
}

#[test]
fn operator_chains_count_as_depth() {
    let limits = Limits {
        max_expression_depth: 100,
        ..Limits::default()
    };
    let sql = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
    check(limits, &sql(50)).expect("50 terms nest 50 deep");
    let e = check(limits, &sql(200)).expect_err("200 terms nest 200 deep");
    assert_eq!(e.kind, ErrorKind::TooComplex);
    assert!(e.message.contains("too complex"), "{}", e.message);
    // An IN list is wide, not deep.
    let list = (0..500)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    check(limits, &format!("SELECT 1 WHERE 3 IN ({list})")).expect("wide is fine");
}

#[test]
fn size_and_node_count() {
    let short = Limits {
        max_statement_bytes: 100,
        ..Limits::default()
    };
    let e = check(short, &format!("SELECT '{}'", "x".repeat(200))).expect_err("long");
    assert!(e.message.contains("too long"), "{}", e.message);
    let few = Limits {
        max_expression_nodes: 50,
        ..Limits::default()
    };
    let columns = (0..60).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    check(few, "SELECT 1, 2, 3").expect("few nodes");
    let e = check(few, &format!("SELECT {columns}")).expect_err("many");
    assert_eq!(e.kind, ErrorKind::TooComplex);
    assert!(e.message.contains("max_expression_nodes"), "{}", e.message);
}

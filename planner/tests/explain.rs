//! EXPLAIN's PostgreSQL options list (planner::explain): flags, formats, refusals.

use datafusion::common::format::{ExplainFormat, ExplainStatementOptions};
use datafusion::sql::parser::Statement;
use planner::ddl::Managed;
use planner::{ErrorKind, Limits, Planner, QueryError};

fn parsed(sql: &str) -> Result<Vec<Statement>, QueryError> {
    static PLANNER: std::sync::OnceLock<Planner> = std::sync::OnceLock::new();
    PLANNER
        .get_or_init(|| {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime
                .block_on(Planner::new(
                    &[],
                    &Managed::default(),
                    1,
                    None,
                    planner::storage::Registry::new(Default::default()),
                    Limits::default(),
                ))
                .expect("planner")
        })
        .parse(sql)
}

fn options_of(sql: &str) -> ExplainStatementOptions {
    match parsed(sql).unwrap().pop() {
        Some(Statement::Explain(e)) => e.options,
        other => panic!("not an explain: {other:?}"),
    }
}

#[test]
fn postgresql_options_set_flags_and_pick_the_format() {
    let o =
        options_of("EXPLAIN (FORMAT JSON, ANALYZE false, VERBOSE, COSTS off, BUFFERS 0) SELECT 1");
    assert!(!o.analyze);
    assert_eq!(o.format, Some(ExplainFormat::PostgresJSON));
    let o = options_of("EXPLAIN (ANALYZE on, VERBOSE true, TIMING false, SUMMARY true) SELECT 1");
    assert!(o.analyze && o.verbose);
    assert_eq!(o.format, None);
    assert_eq!(options_of("EXPLAIN (FORMAT TEXT) SELECT 1").format, None);
    assert_eq!(
        options_of("EXPLAIN (FORMAT tree) SELECT 1").format,
        Some(ExplainFormat::Tree)
    );
    assert_eq!(options_of("EXPLAIN SELECT 1").format, None);
    // Several statements, and a parenthesized query that is no options list.
    assert_eq!(
        parsed("EXPLAIN (COSTS) SELECT 1; SELECT 2;; EXPLAIN (SELECT 3)")
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn unknown_options_and_formats_are_refused_clearly() {
    let e = parsed("EXPLAIN (FORMAT XML) SELECT 1").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotSupported);
    let e = parsed("EXPLAIN (COLOR on) SELECT 1").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(e.message.contains("\"color\""), "{}", e.message);
    let e = parsed("EXPLAIN (COSTS maybe) SELECT 1").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidValue);
    let e = parsed("EXPLAIN (FORMAT JSON) SELECT 1 SELECT 2").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
}

//! A session's planning state is kept between its statements, and made again whenever
//! what it was made from changes: search_path, open cursors, the grants in force.

use std::sync::Arc;

use datafusion::arrow::util::display::array_value_to_string;
use futures::TryStreamExt;
use planner::catalog::{TableDef, TableFormat};
use planner::ddl::Managed;
use planner::session::CursorInfo;
use planner::{Access, Limits, Planner, SessionInfo};

fn table(name: &str, dir: &std::path::Path) -> TableDef {
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, "a\n1\n").expect("csv");
    TableDef {
        name: name.into(),
        location: path.display().to_string(),
        format: TableFormat::Csv,
        has_header: Some(true),
        delimiter: None,
        primary_key: Vec::new(),
        primary_key_name: None,
        foreign_keys: Vec::new(),
    }
}

/// The first value of a query's answer as text, and the state it was optimized in.
async fn run(planner: &Planner, sql: &str, session: &SessionInfo) -> (String, usize) {
    let statement = planner.parse(sql).expect("parse").remove(0);
    let logical = planner
        .logical_plan(&statement, session)
        .await
        .expect("plan");
    let optimized = planner
        .optimize(logical, Vec::new(), session)
        .expect("optimize");
    let planned = planner.physical(&optimized).await.expect("physical");
    let batches: Vec<_> = planner
        .run_locally(&planned, &optimized)
        .expect("run")
        .try_collect()
        .await
        .expect("collect");
    let value = array_value_to_string(batches[0].column(0), 0).expect("value");
    (value, optimized.state() as *const _ as usize)
}

#[tokio::test]
async fn kept_between_statements_and_made_again_when_the_session_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = [table("public.t", dir.path()), table("other.u", dir.path())];
    let planner = Planner::new(
        &tables,
        &Managed::default(),
        1,
        None,
        planner::storage::Registry::new(Default::default()),
        Limits::default(),
    )
    .await
    .expect("planner");
    let session = SessionInfo {
        protocol: "pg",
        ..SessionInfo::default()
    };

    let (schema, first) = run(&planner, "SELECT current_schema()", &session).await;
    assert_eq!(schema, "public");
    let (_, again) = run(&planner, "SELECT 1", &session).await;
    assert_eq!(first, again, "the state is kept between statements");

    session.settings.set("search_path", "other".into());
    let (schema, changed) = run(&planner, "SELECT current_schema()", &session).await;
    assert_eq!(
        schema, "other",
        "search_path changed: the state is made again"
    );
    assert_ne!(first, changed);
    let (value, _) = run(&planner, "SELECT count(*) FROM u", &session).await;
    assert_eq!(
        value, "1",
        "unqualified names resolve in the new search_path"
    );

    let with_cursor = SessionInfo {
        cursors: vec![CursorInfo {
            name: "c".into(),
            statement: "DECLARE c CURSOR FOR SELECT 1".into(),
            holdable: false,
            binary: false,
            created: std::time::SystemTime::now(),
        }],
        ..session.clone()
    };
    let (cursors, _) = run(&planner, "SELECT count(*) FROM pg_cursors", &with_cursor).await;
    assert_eq!(cursors, "1", "a cursor opened: pg_cursors lists it");

    // A reader whose grants are replaced while its session lasts: the row type of a table
    // it may not read is hidden, and shown once a grant gives it the table.
    let (reltype, _) = run(
        &planner,
        "SELECT reltype FROM pg_class WHERE relname = 't'",
        &session,
    )
    .await;
    let grants = Arc::new(auth::Grants::default());
    let reader = SessionInfo {
        protocol: "pg",
        access: Access::granted(auth::Principal::service("reader", &[]), grants.clone()),
        ..SessionInfo::default()
    };
    let sql = format!("SELECT format_type({reltype}, NULL)");
    let (hidden, _) = run(&planner, &sql, &reader).await;
    assert_eq!(hidden, "???");
    let granted = auth::Grants::new(vec![auth::Grant {
        principals: vec!["token:reader".into()],
        select: vec!["sluice.public.t".into()],
        ..Default::default()
    }])
    .expect("grants");
    grants.replace(&granted);
    let (shown, _) = run(&planner, &sql, &reader).await;
    assert_eq!(shown, "t", "grants replaced: the state is made again");
}

#[test]
fn a_session_sets_a_bounded_number_of_settings() {
    let settings = planner::Settings::default();
    for i in 0..planner::session::MAX_SESSION_SETTINGS {
        settings
            .set_checked(&format!("spark.x{i}"), "1".into())
            .unwrap();
    }
    let e = settings
        .set_checked("spark.one_more", "1".into())
        .unwrap_err();
    assert_eq!(e.kind, planner::ErrorKind::ResourcesExhausted);
    // A setting already set may change; one reset makes room.
    settings.set_checked("spark.x0", "2".into()).unwrap();
    settings.reset("spark.x0");
    settings.set_checked("spark.one_more", "1".into()).unwrap();
}

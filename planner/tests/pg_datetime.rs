//! EXTRACT and date_part as PostgreSQL computes them (`planner::pg_catalog::datetime`).

use datafusion::prelude::SessionContext;
use planner::pg_catalog::datetime::*;

async fn one(sql: &str) -> String {
    let ctx = SessionContext::new();
    ctx.register_udf(date_part());
    ctx.register_udf(extract().as_ref().clone());
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
}

#[tokio::test]
async fn seconds_keep_their_fraction_and_types_are_postgresqls() {
    // Values from PostgreSQL 15.
    let ts = "TIMESTAMP '2020-01-01 10:00:01.5'";
    assert_eq!(
        one(&format!("SELECT date_part('second', {ts})")).await,
        "1.5"
    );
    assert_eq!(
        one(&format!("SELECT sluice_extract('SECOND', {ts})")).await,
        "1.500000"
    );
    assert_eq!(
        one(&format!("SELECT sluice_extract('milliseconds', {ts})")).await,
        "1500.000"
    );
    assert_eq!(
        one(&format!("SELECT sluice_extract('microseconds', {ts})")).await,
        "1500000"
    );
    assert_eq!(
        one(&format!("SELECT sluice_extract('epoch', {ts})")).await,
        "1577872801.500000"
    );
    assert_eq!(
        one("SELECT sluice_extract('epoch', DATE '2020-01-01')").await,
        "1577836800"
    );
    assert_eq!(
        one("SELECT sluice_extract('year', DATE '2020-01-05')").await,
        "2020"
    );
    assert_eq!(
        one("SELECT sluice_extract('dow', DATE '2020-01-05')").await,
        "0"
    );
    assert_eq!(
        one("SELECT sluice_extract('isodow', DATE '2020-01-05')").await,
        "7"
    );
    assert_eq!(
        one("SELECT sluice_extract('century', DATE '2000-06-01')").await,
        "20"
    );
    assert_eq!(
        one("SELECT sluice_extract('century', DATE '2001-01-01')").await,
        "21"
    );
    assert_eq!(
        one("SELECT sluice_extract('millennium', DATE '2001-01-01')").await,
        "3"
    );
    assert_eq!(
        one("SELECT sluice_extract('epoch', INTERVAL '1 day 2 hours')").await,
        "93600.000000"
    );
    assert_eq!(
        one("SELECT sluice_extract('epoch', INTERVAL '1 year 1 month')").await,
        "34149600.000000"
    );
    assert_eq!(
        one("SELECT sluice_extract('second', INTERVAL '3 minutes 4.25 seconds')").await,
        "4.250000"
    );
    assert_eq!(
        one("SELECT date_part('hour', TIME '13:14:15')").await,
        "13.0"
    );
}

#[test]
fn postgresql_templates_read_as_strftime() {
    assert_eq!(strftime("YYYY-MM-DD HH24:MI:SS"), "%Y-%m-%d %H:%M:%S");
    assert_eq!(
        strftime("FMMM/FMDD \"at\" HH12 AM %"),
        "%-m/%-d at %I %p %%"
    );
    assert_eq!(strftime("DD Mon YYYY, Day DDD"), "%d %b %Y, %A %j");
    assert_eq!(
        strftime("YYYY-MM-DD\"T\"HH24:MI:SS.MSOF"),
        "%Y-%m-%dT%H:%M:%S.%3f%:z"
    );
}

//! The one error table (`planner::error`): kinds, and how DataFusion's errors map to them.

use planner::error::*;

#[test]
fn kinds_round_trip_by_name() {
    for kind in ErrorKind::ALL {
        assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(ErrorKind::parse("nope"), None);
}

/// `ALL` holds every kind: a new variant fails to compile here until it is listed.
#[test]
fn all_lists_every_kind() {
    use ErrorKind::*;
    for (i, kind) in ErrorKind::ALL.into_iter().enumerate() {
        let position = match kind {
            Syntax => 0,
            UndefinedTable => 1,
            UndefinedColumn => 2,
            UndefinedFunction => 3,
            UndefinedObject => 4,
            DuplicateObject => 5,
            Ambiguous => 6,
            DatatypeMismatch => 7,
            DivisionByZero => 8,
            InvalidValue => 9,
            OutOfRange => 10,
            InvalidText => 11,
            InvalidParameter => 12,
            NotSupported => 13,
            ReadOnly => 14,
            ResourcesExhausted => 15,
            QueueFull => 16,
            Cancelled => 17,
            StatementTimeout => 18,
            WorkerLost => 19,
            Unavailable => 20,
            DataUnreadable => 21,
            PermissionDenied => 22,
            ProtocolViolation => 23,
            UndefinedCursor => 24,
            DuplicateCursor => 25,
            InvalidState => 26,
            NoTransaction => 27,
            TooComplex => 28,
            QuotaExceeded => 29,
            LimitExceeded => 30,
            InvalidRegex => 31,
            DatetimeOutOfRange => 32,
            Internal => 33,
        };
        assert_eq!(i, position, "{kind:?}");
    }
}

/// The DataFusion messages `classify_plan_message` and `classify` read, produced by
/// DataFusion itself: a reworded message after an upgrade fails here, not in a client.
#[tokio::test]
async fn datafusion_messages_classify_as_expected() {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;
    let ctx = SessionContext::new();
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    ctx.register_batch("t", batch).unwrap();
    let cases = [
        ("select * from nope", ErrorKind::UndefinedTable),
        ("select nope(a) from t", ErrorKind::UndefinedFunction),
        ("select b from t", ErrorKind::UndefinedColumn),
        ("select a + true from t", ErrorKind::DatatypeMismatch),
        (
            "select a from t where a = 'x' || true",
            ErrorKind::InvalidText,
        ),
        ("select a from t t1 join t t2 on true", ErrorKind::Ambiguous),
        ("select abs('x', 'y')", ErrorKind::DatatypeMismatch),
        ("selec 1", ErrorKind::Syntax),
        ("select 1 / 0", ErrorKind::DivisionByZero),
        ("select cast('abc' as int)", ErrorKind::InvalidText),
        ("select cast(300 as tinyint)", ErrorKind::InvalidValue),
        ("select to_date('abc', '%Y')", ErrorKind::InvalidText),
        (
            "select to_timestamp('2024-99', '%Y-%m')",
            ErrorKind::InvalidText,
        ),
        // Functions refusing a value: the statement's mistake, never internal.
        ("select substr('abc', 1, -1)", ErrorKind::InvalidValue),
        ("select chr(-1)", ErrorKind::InvalidValue),
        ("select split_part('a,b', ',', 0)", ErrorKind::InvalidValue),
        ("select decode('zz', 'hex')", ErrorKind::InvalidValue),
        ("select date_trunc('foo', now())", ErrorKind::InvalidValue),
        (
            "select make_date(2020, 13, 1)",
            ErrorKind::DatetimeOutOfRange,
        ),
        ("select 'x' ~ '['", ErrorKind::InvalidRegex),
        ("select regexp_match('a', '(')", ErrorKind::InvalidRegex),
        ("select repeat('x', 3000000000)", ErrorKind::LimitExceeded),
        ("select lpad('x', 3000000000)", ErrorKind::LimitExceeded),
        (
            "select array_repeat(1, 3000000000)",
            ErrorKind::LimitExceeded,
        ),
        (
            "select array_resize(make_array(1), 3000000000)",
            ErrorKind::LimitExceeded,
        ),
    ];
    let mut wrong = Vec::new();
    for (sql, want) in cases {
        let result = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result.expect_err(sql);
        let got = classify(&err);
        if got.kind != want {
            wrong.push(format!(
                "{sql}: {:?} ({}), expected {want:?}",
                got.kind, err
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "DataFusion's messages changed:\n{}",
        wrong.join("\n")
    );
}

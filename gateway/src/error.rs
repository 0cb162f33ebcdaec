//! The one error table: every [`ErrorKind`] and what each wire protocol calls it.
//!
//! Front-ends never invent codes: pg asks [`sqlstate`]; Flight SQL and HS2 will ask the
//! same table for their gRPC code and HS2 status.

use planner::ErrorKind;

/// The SQLSTATE a pg client sees for each kind of error.
pub fn sqlstate(kind: ErrorKind) -> &'static str {
    use ErrorKind::*;
    match kind {
        Syntax => "42601",
        UndefinedTable => "42P01",
        UndefinedColumn => "42703",
        UndefinedFunction => "42883",
        UndefinedObject => "42704",
        // duplicate_table (PostgreSQL also answers it for views).
        DuplicateObject => "42P07",
        Ambiguous => "42702",
        DatatypeMismatch => "42804",
        DivisionByZero => "22012",
        InvalidValue => "22023",
        // numeric_value_out_of_range: `integer out of range`.
        OutOfRange => "22003",
        InvalidText => "22P02",
        InvalidParameter => "22023",
        NotSupported => "0A000",
        ReadOnly => "25006",
        ResourcesExhausted => "53200",
        QueueFull => "53300",
        Cancelled => "57014",
        StatementTimeout => "57014",
        // "the worker process ended": like PostgreSQL's crash of another backend, a
        // retryable, connection-preserving operator-side failure.
        WorkerLost => "57P02",
        Unavailable => "57P03",
        DataUnreadable => "58030",
        PermissionDenied => "42501",
        ProtocolViolation => "08P01",
        // invalid_cursor_name, duplicate_cursor, object_not_in_prerequisite_state,
        // no_active_sql_transaction: PostgreSQL's answers for cursors.
        UndefinedCursor => "34000",
        DuplicateCursor => "42P03",
        InvalidState => "55000",
        NoTransaction => "25P01",
        // statement_too_complex, as PostgreSQL answers a statement deeper than its stack.
        TooComplex => "54001",
        // configuration_limit_exceeded.
        QuotaExceeded => "53400",
        // program_limit_exceeded: PostgreSQL's `requested length too large`.
        LimitExceeded => "54000",
        InvalidRegex => "2201B",
        // datetime_field_overflow: `date field value out of range`.
        DatetimeOutOfRange => "22008",
        Internal => "XX000",
    }
}

/// The SQLSTATE a Databricks client (HS2, the Statement Execution API) sees: Spark's where
/// it differs from PostgreSQL's — a pattern that does not compile is Spark's
/// `INVALID_PARAMETER_VALUE.PATTERN` (22023), PostgreSQL's `invalid_regular_expression`.
pub fn databricks_sqlstate(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRegex => "22023",
        other => sqlstate(other),
    }
}

/// The gRPC status code a Flight SQL client sees for each kind of error.
pub fn grpc_code(kind: ErrorKind) -> tonic::Code {
    use tonic::Code;
    use ErrorKind::*;
    match kind {
        Syntax | UndefinedColumn | UndefinedFunction | Ambiguous | DatatypeMismatch
        | DivisionByZero | InvalidValue | OutOfRange | InvalidText | InvalidParameter
        | ReadOnly | ProtocolViolation | TooComplex | LimitExceeded | InvalidRegex
        | DatetimeOutOfRange => Code::InvalidArgument,
        UndefinedTable | UndefinedObject | UndefinedCursor => Code::NotFound,
        DuplicateObject | DuplicateCursor => Code::AlreadyExists,
        InvalidState | NoTransaction => Code::FailedPrecondition,
        NotSupported => Code::Unimplemented,
        PermissionDenied => Code::PermissionDenied,
        Cancelled => Code::Cancelled,
        StatementTimeout => Code::DeadlineExceeded,
        ResourcesExhausted | QueueFull | QuotaExceeded => Code::ResourceExhausted,
        WorkerLost | Unavailable | DataUnreadable => Code::Unavailable,
        Internal => Code::Internal,
    }
}

/// The Databricks SQL Statement Execution API's `error_code` for a failed statement.
pub fn databricks_error_code(kind: ErrorKind) -> &'static str {
    use ErrorKind::*;
    match kind {
        // Databricks reports a failed statement's SQL mistakes as BAD_REQUEST and names
        // the cause in the message; sluice does the same.
        Syntax | UndefinedTable | UndefinedColumn | UndefinedFunction | UndefinedObject
        | DuplicateObject | Ambiguous | DatatypeMismatch | DivisionByZero | InvalidValue
        | OutOfRange | InvalidText | InvalidParameter | NotSupported | ReadOnly
        | PermissionDenied | StatementTimeout | ProtocolViolation | TooComplex
        | UndefinedCursor | DuplicateCursor | InvalidState | NoTransaction | LimitExceeded
        | InvalidRegex | DatetimeOutOfRange => "BAD_REQUEST",
        Cancelled => "CANCELLED",
        ResourcesExhausted | QueueFull | QuotaExceeded => "RESOURCE_EXHAUSTED",
        WorkerLost | Unavailable => "TEMPORARILY_UNAVAILABLE",
        DataUnreadable => "IO_ERROR",
        Internal => "INTERNAL_ERROR",
    }
}

/// How the HTTP front-ends (HS2 over HTTP, the Statement Execution API) answer a statement
/// refused before it ran: the HTTP status and `Retry-After` seconds, which clients honour
/// by retrying. `None`: the failure travels in the protocol's own status (an HS2 TStatus,
/// a FAILED statement) in a 200.
pub fn http_refusal(kind: ErrorKind) -> Option<(u16, Option<u32>)> {
    use ErrorKind::*;
    match kind {
        QueueFull => Some((503, Some(1))),
        QuotaExceeded => Some((429, Some(1))),
        Syntax | UndefinedTable | UndefinedColumn | UndefinedFunction | UndefinedObject
        | DuplicateObject | Ambiguous | DatatypeMismatch | DivisionByZero | InvalidValue
        | OutOfRange | InvalidText | InvalidParameter | NotSupported | ReadOnly
        | ResourcesExhausted | Cancelled | StatementTimeout | WorkerLost | Unavailable
        | DataUnreadable | PermissionDenied | ProtocolViolation | TooComplex | Internal
        | UndefinedCursor | DuplicateCursor | InvalidState | NoTransaction | LimitExceeded
        | InvalidRegex | DatetimeOutOfRange => None,
    }
}

/// A refused login: its SQLSTATE and HTTP status. The issuer's keys being out of reach is
/// the server's problem ("cannot connect now", 503: clients may retry); anything else is
/// the token's (28P01, 401).
pub fn login_sqlstate(err: &auth::AuthError) -> &'static str {
    if err.is_unavailable() {
        "57P03"
    } else {
        "28P01"
    }
}

pub fn login_http_status(err: &auth::AuthError) -> u16 {
    if err.is_unavailable() {
        503
    } else {
        401
    }
}

pub fn login_grpc_code(err: &auth::AuthError) -> tonic::Code {
    if err.is_unavailable() {
        tonic::Code::Unavailable
    } else {
        tonic::Code::Unauthenticated
    }
}

/// A token offered over plain TCP where TLS is required (invalid_authorization_specification).
pub const TLS_REQUIRED: &str = "28000";

/// HS2: every failed call is `TStatus` ERROR_STATUS with [`sqlstate`]'s code, except
/// handles that name no live session (`08003`, connection_does_not_exist) or operation
/// (`34000`, invalid_cursor_name), which are INVALID_HANDLE_STATUS.
pub const HS2_INVALID_SESSION: &str = "08003";
pub const HS2_INVALID_OPERATION: &str = "34000";
/// HS2: OpenSession with a protocol version that is neither Hive's nor Spark's
/// (08004, server rejected the connection).
pub const HS2_BAD_PROTOCOL: &str = "08004";
/// HS2: results asked for before the operation finished (55000, object not in
/// prerequisite state).
pub const HS2_STILL_RUNNING: &str = "55000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_mistakes_are_never_internal() {
        for kind in [
            ErrorKind::Syntax,
            ErrorKind::UndefinedTable,
            ErrorKind::UndefinedColumn,
            ErrorKind::DivisionByZero,
            ErrorKind::NotSupported,
            ErrorKind::WorkerLost,
        ] {
            assert_ne!(sqlstate(kind), "XX000", "{kind:?}");
            assert_ne!(grpc_code(kind), tonic::Code::Internal, "{kind:?}");
        }
        assert_eq!(sqlstate(ErrorKind::Syntax), "42601");
        assert_eq!(sqlstate(ErrorKind::UndefinedTable), "42P01");
        assert_eq!(sqlstate(ErrorKind::UndefinedColumn), "42703");
        assert_eq!(sqlstate(ErrorKind::DivisionByZero), "22012");
        assert_eq!(sqlstate(ErrorKind::NotSupported), "0A000");
        assert_eq!(sqlstate(ErrorKind::InvalidRegex), "2201B");
        assert_eq!(databricks_sqlstate(ErrorKind::InvalidRegex), "22023");
        assert_eq!(databricks_sqlstate(ErrorKind::LimitExceeded), "54000");
    }

    /// The whole table, pinned: a mapping changes only with this test.
    #[test]
    fn every_kind_has_every_wire_form() {
        let mut table = String::new();
        for kind in ErrorKind::ALL {
            let state = sqlstate(kind);
            assert_eq!(state.len(), 5, "{kind:?}");
            let internal = kind == ErrorKind::Internal;
            assert_eq!(state == "XX000", internal, "{kind:?}");
            assert_eq!(
                grpc_code(kind) == tonic::Code::Internal,
                internal,
                "{kind:?}"
            );
            assert_eq!(
                databricks_error_code(kind) == "INTERNAL_ERROR",
                internal,
                "{kind:?}"
            );
            let http = match http_refusal(kind) {
                Some((status, retry)) => format!("{status} retry {retry:?}"),
                None => "-".into(),
            };
            table.push_str(&format!(
                "{} {} {:?} {} {}\n",
                kind.as_str(),
                state,
                grpc_code(kind),
                databricks_error_code(kind),
                http
            ));
        }
        let expected = "\
syntax 42601 InvalidArgument BAD_REQUEST -
undefined_table 42P01 NotFound BAD_REQUEST -
undefined_column 42703 InvalidArgument BAD_REQUEST -
undefined_function 42883 InvalidArgument BAD_REQUEST -
undefined_object 42704 NotFound BAD_REQUEST -
duplicate_object 42P07 AlreadyExists BAD_REQUEST -
ambiguous 42702 InvalidArgument BAD_REQUEST -
datatype_mismatch 42804 InvalidArgument BAD_REQUEST -
division_by_zero 22012 InvalidArgument BAD_REQUEST -
invalid_value 22023 InvalidArgument BAD_REQUEST -
out_of_range 22003 InvalidArgument BAD_REQUEST -
invalid_text 22P02 InvalidArgument BAD_REQUEST -
invalid_parameter 22023 InvalidArgument BAD_REQUEST -
not_supported 0A000 Unimplemented BAD_REQUEST -
read_only 25006 InvalidArgument BAD_REQUEST -
resources_exhausted 53200 ResourceExhausted RESOURCE_EXHAUSTED -
queue_full 53300 ResourceExhausted RESOURCE_EXHAUSTED 503 retry Some(1)
cancelled 57014 Cancelled CANCELLED -
statement_timeout 57014 DeadlineExceeded BAD_REQUEST -
worker_lost 57P02 Unavailable TEMPORARILY_UNAVAILABLE -
unavailable 57P03 Unavailable TEMPORARILY_UNAVAILABLE -
data_unreadable 58030 Unavailable IO_ERROR -
permission_denied 42501 PermissionDenied BAD_REQUEST -
protocol_violation 08P01 InvalidArgument BAD_REQUEST -
undefined_cursor 34000 NotFound BAD_REQUEST -
duplicate_cursor 42P03 AlreadyExists BAD_REQUEST -
invalid_state 55000 FailedPrecondition BAD_REQUEST -
no_transaction 25P01 FailedPrecondition BAD_REQUEST -
too_complex 54001 InvalidArgument BAD_REQUEST -
quota_exceeded 53400 ResourceExhausted RESOURCE_EXHAUSTED 429 retry Some(1)
limit_exceeded 54000 InvalidArgument BAD_REQUEST -
invalid_regex 2201B InvalidArgument BAD_REQUEST -
datetime_out_of_range 22008 InvalidArgument BAD_REQUEST -
internal XX000 Internal INTERNAL_ERROR -
";
        assert_eq!(table, expected);
    }

    #[test]
    fn refused_logins() {
        use auth::AuthError;
        assert_eq!(login_sqlstate(&AuthError::Expired(5)), "28P01");
        assert_eq!(login_http_status(&AuthError::BadSignature), 401);
        let down = AuthError::IssuerUnavailable("https://idp.example/".into());
        assert_eq!(login_sqlstate(&down), "57P03");
        assert_eq!(login_http_status(&down), 503);
        assert_eq!(login_grpc_code(&down), tonic::Code::Unavailable);
        assert_eq!(
            login_grpc_code(&AuthError::BadSignature),
            tonic::Code::Unauthenticated
        );
    }
}

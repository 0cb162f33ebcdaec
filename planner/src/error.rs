//! Error kinds shared by the planner, the workers and the gateway.
//!
//! Every error a query can meet is classified once into an [`ErrorKind`]; the gateway's
//! error table (`gateway/src/error.rs`) turns the kind into a SQLSTATE, gRPC code or HS2
//! status. Messages are meant for the client: no file paths, no stack traces, no secrets.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// What kind of failure an error is, independent of the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The SQL text does not parse.
    Syntax,
    /// A table or view that does not exist.
    UndefinedTable,
    /// A column that does not exist.
    UndefinedColumn,
    /// A function that does not exist (or not with these argument types).
    UndefinedFunction,
    /// An object (schema, prepared statement, setting) that does not exist.
    UndefinedObject,
    /// A table, view or schema that already exists (CREATE without IF NOT EXISTS).
    DuplicateObject,
    /// Two columns or tables with the same name where one was meant.
    Ambiguous,
    /// Types that do not fit together in an expression.
    DatatypeMismatch,
    /// Division by zero during evaluation.
    DivisionByZero,
    /// A value that cannot be converted or is out of range.
    InvalidValue,
    /// Arithmetic whose result its type cannot hold (`integer out of range`).
    OutOfRange,
    /// Text that does not read as the type it is cast to (`'abc'::int`).
    InvalidText,
    /// A parameter that is missing or cannot be decoded.
    InvalidParameter,
    /// Valid SQL that sluice does not support (yet), e.g. writes.
    NotSupported,
    /// A statement not allowed in this state (e.g. a write in a read-only warehouse).
    ReadOnly,
    /// Memory or disk limits reached.
    ResourcesExhausted,
    /// The admission queue is full or the wait for a worker timed out.
    QueueFull,
    /// The client or an operator cancelled the query.
    Cancelled,
    /// The statement ran longer than `statement_timeout`.
    StatementTimeout,
    /// The worker running the query went away; the query may be retried.
    WorkerLost,
    /// No worker could be started or reached.
    Unavailable,
    /// A data file could not be read.
    DataUnreadable,
    /// The principal may not do this.
    PermissionDenied,
    /// A client broke the wire protocol.
    ProtocolViolation,
    /// A cursor that does not exist (FETCH, MOVE, CLOSE).
    UndefinedCursor,
    /// A cursor name already in use (DECLARE).
    DuplicateCursor,
    /// An object that cannot do this now (a cursor asked to go back, or stopped by an error).
    InvalidState,
    /// A statement that needs a transaction block outside one (DECLARE without HOLD).
    NoTransaction,
    /// A statement longer, deeper or larger than the limits allow.
    TooComplex,
    /// A principal holds as many statements, sessions or results as it may.
    QuotaExceeded,
    /// A value too large to make (`repeat('x', 3e9)`): PostgreSQL's `requested length
    /// too large`.
    LimitExceeded,
    /// A regular expression that does not compile.
    InvalidRegex,
    /// A date or timestamp outside its type's range, or a field outside its own.
    DatetimeOutOfRange,
    /// A bug or an unexpected state inside sluice.
    Internal,
}

impl ErrorKind {
    /// Stable name used when an error crosses a process boundary (worker → gateway).
    pub fn as_str(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Syntax => "syntax",
            UndefinedTable => "undefined_table",
            UndefinedColumn => "undefined_column",
            UndefinedFunction => "undefined_function",
            UndefinedObject => "undefined_object",
            DuplicateObject => "duplicate_object",
            Ambiguous => "ambiguous",
            DatatypeMismatch => "datatype_mismatch",
            DivisionByZero => "division_by_zero",
            InvalidValue => "invalid_value",
            OutOfRange => "out_of_range",
            InvalidText => "invalid_text",
            InvalidParameter => "invalid_parameter",
            NotSupported => "not_supported",
            ReadOnly => "read_only",
            ResourcesExhausted => "resources_exhausted",
            QueueFull => "queue_full",
            Cancelled => "cancelled",
            StatementTimeout => "statement_timeout",
            WorkerLost => "worker_lost",
            Unavailable => "unavailable",
            DataUnreadable => "data_unreadable",
            PermissionDenied => "permission_denied",
            ProtocolViolation => "protocol_violation",
            UndefinedCursor => "undefined_cursor",
            DuplicateCursor => "duplicate_cursor",
            InvalidState => "invalid_state",
            NoTransaction => "no_transaction",
            TooComplex => "too_complex",
            QuotaExceeded => "quota_exceeded",
            LimitExceeded => "limit_exceeded",
            InvalidRegex => "invalid_regex",
            DatetimeOutOfRange => "datetime_out_of_range",
            Internal => "internal",
        }
    }

    /// Every kind, for tests over the whole error table.
    pub const ALL: [ErrorKind; 34] = [
        ErrorKind::Syntax,
        ErrorKind::UndefinedTable,
        ErrorKind::UndefinedColumn,
        ErrorKind::UndefinedFunction,
        ErrorKind::UndefinedObject,
        ErrorKind::DuplicateObject,
        ErrorKind::Ambiguous,
        ErrorKind::DatatypeMismatch,
        ErrorKind::DivisionByZero,
        ErrorKind::InvalidValue,
        ErrorKind::OutOfRange,
        ErrorKind::InvalidText,
        ErrorKind::InvalidParameter,
        ErrorKind::NotSupported,
        ErrorKind::ReadOnly,
        ErrorKind::ResourcesExhausted,
        ErrorKind::QueueFull,
        ErrorKind::Cancelled,
        ErrorKind::StatementTimeout,
        ErrorKind::WorkerLost,
        ErrorKind::Unavailable,
        ErrorKind::DataUnreadable,
        ErrorKind::PermissionDenied,
        ErrorKind::ProtocolViolation,
        ErrorKind::UndefinedCursor,
        ErrorKind::DuplicateCursor,
        ErrorKind::InvalidState,
        ErrorKind::NoTransaction,
        ErrorKind::TooComplex,
        ErrorKind::QuotaExceeded,
        ErrorKind::LimitExceeded,
        ErrorKind::InvalidRegex,
        ErrorKind::DatetimeOutOfRange,
        ErrorKind::Internal,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An error with its kind and a message fit for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl QueryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        classify(&err)
    }
}

/// Classify a DataFusion error by its root cause.
pub fn classify(err: &DataFusionError) -> QueryError {
    let root = err.find_root();
    match root {
        DataFusionError::SQL(parser_error, _) => {
            QueryError::new(ErrorKind::Syntax, clean(&parser_error.to_string()))
        }
        DataFusionError::SchemaError(schema_error, _) => {
            use datafusion::common::SchemaError::*;
            let kind = match schema_error.as_ref() {
                FieldNotFound { .. } => ErrorKind::UndefinedColumn,
                AmbiguousReference { .. } => ErrorKind::Ambiguous,
                _ => ErrorKind::DatatypeMismatch,
            };
            QueryError::new(kind, clean(&schema_error.to_string()))
        }
        DataFusionError::ArrowError(arrow_error, _) => classify_arrow(arrow_error),
        DataFusionError::NotImplemented(msg) => {
            QueryError::new(ErrorKind::NotSupported, clean(msg))
        }
        DataFusionError::ResourcesExhausted(msg) => {
            QueryError::new(ErrorKind::ResourcesExhausted, clean(msg))
        }
        DataFusionError::Plan(msg) => QueryError::new(classify_plan_message(msg), clean(msg)),
        DataFusionError::Execution(msg) => {
            QueryError::new(classify_execution_message(msg), clean(msg))
        }
        DataFusionError::ObjectStore(store) => {
            // The cause in words; the URL's query string (a SAS token) is cut from the log.
            tracing::warn!(error = %crate::storage::scrub(&root.to_string(), &[]), "object storage failed");
            QueryError::new(
                ErrorKind::DataUnreadable,
                format!(
                    "a data file of a table in this query could not be read: {}",
                    crate::storage::describe(store)
                ),
            )
        }
        DataFusionError::ParquetError(_) | DataFusionError::IoError(_) => {
            // The underlying message may hold a local path or a storage URL with
            // credentials in its query string: keep it for the logs only.
            tracing::warn!(error = %crate::storage::scrub(&root.to_string(), &[]), "data file could not be read");
            QueryError::new(
                ErrorKind::DataUnreadable,
                "a data file of a table in this query could not be read",
            )
        }
        DataFusionError::ExecutionJoin(_) => {
            QueryError::new(ErrorKind::Cancelled, "the query was stopped")
        }
        DataFusionError::Configuration(msg) => QueryError::new(ErrorKind::InvalidValue, clean(msg)),
        DataFusionError::External(e) => {
            if let Some(query_error) = e.downcast_ref::<QueryError>() {
                query_error.clone()
            } else if let Some(arrow_error) = e.downcast_ref::<ArrowError>() {
                classify_arrow(arrow_error)
            } else if e.to_string().starts_with("regex parse error") {
                // The regex crate's own error (`'x' ~ '['`).
                QueryError::new(ErrorKind::InvalidRegex, clean(&e.to_string()))
            } else {
                QueryError::internal(clean(&e.to_string()))
            }
        }
        other => {
            tracing::error!(error = %other, "unclassified query error");
            QueryError::internal(clean(&other.message()))
        }
    }
}

fn classify_arrow(err: &ArrowError) -> QueryError {
    let kind = match err {
        ArrowError::DivideByZero => ErrorKind::DivisionByZero,
        ArrowError::CastError(msg) if msg.contains("Cannot cast string") => ErrorKind::InvalidText,
        ArrowError::ParseError(_) => ErrorKind::InvalidText,
        ArrowError::ComputeError(msg) | ArrowError::InvalidArgumentError(msg) => {
            classify_execution_message(msg)
        }
        ArrowError::CastError(_) => ErrorKind::InvalidValue,
        ArrowError::ArithmeticOverflow(_) => ErrorKind::OutOfRange,
        ArrowError::MemoryError(_) => ErrorKind::ResourcesExhausted,
        ArrowError::NotYetImplemented(_) => ErrorKind::NotSupported,
        ArrowError::ExternalError(e) if e.to_string().starts_with("regex parse error") => {
            ErrorKind::InvalidRegex
        }
        _ => ErrorKind::Internal,
    };
    let message = match err {
        ArrowError::DivideByZero => "division by zero".to_string(),
        other => clean(&other.to_string()),
    };
    QueryError::new(kind, message)
}

/// What an execution error says about the statement. DataFusion raises `Execution`
/// errors (and arrow its compute errors) when a function meets a value it cannot take
/// (`substr('abc', 1, -1)`, `chr(-1)`, `make_date(2020, 13, 1)`); its own bugs are
/// `Internal`. So an execution error is the statement's mistake, never `internal`; the
/// message says which kind, as close to PostgreSQL's SQLSTATE as the words allow.
fn classify_execution_message(msg: &str) -> ErrorKind {
    let says = |words: &[&str]| words.iter().any(|w| msg.contains(w));
    if says(&["Divide by zero", "division by zero"]) {
        ErrorKind::DivisionByZero
    } else if says(&[
        "Cannot cast string",
        "Failed to parse",
        "Error parsing timestamp",
    ]) {
        ErrorKind::InvalidText
    } else if says(&[
        "size overflow",
        "too large",
        "exceeds the maximum",
        "maximum allowed",
        "allocation failed",
    ]) {
        ErrorKind::LimitExceeded
    } else if says(&["regex parse error", "Regular expression did not compile"]) {
        ErrorKind::InvalidRegex
    } else if says(&["overflows timestamp", "out of range for timestamp"])
        || (says(&["out of range"])
            && says(&[
                "Month",
                "Day",
                "Year",
                "date",
                "Date",
                "timestamp",
                "Timestamp",
            ]))
    {
        ErrorKind::DatetimeOutOfRange
    } else if says(&["overflow", "out of range"]) {
        ErrorKind::OutOfRange
    } else {
        ErrorKind::InvalidValue
    }
}

fn classify_plan_message(msg: &str) -> ErrorKind {
    if msg.starts_with("table '") && msg.contains("not found") {
        ErrorKind::UndefinedTable
    } else if msg.contains("Invalid function") || msg.contains("Unknown function") {
        ErrorKind::UndefinedFunction
    } else if msg.contains("No field named")
        || (msg.starts_with("column '") && msg.contains("not found"))
    {
        ErrorKind::UndefinedColumn
    } else if msg.contains("Cannot infer common")
        || msg.contains("Cannot coerce")
        || msg.contains("does not support")
        || msg.contains("Failed to coerce")
        || msg.contains("No function matches")
        || msg.contains("signature")
    {
        ErrorKind::DatatypeMismatch
    } else if msg.contains("Unsupported")
        || msg.contains("not supported")
        || msg.contains("Unsupported SQL")
    {
        ErrorKind::NotSupported
    } else if msg.contains("DDL not supported")
        || msg.contains("DML not supported")
        || msg.contains("Statement not supported")
    {
        ErrorKind::ReadOnly
    } else {
        ErrorKind::Syntax
    }
}

/// Strip DataFusion's internal prefixes and backtraces from a message.
fn clean(msg: &str) -> String {
    let msg = msg
        .split(DataFusionError::BACK_TRACE_SEP)
        .next()
        .unwrap_or(msg);
    let mut msg = msg.trim();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "Execution error: ",
        "Arrow error: ",
        "This feature is not implemented: ",
        "Resources exhausted: ",
        "Invalid argument error: ",
        "Compute error: ",
        "Cast error: ",
        "Parser error: ",
        "sql parser error: ",
        "ParserError(\"",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            msg = rest;
        }
    }
    let msg = msg.trim_end_matches("\")");
    // The default catalog name is an implementation detail clients should not see.
    msg.replace(&format!("{}.", crate::catalog()), "")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleans_prefixes() {
        assert_eq!(
            super::clean("Error during planning: table 'sluice.tpch.x' not found"),
            "table 'tpch.x' not found"
        );
    }
}

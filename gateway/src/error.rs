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
        Ambiguous => "42702",
        DatatypeMismatch => "42804",
        DivisionByZero => "22012",
        InvalidValue => "22023",
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
        Internal => "XX000",
    }
}

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
        }
        assert_eq!(sqlstate(ErrorKind::Syntax), "42601");
        assert_eq!(sqlstate(ErrorKind::UndefinedTable), "42P01");
        assert_eq!(sqlstate(ErrorKind::UndefinedColumn), "42703");
        assert_eq!(sqlstate(ErrorKind::DivisionByZero), "22012");
        assert_eq!(sqlstate(ErrorKind::NotSupported), "0A000");
    }
}

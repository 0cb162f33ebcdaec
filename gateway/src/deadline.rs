//! Statement deadlines: `statement_timeout` over a statement's start and its rows.

use planner::{ErrorKind, QueryError};

/// The error of a statement that ran past its `statement_timeout` (PostgreSQL's words).
pub fn timed_out() -> QueryError {
    QueryError::new(
        ErrorKind::Cancelled,
        "canceling statement due to statement timeout",
    )
}

type Fallible<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, QueryError>> + Send>>;

/// End a result stream with a timeout error once the deadline passes.
pub fn with_deadline<T: Send + 'static>(
    batches: Fallible<T>,
    deadline: tokio::time::Instant,
) -> Fallible<T> {
    use futures::StreamExt;
    Box::pin(futures::stream::unfold(
        Some(batches),
        move |state| async move {
            let mut batches = state?;
            match tokio::time::timeout_at(deadline, batches.next()).await {
                Ok(Some(item)) => Some((item, Some(batches))),
                Ok(None) => None,
                // Dropping the stream stops the query on its worker.
                Err(_) => Some((Err(timed_out()), None)),
            }
        },
    ))
}

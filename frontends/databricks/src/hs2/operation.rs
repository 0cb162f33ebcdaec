//! One HS2 operation (a statement or a metadata call) from start to close.
//!
//! ```text
//!  ExecuteStatement ─ plan (in the request: SQL errors answer at once) ─► PENDING
//!    runner task: execute ─► RUNNING ─ first rows (or the end) ─► FINISHED ─► CLOSED
//!                                    └─ error ─► ERROR        CancelOperation ─► CANCELED
//!  FetchResults ── pages from the result stream (maxRows / maxBytes), or download links
//! ```
//!
//! FINISHED means "rows can be fetched": results stream from the worker as the client
//! pages through them and are never gathered whole. An error after the first rows
//! answers the FetchResults that meets it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use gateway::planner::{ErrorKind, QueryError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cloudfetch::{Link, Spool};
use super::items::{Item, Items, Shape};
use super::protocol::{row_set, Handle};
use super::results::{self, IpcEncoder};

/// Principal id and issuer: only they may use a session or operation.
pub type Owner = (String, String);

/// Where an operation is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Pending,
    Running,
    Finished,
    Canceled,
    Closed,
    Failed(QueryError),
}

impl State {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, State::Pending | State::Running)
    }
}

/// What one FetchResults returns.
pub struct Page {
    /// Offset of the page's first row in the result.
    pub start: i64,
    pub rows: PageRows,
    /// Whether more rows follow.
    pub more: bool,
}

pub enum PageRows {
    /// Encapsulated (maybe LZ4-framed) record-batch messages and their row counts.
    Arrow(Vec<(Vec<u8>, usize)>),
    /// Batches in the wire types, written as Thrift columns (or rows, Hive < V6).
    Batches(Vec<RecordBatch>),
    Links(Vec<Link>),
}

/// The unread part of a result.
pub struct Results {
    items: Option<Items>,
    /// Read from `items` but not yet sent.
    ahead: VecDeque<Item>,
    /// Rows sent so far.
    offset: i64,
    ended: bool,
    /// An error met after rows were sent: the next fetch reports it.
    failed: Option<QueryError>,
    encoder: Option<IpcEncoder>,
}

/// How long a fetch waits for more rows once it has some: a slow query's rows reach the
/// client as they come instead of after a whole page.
const PAGE_PATIENCE: Duration = Duration::from_secs(2);

impl Results {
    pub fn new(items: Items) -> Self {
        Self {
            items: Some(items),
            ahead: VecDeque::new(),
            offset: 0,
            ended: false,
            failed: None,
            encoder: None,
        }
    }

    /// No rows at all (statements without a result set).
    pub fn empty() -> Self {
        Self {
            ended: true,
            ..Self::new(Box::pin(futures::stream::empty()))
        }
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    async fn next_item(&mut self) -> Option<Result<Item, QueryError>> {
        if let Some(item) = self.ahead.pop_front() {
            return Some(Ok(item));
        }
        if self.ended {
            return None;
        }
        let next = self.items.as_mut()?.next().await;
        if next.is_none() {
            self.ended = true;
            self.items = None;
        }
        next
    }

    /// Read ahead until the result ends or `bytes` are held; whether it ended. Runs before
    /// FINISHED, so an error here is the operation's.
    pub async fn read_ahead(&mut self, bytes: usize) -> Result<bool, QueryError> {
        let mut held: usize = self.ahead.iter().map(Item::bytes).sum();
        loop {
            if self.ended {
                return Ok(true);
            }
            if held >= bytes && !self.ahead.is_empty() {
                return Ok(false);
            }
            let Some(items) = self.items.as_mut() else {
                self.ended = true;
                return Ok(true);
            };
            match items.next().await {
                None => {
                    self.ended = true;
                    self.items = None;
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(item)) => {
                    held += item.bytes();
                    self.ahead.push_back(item);
                }
            }
        }
    }

    /// Everything unread, for the spooler.
    pub fn take_rest(&mut self) -> (VecDeque<Item>, Option<Items>) {
        (std::mem::take(&mut self.ahead), self.items.take())
    }

    /// The next page: at most `max_rows` rows and about `max_bytes` bytes.
    pub async fn page(
        &mut self,
        shape: &Shape,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Page, QueryError> {
        if let Some(e) = self.failed.take() {
            self.ended = true;
            self.ahead.clear();
            return Err(e);
        }
        let max_rows = max_rows.max(1);
        let start = self.offset;
        let mut taken: Vec<Item> = Vec::new();
        let (mut rows, mut bytes) = (0usize, 0usize);
        let mut deadline: Option<tokio::time::Instant> = None;
        while rows < max_rows && bytes < max_bytes {
            let next = match deadline {
                None => self.next_item().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, self.next_item()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let item = match next {
                None => break,
                Some(Ok(item)) => item,
                Some(Err(e)) if taken.is_empty() => {
                    self.ended = true;
                    return Err(e);
                }
                Some(Err(e)) => {
                    self.failed = Some(e);
                    break;
                }
            };
            let n = item.rows();
            if rows + n > max_rows {
                if taken.is_empty() {
                    // One item is more than the client asked for: split it.
                    let batch = decode(item, &shape.wire)?;
                    let head = batch.slice(0, max_rows);
                    let tail = batch.slice(max_rows, batch.num_rows() - max_rows);
                    self.ahead.push_front(Item::Batch(tail));
                    rows += head.num_rows();
                    taken.push(Item::Batch(head));
                } else {
                    self.ahead.push_front(item);
                }
                break;
            }
            rows += n;
            bytes += item.bytes();
            taken.push(item);
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + PAGE_PATIENCE);
        }
        // Learn whether the result just ended without waiting for a worker: saves the
        // client one more round trip.
        if self.ahead.is_empty() && !self.ended {
            if let Some(items) = self.items.as_mut() {
                use futures::FutureExt;
                match items.next().now_or_never() {
                    Some(None) => {
                        self.ended = true;
                        self.items = None;
                    }
                    Some(Some(Ok(item))) => self.ahead.push_back(item),
                    Some(Some(Err(e))) => self.failed = Some(e),
                    None => {}
                }
            }
        }
        self.offset += rows as i64;
        let more = !(self.ended && self.ahead.is_empty() && self.failed.is_none());
        let rows = if shape.format == row_set::ARROW {
            let mut out = Vec::with_capacity(taken.len());
            for item in taken {
                let n = item.rows();
                let message = match item {
                    Item::Flight(data, _) => results::encapsulate(&data),
                    Item::Batch(batch) => {
                        let batch = results::to_wire(&batch, &shape.wire).map_err(encode_error)?;
                        if self.encoder.is_none() {
                            self.encoder =
                                Some(IpcEncoder::new(&shape.wire).map_err(encode_error)?);
                        }
                        match self.encoder.as_mut() {
                            Some(encoder) => encoder.encode(&batch).map_err(encode_error)?,
                            None => return Err(QueryError::internal("no IPC encoder")),
                        }
                    }
                };
                let message = if shape.lz4 {
                    results::lz4_frame(&message).map_err(|e| QueryError::internal(e.to_string()))?
                } else {
                    message
                };
                out.push((message, n));
            }
            PageRows::Arrow(out)
        } else {
            PageRows::Batches(
                taken
                    .into_iter()
                    .map(|item| {
                        decode(item, &shape.wire)
                            .and_then(|b| results::to_wire(&b, &shape.wire).map_err(encode_error))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(Page { start, rows, more })
    }
}

fn encode_error(e: datafusion::arrow::error::ArrowError) -> QueryError {
    QueryError::internal(format!("encoding a result page: {e}"))
}

/// An item as a batch (a passed-through message decoded, when it must be split).
fn decode(item: Item, wire: &SchemaRef) -> Result<RecordBatch, QueryError> {
    match item {
        Item::Batch(b) => Ok(b),
        Item::Flight(data, _) => arrow_flight::utils::flight_data_to_arrow_batch(
            &data,
            wire.clone(),
            &Default::default(),
        )
        .map_err(|e| {
            QueryError::new(
                ErrorKind::WorkerLost,
                format!("bad data from the worker: {e}"),
            )
        }),
    }
}

/// One operation of a session.
pub struct Operation {
    pub handle: Handle,
    pub session: Handle,
    pub owner: Owner,
    /// `TOperationType`.
    pub kind: i32,
    pub has_result_set: bool,
    /// The statement, for logs.
    pub statement: String,
    state: watch::Sender<State>,
    pub cancel: CancellationToken,
    pub results: tokio::sync::Mutex<Results>,
    /// Large results: the files their download links serve.
    pub spool: OnceLock<Arc<Spool>>,
    shape: OnceLock<Shape>,
    used: Mutex<Instant>,
}

impl Operation {
    pub fn new(
        session: Handle,
        owner: Owner,
        kind: i32,
        has_result_set: bool,
        statement: String,
    ) -> Self {
        Self {
            handle: Handle::random(),
            session,
            owner,
            kind,
            has_result_set,
            statement,
            state: watch::channel(State::Pending).0,
            cancel: CancellationToken::new(),
            results: tokio::sync::Mutex::new(Results::empty()),
            spool: OnceLock::new(),
            shape: OnceLock::new(),
            used: Mutex::new(Instant::now()),
        }
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Move to `next` unless the operation already ended (a cancel or close wins over a
    /// late finish).
    pub fn set_state(&self, next: State) {
        self.state.send_if_modified(|state| {
            let allowed = matches!(
                (&*state, &next),
                (State::Pending | State::Running, _)
                    | (
                        State::Finished,
                        State::Canceled | State::Closed | State::Failed(_)
                    )
                    | (State::Canceled | State::Failed(_), State::Closed)
            );
            if allowed {
                *state = next;
            }
            allowed
        });
    }

    /// Wait up to `limit` for the operation to leave PENDING/RUNNING; its state then.
    pub async fn wait(&self, limit: Duration) -> State {
        let mut rx = self.state.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(State::is_terminal)).await;
        self.state()
    }

    pub fn shape(&self) -> Option<&Shape> {
        self.shape.get()
    }

    pub fn finish(&self, shape: Shape) {
        let _ = self.shape.set(shape);
        self.set_state(State::Finished);
    }

    pub fn touch(&self) {
        *self.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn idle(&self) -> Duration {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Stop the operation: its query stops on its worker, and a waiting fetch ends.
    pub fn stop(self: &Arc<Self>, next: State) {
        self.cancel.cancel();
        self.set_state(next);
        if let Some(spool) = self.spool.get() {
            spool.remove();
        }
        // A fetch in progress lets go of the results when it sees the cancel.
        let op = self.clone();
        tokio::spawn(async move {
            let mut results = op.results.lock().await;
            results.items = None;
            results.ahead.clear();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::results::WireOptions;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batches(sizes: &[usize]) -> (SchemaRef, Items) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let s = schema.clone();
        let items: Vec<Result<Item, QueryError>> = sizes
            .iter()
            .map(|n| {
                Ok(Item::Batch(
                    RecordBatch::try_new(
                        s.clone(),
                        vec![Arc::new(Int64Array::from_iter_values(0..*n as i64))],
                    )
                    .expect("batch"),
                ))
            })
            .collect();
        (schema, Box::pin(futures::stream::iter(items)))
    }

    #[tokio::test]
    async fn pages_respect_max_rows_and_report_the_end() {
        let (schema, items) = batches(&[5, 5, 5]);
        let shape = Shape::new(schema, &WireOptions::columns(), true).expect("shape");
        let mut results = Results::new(items);
        let page = results.page(&shape, 7, usize::MAX).await.expect("page");
        let PageRows::Batches(b) = &page.rows else {
            panic!("batches")
        };
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
        assert!(page.more);
        // A batch larger than the page is split.
        let page = results.page(&shape, 3, usize::MAX).await.expect("page");
        assert_eq!(page.start, 5);
        let PageRows::Batches(b) = &page.rows else {
            panic!("batches")
        };
        assert_eq!(b[0].num_rows(), 3);
        let page = results.page(&shape, 100, usize::MAX).await.expect("page");
        assert_eq!(page.start, 8);
        let PageRows::Batches(b) = &page.rows else {
            panic!("batches")
        };
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
        assert!(!page.more, "the end is known without another fetch");
    }

    #[tokio::test]
    async fn an_error_after_rows_answers_the_next_fetch() {
        let (schema, ok) = batches(&[2]);
        let failing = ok.chain(futures::stream::once(async {
            Err(QueryError::new(
                ErrorKind::DivisionByZero,
                "division by zero",
            ))
        }));
        let shape = Shape::new(schema, &WireOptions::columns(), true).expect("shape");
        let mut results = Results::new(Box::pin(failing));
        let page = results
            .page(&shape, 100, usize::MAX)
            .await
            .expect("first page");
        assert!(page.more);
        let err = results
            .page(&shape, 100, usize::MAX)
            .await
            .err()
            .expect("error");
        assert_eq!(err.kind, ErrorKind::DivisionByZero);
    }

    #[test]
    fn cancel_and_close_win_over_a_late_finish() {
        let op = Operation::new(
            Handle::random(),
            ("a".into(), "b".into()),
            0,
            true,
            String::new(),
        );
        op.set_state(State::Running);
        op.set_state(State::Canceled);
        op.set_state(State::Finished);
        assert_eq!(op.state(), State::Canceled);
        op.set_state(State::Closed);
        assert_eq!(op.state(), State::Closed);
    }
}

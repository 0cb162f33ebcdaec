//! Server-side cursors: a query's rows left streaming from its worker between FETCHes.
//!
//! ```text
//!  DECLARE c CURSOR FOR q ──► the query starts on a worker; its batch stream is kept here
//!  FETCH n FROM c ─────────► up to n rows taken from the stream (a batch cut where n ends,
//!                            the rest kept for the next FETCH)
//!  MOVE n / CLOSE / COMMIT ─► rows passed over / the stream dropped (the worker stops)
//! ```
//!
//! Nothing is buffered beyond the batch being read: the worker sends as fast as the client
//! fetches (gRPC flow control). Rows only go forward. A FETCH stopped half-way (cancel,
//! `statement_timeout`, an error) leaves its cursor failed: it can only be closed, as a
//! PostgreSQL portal that failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use planner::cursor::{backward_error, Direction};
use planner::session::CursorInfo;
use planner::{ErrorKind, QueryError};
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use workers::BatchStream;

/// The cursors of one session (shared by the session's clones).
#[derive(Clone, Default)]
pub struct Cursors {
    open: Arc<Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Cursor>>>>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.lock().keys()).finish()
    }
}

/// One open cursor.
struct Cursor {
    info: CursorInfo,
    schema: SchemaRef,
    /// The query's rows still to come (None once they ended).
    rows: Option<BatchStream>,
    /// The rest of a batch a FETCH cut.
    pending: Option<RecordBatch>,
    /// Rows passed so far (PostgreSQL's position: on row `position`, 0 before the first).
    position: u64,
    /// A FETCH or MOVE on it stopped half-way.
    failed: bool,
    /// When a FETCH or MOVE last used it.
    last_used: std::time::Instant,
    /// Stopped after `cursor_idle_timeout` without a FETCH.
    expired: bool,
}

fn undefined(name: &str) -> QueryError {
    QueryError::new(
        ErrorKind::UndefinedCursor,
        format!("cursor \"{name}\" does not exist"),
    )
}

impl Cursors {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<tokio::sync::Mutex<Cursor>>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a cursor of this name may be declared (checked before its query starts).
    pub fn check_room(&self, name: &str, limit: usize) -> Result<(), QueryError> {
        let open = self.lock();
        if open.contains_key(name) {
            return Err(QueryError::new(
                ErrorKind::DuplicateCursor,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        if open.len() >= limit {
            return Err(QueryError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "this session already holds {} open cursors (the most it may, [limits] \
                     max_cursors): CLOSE the ones you no longer read",
                    open.len()
                ),
            ));
        }
        Ok(())
    }

    /// Keep a declared cursor's rows. A cursor not read from for `idle` stops its query
    /// (an open cursor holds a worker slot).
    pub fn open(
        &self,
        info: CursorInfo,
        schema: SchemaRef,
        rows: BatchStream,
        limit: usize,
        idle: std::time::Duration,
    ) -> Result<(), QueryError> {
        self.check_room(&info.name, limit)?;
        let name = info.name.clone();
        let cursor = Arc::new(tokio::sync::Mutex::new(Cursor {
            info,
            schema,
            rows: Some(rows),
            pending: None,
            position: 0,
            failed: false,
            last_used: std::time::Instant::now(),
            expired: false,
        }));
        let watched = Arc::downgrade(&cursor);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(idle).await;
                // Closed, or its session gone: nothing to stop.
                let Some(cursor) = watched.upgrade() else {
                    return;
                };
                // Being read right now: not idle.
                let Ok(mut cursor) = cursor.try_lock() else {
                    continue;
                };
                if cursor.rows.is_none() {
                    return; // read to its end or failed: it holds no slot
                }
                if cursor.last_used.elapsed() >= idle {
                    cursor.rows = None;
                    cursor.pending = None;
                    cursor.failed = true;
                    cursor.expired = true;
                    return;
                }
            }
        });
        self.lock().insert(name, cursor);
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Arc<tokio::sync::Mutex<Cursor>>, QueryError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| undefined(name))
    }

    /// The columns a FETCH from this cursor returns, and whether it was declared BINARY.
    pub fn shape(&self, name: &str) -> Result<(SchemaRef, bool), QueryError> {
        let cursor = self.get(name)?;
        // A cursor being read still has its shape: it never changes.
        let shape = match cursor.try_lock() {
            Ok(c) => (c.schema.clone(), c.info.binary),
            Err(_) => return Err(busy(name)),
        };
        Ok(shape)
    }

    /// `CLOSE name` / `CLOSE ALL` (None). Dropping a cursor's rows stops its query.
    pub fn close(&self, name: Option<&str>) -> Result<(), QueryError> {
        let mut open = self.lock();
        match name {
            None => open.clear(),
            Some(name) => {
                open.remove(name).ok_or_else(|| undefined(name))?;
            }
        }
        Ok(())
    }

    /// The end of a transaction: cursors declared without HOLD close.
    pub fn end_transaction(&self) {
        self.lock().retain(|_, cursor| match cursor.try_lock() {
            Ok(c) => c.info.holdable,
            // One being read right now is not a held one's business: keep it if held.
            Err(_) => true,
        });
    }

    /// What `pg_cursors` shows.
    pub fn list(&self) -> Vec<CursorInfo> {
        self.lock()
            .values()
            .filter_map(|c| c.try_lock().ok().map(|c| c.info.clone()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// FETCH: the rows the direction names, as a stream that reads them from the cursor's
    /// query as the client takes them. Rows passed over on the way (ABSOLUTE, RELATIVE)
    /// are read here, within the deadline.
    pub async fn fetch(
        &self,
        name: &str,
        direction: Direction,
        deadline: Option<Instant>,
    ) -> Result<(SchemaRef, BatchStream), QueryError> {
        let mut reading = Reading::start(self.get(name)?, name)?;
        let (skip, take) = reading.plan(direction)?;
        within(deadline, reading.skip(skip)).await?;
        let schema = reading.schema();
        let rows = futures::stream::unfold((reading, take), |(mut reading, left)| async move {
            if left == Some(0) {
                reading.finish();
                return None;
            }
            match reading.next(left).await {
                None => {
                    reading.finish();
                    None
                }
                Some(Ok(batch)) => {
                    let left = left.map(|l| l - batch.num_rows() as u64);
                    Some((Ok(batch), (reading, left)))
                }
                Some(Err(e)) => {
                    reading.fail();
                    Some((Err(e), (reading, Some(0))))
                }
            }
        });
        let rows: BatchStream = Box::pin(rows);
        Ok((
            schema,
            match deadline {
                Some(deadline) => crate::deadline::with_deadline(rows, deadline),
                None => rows,
            },
        ))
    }

    /// MOVE: pass over the rows the direction names; how many FETCH would have returned.
    pub async fn skip(
        &self,
        name: &str,
        direction: Direction,
        deadline: Option<Instant>,
    ) -> Result<u64, QueryError> {
        let mut reading = Reading::start(self.get(name)?, name)?;
        let (skip, take) = reading.plan(direction)?;
        let moved = within(deadline, async {
            reading.skip(skip).await?;
            reading.skip(take.unwrap_or(u64::MAX)).await
        })
        .await?;
        reading.finish();
        Ok(moved)
    }
}

async fn within<T>(
    deadline: Option<Instant>,
    work: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    match deadline {
        None => work.await,
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(crate::deadline::timed_out())),
    }
}

fn busy(name: &str) -> QueryError {
    QueryError::new(
        ErrorKind::InvalidState,
        format!("cursor \"{name}\" is in use: a FETCH from it has not been read to its end"),
    )
}

/// A FETCH or MOVE holding its cursor. Dropped before [`Reading::finish`] (a cancel, a
/// timeout, a client gone), it leaves the cursor failed and its query stopped.
struct Reading {
    cursor: Option<OwnedMutexGuard<Cursor>>,
}

impl Reading {
    fn start(cursor: Arc<tokio::sync::Mutex<Cursor>>, name: &str) -> Result<Self, QueryError> {
        let mut cursor = cursor.try_lock_owned().map_err(|_| busy(name))?;
        if cursor.expired {
            return Err(QueryError::new(
                ErrorKind::InvalidState,
                format!(
                    "cursor \"{name}\" was stopped after going unread longer than [limits] \
                     cursor_idle_timeout: CLOSE it and DECLARE it again"
                ),
            ));
        }
        if cursor.failed {
            return Err(QueryError::new(
                ErrorKind::InvalidState,
                format!(
                    "cursor \"{name}\" was stopped by an error or a cancel while it was read: \
                     CLOSE it and DECLARE it again"
                ),
            ));
        }
        cursor.last_used = std::time::Instant::now();
        Ok(Self {
            cursor: Some(cursor),
        })
    }

    fn cursor(&mut self) -> &mut Cursor {
        self.cursor
            .as_mut()
            .expect("a reading holds its cursor until it ends")
    }

    fn schema(&mut self) -> SchemaRef {
        self.cursor().schema.clone()
    }

    /// Rows to pass over, then rows to return (None: all), for a direction from here. A
    /// direction refused leaves the cursor as it was.
    fn plan(&mut self, direction: Direction) -> Result<(u64, Option<u64>), QueryError> {
        let planned = self.plan_from_here(direction);
        if planned.is_err() {
            self.finish();
        }
        planned
    }

    fn plan_from_here(&mut self, direction: Direction) -> Result<(u64, Option<u64>), QueryError> {
        let position = self.cursor().position;
        let ahead = |target: i64| -> Result<(u64, Option<u64>), QueryError> {
            match u64::try_from(target) {
                Ok(target) if target > position => Ok((target - position - 1, Some(1))),
                // Before the first row, and already there.
                Ok(0) if position == 0 => Ok((0, Some(0))),
                _ => Err(backward_error()),
            }
        };
        match direction {
            Direction::Forward(n) => Ok((0, Some(n))),
            Direction::All => Ok((0, None)),
            Direction::Absolute(n) => ahead(n),
            Direction::Relative(n) if n > 0 => ahead((position as i64).saturating_add(n)),
            Direction::Relative(0) if position == 0 => Ok((0, Some(0))),
            Direction::Relative(_) | Direction::Backward => Err(backward_error()),
        }
    }

    /// The next rows, at most `limit` (None: a whole batch); None once the query ended.
    async fn next(&mut self, limit: Option<u64>) -> Option<Result<RecordBatch, QueryError>> {
        let cursor = self.cursor();
        loop {
            let batch = match cursor.pending.take() {
                Some(batch) => batch,
                None => match cursor.rows.as_mut()?.next().await {
                    None => {
                        cursor.rows = None;
                        return None;
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    Some(Ok(batch)) => batch,
                },
            };
            let rows = batch.num_rows();
            if rows == 0 {
                continue;
            }
            let take = limit.map_or(rows, |l| rows.min(usize::try_from(l).unwrap_or(usize::MAX)));
            if take < rows {
                cursor.pending = Some(batch.slice(take, rows - take));
            }
            cursor.position += take as u64;
            return Some(Ok(batch.slice(0, take)));
        }
    }

    /// Pass over up to `n` rows; how many there were.
    async fn skip(&mut self, n: u64) -> Result<u64, QueryError> {
        let mut passed = 0;
        while passed < n {
            match self.next(Some(n - passed)).await {
                None => break,
                Some(Ok(batch)) => passed += batch.num_rows() as u64,
                Some(Err(e)) => {
                    self.fail();
                    return Err(e);
                }
            }
        }
        Ok(passed)
    }

    /// Done: the cursor is free for the next FETCH.
    fn finish(&mut self) {
        if let Some(cursor) = self.cursor.as_mut() {
            cursor.last_used = std::time::Instant::now();
        }
        self.cursor = None;
    }

    /// Stopped half-way: the cursor can only be closed; its query stops now.
    fn fail(&mut self) {
        if let Some(mut cursor) = self.cursor.take() {
            cursor.failed = true;
            cursor.rows = None;
            cursor.pending = None;
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.fail();
    }
}

/// What pg_cursors shows of a cursor declared now.
pub fn info(name: &str, statement: &str, holdable: bool, binary: bool) -> CursorInfo {
    CursorInfo {
        name: name.to_string(),
        statement: statement.to_string(),
        holdable,
        binary,
        created: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    /// A cursor over 0..n in batches of `batch` rows.
    fn numbers(cursors: &Cursors, name: &str, n: i64, batch: i64, hold: bool) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches: Vec<Result<RecordBatch, QueryError>> = (0..n)
            .step_by(batch as usize)
            .map(|start| {
                let values: Vec<i64> = (start..(start + batch).min(n)).collect();
                Ok(
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                        .unwrap(),
                )
            })
            .collect();
        cursors
            .open(
                info(name, "DECLARE", hold, false),
                schema,
                Box::pin(futures::stream::iter(batches)),
                4,
                std::time::Duration::from_secs(600),
            )
            .unwrap();
    }

    async fn fetch(cursors: &Cursors, direction: Direction) -> Result<Vec<i64>, QueryError> {
        let (_, rows) = cursors.fetch("c", direction, None).await?;
        let batches: Vec<_> = rows.collect().await;
        let mut values = Vec::new();
        for batch in batches {
            let batch = batch?;
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            values.extend((0..column.len()).map(|i| column.value(i)));
        }
        Ok(values)
    }

    #[tokio::test]
    async fn fetches_go_forward_across_batch_boundaries() {
        let cursors = Cursors::default();
        numbers(&cursors, "c", 10, 4, false);
        assert_eq!(
            fetch(&cursors, Direction::Forward(3)).await.unwrap(),
            [0, 1, 2]
        );
        assert_eq!(
            fetch(&cursors, Direction::Forward(3)).await.unwrap(),
            [3, 4, 5]
        );
        assert_eq!(
            cursors
                .skip("c", Direction::Forward(1), None)
                .await
                .unwrap(),
            1
        );
        // ABSOLUTE 9 is the ninth row (8); RELATIVE 1 the next.
        assert_eq!(fetch(&cursors, Direction::Absolute(9)).await.unwrap(), [8]);
        assert_eq!(
            fetch(&cursors, Direction::Absolute(2))
                .await
                .unwrap_err()
                .kind,
            ErrorKind::InvalidState
        );
        assert_eq!(fetch(&cursors, Direction::Relative(1)).await.unwrap(), [9]);
        assert!(fetch(&cursors, Direction::All).await.unwrap().is_empty());
        assert_eq!(cursors.skip("c", Direction::All, None).await.unwrap(), 0);
        cursors.close(Some("c")).unwrap();
        assert_eq!(
            fetch(&cursors, Direction::Forward(1))
                .await
                .unwrap_err()
                .kind,
            ErrorKind::UndefinedCursor
        );
    }

    #[tokio::test]
    async fn a_fetch_stopped_half_way_leaves_the_cursor_failed() {
        let cursors = Cursors::default();
        numbers(&cursors, "c", 10, 2, false);
        let (_, mut rows) = cursors
            .fetch("c", Direction::Forward(6), None)
            .await
            .unwrap();
        assert!(rows.next().await.unwrap().is_ok());
        // While it is read, the cursor is busy; then the reader goes away (a cancel).
        assert_eq!(
            fetch(&cursors, Direction::Forward(1))
                .await
                .unwrap_err()
                .kind,
            ErrorKind::InvalidState
        );
        drop(rows);
        let err = fetch(&cursors, Direction::Forward(1)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidState);
        assert!(err.message.contains("CLOSE it"), "{}", err.message);
        cursors.close(Some("c")).unwrap();
    }

    #[tokio::test]
    async fn an_unread_cursor_stops_its_query_after_the_idle_timeout() {
        let cursors = Cursors::default();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let idle = std::time::Duration::from_millis(300);
        for name in ["read", "idle"] {
            let rows: BatchStream = Box::pin(futures::stream::iter(vec![Ok(batch.clone())]));
            cursors
                .open(
                    info(name, "DECLARE", true, false),
                    schema.clone(),
                    rows,
                    4,
                    idle,
                )
                .unwrap();
        }
        // One is read from within the timeout, twice; the other is left alone.
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let (_, rows) = cursors
                .fetch("read", Direction::Forward(1), None)
                .await
                .unwrap();
            assert_eq!(rows.collect::<Vec<_>>().await.len(), 1);
        }
        let Err(err) = cursors.fetch("idle", Direction::Forward(1), None).await else {
            panic!("an idle cursor still answered");
        };
        assert_eq!(err.kind, ErrorKind::InvalidState);
        assert!(
            err.message.contains("cursor_idle_timeout"),
            "{}",
            err.message
        );
        let (_, rows) = cursors
            .fetch("read", Direction::Forward(1), None)
            .await
            .unwrap();
        assert_eq!(rows.collect::<Vec<_>>().await.len(), 1);
    }

    #[tokio::test]
    async fn names_limits_and_transactions() {
        let cursors = Cursors::default();
        numbers(&cursors, "c", 3, 3, false);
        numbers(&cursors, "held", 3, 3, true);
        assert_eq!(
            cursors.check_room("c", 4).unwrap_err().kind,
            ErrorKind::DuplicateCursor
        );
        numbers(&cursors, "x", 1, 1, false);
        numbers(&cursors, "y", 1, 1, false);
        assert_eq!(
            cursors.check_room("z", 4).unwrap_err().kind,
            ErrorKind::QuotaExceeded
        );
        cursors.end_transaction();
        let names: Vec<String> = cursors.list().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["held"]);
        assert_eq!(
            cursors.close(Some("c")).unwrap_err().kind,
            ErrorKind::UndefinedCursor
        );
        cursors.close(None).unwrap();
        assert!(cursors.is_empty());
    }
}

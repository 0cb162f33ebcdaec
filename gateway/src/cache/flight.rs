//! Single flight: identical queries that arrive while one is running share its execution.
//!
//! ```text
//!            ┌──────────── driver task ──────────────┐
//!  worker ──►│ push message → buffer (all of it while │──► subscriber (the first client)
//!            │ it may still be cached; then only      │──► subscriber (joined later: reads
//!            │ what some subscriber has not read)     │    the buffer from its start)
//!            └────────────────────────────────────────┘
//!
//! What flows is the worker's Arrow IPC messages (schema first), as the worker sent them:
//! Flight SQL and HS2 clients get them passed through, pg decodes them.
//! ```
//!
//! The driver runs on its own task, so no client owns the execution: a client that goes
//! away only unsubscribes, and the query on the worker stops when the last one has gone.
//! Past the entry size limit the flight stops taking new subscribers, keeps only messages
//! some subscriber has yet to read, and waits for the slowest (never buffered twice, never
//! whole).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_flight::FlightData;
use futures::{Stream, StreamExt};
use planner::QueryError;
use tokio::sync::Notify;
use workers::FlightStream;

/// The bytes a message holds.
pub fn weight(message: &FlightData) -> u64 {
    (message.data_header.len() + message.data_body.len() + message.app_metadata.len()) as u64
}

/// Messages a flight that is no longer a cache candidate holds for slow subscribers.
const WINDOW: usize = 8;

/// One shared execution.
#[derive(Debug)]
pub struct Flight {
    state: Mutex<State>,
    /// Driver → subscribers: a batch or the end arrived.
    changed: Notify,
    /// Subscribers → driver: one read a batch or went away.
    progress: Notify,
    max_bytes: u64,
}

#[derive(Debug)]
struct State {
    /// Index of `buffer[0]` in the result.
    base: usize,
    buffer: VecDeque<FlightData>,
    bytes: u64,
    /// Every batch so far is in `buffer` and the total is within the entry limit.
    keep: bool,
    /// New subscribers may join (kept, and not abandoned by all of its subscribers).
    joinable: bool,
    /// Subscriber id → index of the next batch it reads.
    readers: HashMap<u64, usize>,
    next_reader: u64,
    end: Option<Result<(), QueryError>>,
}

/// What the driver did with one batch.
pub enum Pushed {
    Kept,
    /// The result outgrew the entry limit with this batch: it will not be cached.
    Overflowed,
}

impl Flight {
    pub fn new(max_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                base: 0,
                buffer: VecDeque::new(),
                bytes: 0,
                keep: true,
                joinable: true,
                readers: HashMap::new(),
                next_reader: 0,
                end: None,
            }),
            changed: Notify::new(),
            progress: Notify::new(),
            max_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscriber that reads from the first batch, unless the flight can no longer
    /// give it every batch.
    pub fn subscribe(self: &Arc<Self>) -> Option<Subscriber> {
        let mut state = self.lock();
        if !state.joinable {
            return None;
        }
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, 0);
        Some(Subscriber {
            flight: self.clone(),
            id,
            done: false,
        })
    }

    /// Add a batch (the driver).
    pub fn push(&self, batch: FlightData) -> Pushed {
        let mut state = self.lock();
        let mut pushed = Pushed::Kept;
        state.bytes += weight(&batch);
        if state.keep && state.bytes > self.max_bytes {
            state.keep = false;
            state.joinable = false;
            pushed = Pushed::Overflowed;
        }
        state.buffer.push_back(batch);
        trim(&mut state);
        drop(state);
        self.changed.notify_waiters();
        pushed
    }

    /// The result is complete, or failed (the driver).
    pub fn finish(&self, end: Result<(), QueryError>) {
        let mut state = self.lock();
        if end.is_err() {
            state.keep = false;
        }
        state.joinable = false;
        state.end = Some(end);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The whole result, when it completed within the size limit.
    pub fn kept(&self) -> Option<Vec<FlightData>> {
        let state = self.lock();
        match (&state.end, state.keep) {
            (Some(Ok(())), true) => Some(state.buffer.iter().cloned().collect()),
            _ => None,
        }
    }

    /// Resolves when every subscriber has gone (the query can stop).
    pub async fn abandoned(&self) {
        loop {
            let notified = self.progress.notified();
            {
                let mut state = self.lock();
                if state.readers.is_empty() {
                    state.joinable = false;
                    return;
                }
            }
            notified.await;
        }
    }

    /// Resolves when the driver may read the next batch: always while the result may be
    /// cached (the buffer is bounded by the entry limit), else once the slowest subscriber
    /// is within [`WINDOW`] batches.
    pub async fn room(&self) {
        loop {
            let notified = self.progress.notified();
            {
                let state = self.lock();
                if state.keep || state.buffer.len() < WINDOW || state.readers.is_empty() {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// Drop the batches every subscriber has read, once they need not be kept for the cache.
fn trim(state: &mut State) {
    if state.keep {
        return;
    }
    let slowest = state
        .readers
        .values()
        .copied()
        .min()
        .unwrap_or(state.base + state.buffer.len());
    while state.base < slowest && state.buffer.pop_front().is_some() {
        state.base += 1;
    }
}

/// One client's view of a flight.
#[derive(Debug)]
pub struct Subscriber {
    flight: Arc<Flight>,
    id: u64,
    done: bool,
}

enum Next {
    Batch(FlightData),
    End(Result<(), QueryError>),
    Wait,
}

impl Subscriber {
    fn poll_state(&self, consume: bool) -> Next {
        let mut state = self.flight.lock();
        let Some(&position) = state.readers.get(&self.id) else {
            return Next::End(Ok(()));
        };
        if position < state.base + state.buffer.len() {
            let batch = state.buffer[position - state.base].clone();
            if consume {
                state.readers.insert(self.id, position + 1);
                trim(&mut state);
            }
            return Next::Batch(batch);
        }
        match &state.end {
            Some(end) => Next::End(end.clone()),
            None => Next::Wait,
        }
    }

    /// Wait for the first batch or the end: the error of a query that failed before
    /// producing anything (queue full, a planning error) is the caller's to report.
    pub async fn ready(&mut self) -> Result<(), QueryError> {
        loop {
            let notified = self.flight.changed.notified();
            match self.poll_state(false) {
                Next::Batch(_) | Next::End(Ok(())) => return Ok(()),
                Next::End(Err(e)) => return Err(e),
                Next::Wait => notified.await,
            }
        }
    }

    async fn next(&mut self) -> Option<Result<FlightData, QueryError>> {
        if self.done {
            return None;
        }
        loop {
            let notified = self.flight.changed.notified();
            match self.poll_state(true) {
                Next::Batch(batch) => {
                    self.flight.progress.notify_waiters();
                    return Some(Ok(batch));
                }
                Next::End(end) => {
                    self.done = true;
                    return end.err().map(Err);
                }
                Next::Wait => notified.await,
            }
        }
    }

    pub fn into_stream(self) -> FlightStream {
        Box::pin(futures::stream::unfold(self, |mut me| async move {
            me.next().await.map(|item| (item, me))
        }))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        {
            let mut state = self.flight.lock();
            state.readers.remove(&self.id);
            trim(&mut state);
        }
        self.flight.progress.notify_waiters();
    }
}

/// Run `stream` into `flight` until it ends or nobody reads it any more.
pub async fn drive<S>(flight: &Flight, mut stream: S, mut on_overflow: impl FnMut())
where
    S: Stream<Item = Result<FlightData, QueryError>> + Unpin,
{
    loop {
        tokio::select! {
            _ = flight.room() => {}
            _ = flight.abandoned() => return,
        }
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(batch)) => {
                    if let Pushed::Overflowed = flight.push(batch) {
                        on_overflow();
                    }
                }
                Some(Err(e)) => return flight.finish(Err(e)),
                None => return flight.finish(Ok(())),
            },
            // Dropping the stream stops the query on its worker.
            _ = flight.abandoned() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(v: u8) -> FlightData {
        FlightData::new().with_data_body(vec![v; 4])
    }

    fn value(b: &FlightData) -> u8 {
        b.data_body[0]
    }

    #[tokio::test]
    async fn late_subscribers_read_from_the_start_and_the_result_is_kept() {
        let flight = Flight::new(1 << 20);
        let first = flight.subscribe().expect("joinable");
        flight.push(batch(1));
        let second = flight.subscribe().expect("joinable");
        flight.push(batch(2));
        flight.finish(Ok(()));
        for sub in [first, second] {
            let got: Vec<u8> = sub
                .into_stream()
                .map(|b| value(&b.expect("a message")))
                .collect()
                .await;
            assert_eq!(got, vec![1, 2]);
        }
        assert_eq!(
            flight
                .kept()
                .map(|b| (b.len(), b.iter().map(weight).sum::<u64>())),
            Some((2, 8))
        );
        assert!(
            flight.subscribe().is_none(),
            "a finished flight takes no one"
        );
    }

    #[tokio::test]
    async fn past_the_limit_nobody_joins_and_read_messages_are_dropped() {
        let flight = Flight::new(1);
        let mut sub = flight.subscribe().expect("joinable");
        assert!(matches!(flight.push(batch(1)), Pushed::Overflowed));
        assert!(flight.subscribe().is_none());
        assert_eq!(
            value(&sub.next().await.expect("more").expect("a message")),
            1
        );
        flight.push(batch(2));
        assert_eq!(
            flight.lock().buffer.len(),
            1,
            "message 1 was read and dropped"
        );
        flight.finish(Ok(()));
        assert_eq!(
            value(&sub.next().await.expect("more").expect("a message")),
            2
        );
        assert!(sub.next().await.is_none());
        assert!(flight.kept().is_none());
    }

    #[tokio::test]
    async fn errors_reach_every_subscriber_and_the_last_one_leaving_abandons() {
        let flight = Flight::new(1 << 20);
        let mut a = flight.subscribe().expect("joinable");
        let b = flight.subscribe().expect("joinable");
        drop(b);
        flight.finish(Err(QueryError::internal("boom")));
        assert!(a.ready().await.is_err());
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(1), flight.abandoned())
            .await
            .expect("abandoned at once");
    }
}

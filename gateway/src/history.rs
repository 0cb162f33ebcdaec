//! Query history: records reach the metadata store in batches, written by one task, so a
//! statement never waits on the store. The writer commits every [`FLUSH_EVERY`] or once
//! [`BATCH`] records wait, never once per few records: each commit syncs the store to
//! disk. Until a batch is written its records are read from memory; a store that is down
//! holds at most [`PENDING_LIMIT`] of them (the oldest go first, counted in
//! `sluice_history_dropped_total`). Retention: records older than `[history] retention`
//! and beyond `max_records` are pruned every few minutes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metadata::{HistoryFilter, QueryProfile, QueryRecord, Store, StoreError};

/// Records held in memory while the store cannot take them.
const PENDING_LIMIT: usize = 100_000;
/// A batch is written at least this often…
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// …or as soon as this many wait.
const BATCH: usize = 512;
/// Records in one commit at most (a store that was down has a backlog to catch up on).
const COMMIT_LIMIT: usize = 8192;
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Profiles kept per second of statements that took under a second.
const PROFILES_PER_SECOND: u32 = 20;
/// No profile is kept while this many records wait for the store (a store that is down:
/// what waits in memory stays small).
const PROFILES_PENDING_LIMIT: usize = 10_000;

/// `[history]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    pub enabled: bool,
    /// Records older than this are removed.
    pub retention: Duration,
    /// At most this many records are kept.
    pub max_records: usize,
    /// Rows a `system.query_history` scan reads at most (newest first).
    pub scan_limit: usize,
    /// Query profiles kept at most (the newest; each up to 1 MiB, most a few KiB).
    pub max_profiles: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: Duration::from_secs(30 * 86_400),
            max_records: 1_000_000,
            scan_limit: 100_000,
            max_profiles: 10_000,
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("store", &self.store)
            .finish()
    }
}

pub struct History {
    store: Arc<Store>,
    config: HistoryConfig,
    pending: Mutex<VecDeque<Arc<QueryRecord>>>,
    wake: Notify,
    pub dropped: AtomicU64,
    pub written: AtomicU64,
    /// Commits to the store (each one a batch).
    pub batches: AtomicU64,
    /// Profiles kept in the current second: (second, count).
    profile_rate: Mutex<(u64, u32)>,
}

impl History {
    pub fn new(store: Arc<Store>, config: HistoryConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            pending: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            profile_rate: Mutex::new((0, 0)),
        })
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<QueryRecord>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a statement's profile is kept: always for one that took a second or more,
    /// else [`PROFILES_PER_SECOND`] a second (a flood of point queries would otherwise
    /// write a profile each); none while the store lags behind.
    fn keeps_profile(&self, record: &QueryRecord, waiting: usize) -> bool {
        if waiting >= PROFILES_PENDING_LIMIT {
            return false;
        }
        if record.end_us - record.start_us >= 1_000_000 {
            return true;
        }
        let second = (record.end_us / 1_000_000) as u64;
        let mut rate = self.profile_rate.lock().unwrap_or_else(|e| e.into_inner());
        if rate.0 != second {
            *rate = (second, 0);
        }
        rate.1 += 1;
        rate.1 <= PROFILES_PER_SECOND
    }

    /// Keep a record (written to the store shortly), with the profile of the plan that
    /// ran if it keeps one (made here, then; without the operators' descriptions when
    /// `holds_secret`: they print the literals the record's text hides).
    pub fn record(
        &self,
        mut record: QueryRecord,
        ran: Option<workers::RanPlan>,
        holds_secret: bool,
    ) {
        if let Some(ran) = ran {
            let waiting = self.pending().len();
            if self.keeps_profile(&record, waiting) {
                record.profile = ran
                    .profile()
                    .map(|p| if holds_secret { p.without_details() } else { p })
                    .map(Arc::new);
                record.has_profile = record.profile.is_some();
            }
        }
        let mut pending = self.pending();
        if pending.len() >= PENDING_LIMIT {
            pending.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        pending.push_back(Arc::new(record));
        if pending.len() >= BATCH {
            self.wake.notify_one();
        }
    }

    /// Write the records that wait now (those that arrive meanwhile wait for the next
    /// flush). Records stay readable from memory until the store has them.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut left = self.pending().len();
        while left > 0 {
            let batch: Vec<Arc<QueryRecord>> = self
                .pending()
                .iter()
                .take(left.min(COMMIT_LIMIT))
                .cloned()
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            let n = batch.len();
            self.store.append(batch).await?;
            self.written.fetch_add(n as u64, Ordering::Relaxed);
            self.batches.fetch_add(1, Ordering::Relaxed);
            let mut pending = self.pending();
            // Records dropped meanwhile (a full queue) were the oldest: the same ones.
            let n = n.min(pending.len());
            pending.drain(..n);
            left = left.saturating_sub(n);
        }
        Ok(())
    }

    /// The writer: flushes until `shutdown`, then once more; prunes now and then.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_prune: Option<tokio::time::Instant> = None;
        let mut failing = false;
        loop {
            let due = tokio::time::Instant::now() + FLUSH_EVERY;
            let stop = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break true,
                    _ = tokio::time::sleep_until(due) => break false,
                    // A wake left over from records a flush has written since: not yet.
                    // A store that failed is tried again a tick later, not per record.
                    _ = self.wake.notified(), if !failing => if self.pending().len() >= BATCH {
                        break false;
                    },
                }
            };
            match self.flush().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("query history is being written again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "query history cannot be written; records wait in memory");
                }
                Err(_) => {}
            }
            if stop {
                return;
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(tokio::time::Instant::now());
                let before = SystemTime::now() - self.config.retention;
                match self
                    .store
                    .prune(before, self.config.max_records, self.config.max_profiles)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "query history pruned"),
                    Err(e) => tracing::warn!(error = %e, "query history could not be pruned"),
                }
            }
        }
    }

    /// A statement's profile: from memory while its record waits (among the newest few
    /// thousand: a reader never holds up the statements that record), else from the store.
    pub async fn profile(&self, statement_id: &str) -> Result<Option<QueryProfile>, StoreError> {
        let waiting = self
            .pending()
            .iter()
            .rev()
            .take(4096)
            .find(|r| r.statement_id == statement_id)
            .cloned();
        if let Some(record) = waiting {
            if let Some(profile) = &record.profile {
                return Ok(Some(QueryProfile {
                    record: QueryRecord {
                        profile: None,
                        ..(*record).clone()
                    },
                    profile: (**profile).clone(),
                }));
            }
        }
        self.store.profile(statement_id).await
    }

    /// Records newest first: those not yet written, then the store's.
    pub async fn read(&self, mut filter: HistoryFilter) -> Result<Vec<QueryRecord>, StoreError> {
        if filter.limit == 0 {
            filter.limit = self.config.scan_limit;
        }
        let stored = self.store.history(filter.clone()).await?;
        let mut out: Vec<QueryRecord> = self
            .pending()
            .iter()
            .rev()
            .filter(|r| filter.admits(r))
            .take(filter.limit)
            .map(|r| (**r).clone())
            .collect();
        // A batch written while we read is in both.
        let known: std::collections::HashSet<String> =
            out.iter().map(|r| r.statement_id.clone()).collect();
        out.extend(
            stored
                .into_iter()
                .filter(|r| !known.contains(&r.statement_id)),
        );
        out.sort_by_key(|r| std::cmp::Reverse(r.end_us));
        out.truncate(filter.limit);
        Ok(out)
    }
}

/// A statement's text with secrets replaced: the string after a key that names one
/// (`password`, `secret`, `token`, `account_key`, `sas`, `credential`…) and anything shaped
/// like a JWT or a sluice token.
pub fn redact(text: &str) -> String {
    redact_with(text, &|_| false)
}

/// [`redact`], also replacing every literal `is_credential` recognizes (a static token the
/// gateway accepts, whatever its shape).
pub fn redact_with(text: &str, is_credential: &dyn Fn(&str) -> bool) -> String {
    const SECRET_WORDS: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "account_key",
        "access_key",
        "accountkey",
        "sas",
        "credential",
        "signature",
        "client_secret",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // The text read since the last literal, lowercased: does a secret's name precede?
    let mut before = String::new();
    // The previous literal was a secret's name (`OPTIONS ('account_key' '…')`).
    let mut secret_next = false;
    while let Some(start) = rest.find('\'') {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        before.push_str(&head.to_ascii_lowercase());
        // The literal, with '' as an escaped quote.
        let body = &tail[1..];
        let mut end = None;
        let mut i = 0;
        let bytes = body.as_bytes();
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                end = Some(i);
                break;
            }
            i += 1;
        }
        let Some(end) = end else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let literal = &body[..end];
        let tail_words: String = before
            .chars()
            .rev()
            .take(40)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        let names_secret = |t: &str| SECRET_WORDS.iter().any(|w| t.contains(w));
        let secret = secret_next
            || (names_secret(&tail_words) && !names_secret(&literal.to_ascii_lowercase()))
            || looks_like_jwt(literal)
            || auth::looks_like_token(literal)
            || is_credential(literal);
        secret_next = !secret && names_secret(&literal.to_ascii_lowercase());
        if secret {
            out.push_str("'***'");
        } else {
            out.push('\'');
            out.push_str(literal);
            out.push('\'');
        }
        before.clear();
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.matches('.').count() == 2 && s.len() > 30
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::tests::record;

    /// A steady stream of statements is written in few commits (each one syncs the store
    /// to disk), not one commit per handful of records chased as they arrive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_arrivals_are_written_in_few_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("opens");
        let history = History::new(store, HistoryConfig::default());
        let stop = CancellationToken::new();
        let writer = tokio::spawn(history.clone().run(stop.clone()));
        // ~10,000 statements a second for 1.2 s.
        let started = tokio::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_millis(1200) {
            for _ in 0..10 {
                history.record(record(&format!("q{n}"), n as i64, "p"), None, false);
                n += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.cancel();
        writer.await.expect("writer ends");
        assert_eq!(
            history.written.load(Ordering::Relaxed),
            n,
            "every record is written"
        );
        assert_eq!(history.pending().len(), 0);
        let batches = history.batches.load(Ordering::Relaxed);
        // Every 250 ms or once 512 wait: the full batches, ~5 ticks and the last one at the
        // stop. Chasing arrivals commits whatever came during the previous commit: hundreds.
        let bound = n / BATCH as u64 + 8;
        assert!(
            batches <= bound,
            "{n} records took {batches} commits (at most {bound})"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact("CREATE EXTERNAL TABLE t LOCATION 'az://c/p' OPTIONS ('account_key' 'abc==', 'x' 'y')"),
            "CREATE EXTERNAL TABLE t LOCATION 'az://c/p' OPTIONS ('account_key' '***', 'x' 'y')"
        );
        assert_eq!(redact("SET password = 'hunter2'"), "SET password = '***'");
        assert_eq!(
            redact("select 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'"),
            "select '***'"
        );
        assert_eq!(redact("select 'it''s', 2"), "select 'it''s', 2");
        let token = auth::generate_token();
        assert_eq!(redact(&format!("select '{token}'")), "select '***'");
        assert_eq!(
            redact_with("select 'hunter2', 'plain'", &|l| l == "hunter2"),
            "select '***', 'plain'"
        );
        assert_eq!(redact("select 'open"), "select 'open");
    }
}

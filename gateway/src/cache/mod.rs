//! The result cache: answers repeated queries without a worker, and never stale.
//!
//! ```text
//!  optimized plan ─┐
//!  table versions ─┼─sha256─► key ──► memory (LRU by bytes) ──► persistent tier ──► in flight?
//!  security, tz  ──┘                    hit: stream it          hit: load, stream     join it
//!                                                                                    else lead:
//!                                            driver task runs the query, every subscriber
//!                                            streams its IPC messages as they arrive, the
//!                                            result kept if small
//! ```
//!
//! **The guarantee**: a table's version is the digest of its file listing (path, size,
//! modification time, ETag), re-read at most `metadata_refresh` after it was last read, and
//! every lookup uses a version at most that old. A file added, replaced or removed is
//! therefore never answered from the cache more than `metadata_refresh` (default 1 s) after
//! the change. Plans calling non-immutable functions (`now()`, `random()`, `current_user`)
//! or reading live tables (`system.*`) are never cached. Authorization runs before the
//! lookup, so a principal without a grant is refused, never served. Answers that read
//! pg_catalog or information_schema (alone or with data tables) are keyed by the asking
//! session as a whole and kept only in memory: the catalog does not change while the
//! process runs.

mod flight;
mod lru;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow_flight::FlightData;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use datafusion::arrow::ipc::CompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use planner::cache_key;
use planner::{ErrorKind, Planner, QueryError, SessionInfo};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use workers::FlightStream;

use flight::Flight;
use lru::Lru;

/// The session setting (and Flight SQL header, HS2 confOverlay key) that turns the cache
/// off for a session's queries: `SET use_cached_result = false`.
pub const BYPASS_SETTING: &str = "use_cached_result";

/// `[cache]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bytes of results (Arrow IPC messages) the memory tier holds at most.
    pub memory_budget: u64,
    /// Results larger than this stream through without being kept.
    pub max_entry_bytes: u64,
    /// An entry older than this is not served.
    pub ttl: Duration,
    /// How old a table's listing may be when a lookup uses it.
    pub metadata_refresh: Duration,
    /// Where the persistent tier keeps entries (a directory, or an object store URL that
    /// the catalog can read), if anywhere.
    pub persistent: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_budget: 1 << 30,
            max_entry_bytes: 16 << 20,
            ttl: Duration::from_secs(24 * 3600),
            metadata_refresh: Duration::from_secs(1),
            persistent: None,
        }
    }
}

pub type Key = [u8; 32];

/// A kept result.
#[derive(Debug)]
pub struct Entry {
    pub key: Key,
    /// The result as Arrow IPC messages, schema first, as the worker sent them (each in
    /// an allocation of its own: see [`Entry::new`]).
    pub messages: Vec<FlightData>,
    /// What the entry holds in memory: its messages, text and bookkeeping (what the memory
    /// budget counts).
    pub bytes: u64,
    pub rows: u64,
    /// The data tables it was computed from.
    pub tables: Vec<String>,
    /// Served to any principal allowed to run its plan (false: to one session identity,
    /// for plans that read the catalog).
    pub shared: bool,
    pub text: String,
    pub created: SystemTime,
    pub hits: AtomicU64,
    /// Whether it came back from the persistent tier.
    pub restored: bool,
}

/// What an entry holds besides its messages' bytes: the entry, its place in the LRU's
/// maps, the allocator's share. Measured: 6,000 distinct one-row answers grew the gateway
/// by 3.3 KiB each (debug build, glibc malloc), of which the messages are ~0.6 KiB.
const ENTRY_OVERHEAD: u64 = 2304;
/// Per message: its struct, its buffers' headers, the allocator's rounding.
const MESSAGE_OVERHEAD: u64 = 192;

impl Entry {
    /// An entry of `messages`. A message decoded from the worker's stream is a slice of
    /// the transport's receive buffer, which a kept slice would keep whole (kilobytes for
    /// a few hundred bytes of result): each is copied into an allocation of its own.
    #[allow(clippy::too_many_arguments)]
    fn new(
        key: Key,
        messages: Vec<FlightData>,
        rows: u64,
        tables: Vec<String>,
        shared: bool,
        text: String,
        created: SystemTime,
        restored: bool,
    ) -> Self {
        let messages: Vec<FlightData> = messages
            .into_iter()
            .map(|m| FlightData {
                flight_descriptor: None,
                data_header: bytes::Bytes::copy_from_slice(&m.data_header),
                app_metadata: bytes::Bytes::copy_from_slice(&m.app_metadata),
                data_body: bytes::Bytes::copy_from_slice(&m.data_body),
            })
            .collect();
        let bytes = ENTRY_OVERHEAD
            + text.len() as u64
            + tables.iter().map(|t| t.len() as u64 + 32).sum::<u64>()
            + messages
                .iter()
                .map(|m| flight::weight(m) + MESSAGE_OVERHEAD)
                .sum::<u64>();
        Self {
            key,
            messages,
            bytes,
            rows,
            tables,
            shared,
            text,
            created,
            hits: AtomicU64::new(0),
            restored,
        }
    }

    fn stream(&self) -> FlightStream {
        Box::pin(futures::stream::iter(
            self.messages.clone().into_iter().map(Ok),
        ))
    }

    fn age(&self) -> Duration {
        self.created.elapsed().unwrap_or_default()
    }
}

/// The key of one query, and what it was made from.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub key: Key,
    tables: Vec<String>,
    /// Whether every principal allowed to run the plan may be served the entry: false when
    /// the plan reads the catalog (then it is the session identity's alone, and kept in
    /// memory only).
    shared: bool,
}

/// How a query was answered, for logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From an entry in memory.
    Hit,
    /// From the persistent tier.
    Restored,
    /// Sharing a running identical query.
    Shared,
    /// Ran (and may be kept).
    Miss,
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Hit => "hit",
            Served::Restored => "restored",
            Served::Shared => "shared",
            Served::Miss => "miss",
        }
    }
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub restored: AtomicU64,
    pub shared: AtomicU64,
    pub misses: AtomicU64,
    pub stored: AtomicU64,
    pub too_large: AtomicU64,
    pub evicted: AtomicU64,
}

/// A table's version and when it was read.
struct Version {
    digest: String,
    read: Instant,
}

pub struct ResultCache {
    config: CacheConfig,
    memory: Mutex<Lru>,
    inflight: Mutex<HashMap<Key, Arc<Flight>>>,
    versions: Mutex<HashMap<String, Version>>,
    /// The persistent tier: where entries go, and the store that holds them.
    persistent: Option<(ListingTableUrl, Arc<dyn object_store::ObjectStore>)>,
    pub stats: Stats,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ResultCache {
    /// A cache; the persistent tier's store comes from the planner's object stores (the
    /// ones tables are read from).
    pub fn new(config: CacheConfig, planner: &Planner) -> Result<Arc<Self>, String> {
        let persistent = match &config.persistent {
            None => None,
            Some(location) => {
                let url = persistent_url(location)?;
                let store = planner
                    .base_state()
                    .runtime_env()
                    .object_store(url.object_store())
                    .map_err(|e| format!("cache.persistent {location:?}: {e}"))?;
                Some((url, store))
            }
        };
        Ok(Arc::new(Self {
            memory: Mutex::new(Lru::new(config.memory_budget)),
            inflight: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            persistent,
            stats: Stats::default(),
            config,
        }))
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cache is to be used for a session's queries at all (on, and not turned
    /// off with `use_cached_result = false`).
    pub fn applies(&self, session: &SessionInfo) -> bool {
        self.config.enabled
            && !session
                .settings
                .get(BYPASS_SETTING)
                .is_some_and(|v| is_false(&v))
    }

    /// The cache key of a query from what it reads and its optimized plan's fingerprint,
    /// or None when a table cannot be listed (the query then runs and reports it).
    pub async fn key(
        &self,
        session: &SessionInfo,
        reads: &cache_key::Reads,
        fingerprint: [u8; 32],
        state: &datafusion::execution::SessionState,
    ) -> Option<Lookup> {
        let mut hasher = Sha256::new();
        hasher.update(b"sluice-result-v1\0");
        hasher.update(fingerprint);
        // Settings that change what a plan computes (the pg encoder applies the rest).
        hasher.update(b"\0tz=");
        hasher.update(session.settings.get("timezone").unwrap_or_default());
        let mut tables = Vec::with_capacity(reads.tables.len());
        for table in &reads.tables {
            let digest = match self.version(state, table).await {
                Ok(digest) => digest,
                Err(e) => {
                    tracing::debug!("not cached: {}", e.message);
                    return None;
                }
            };
            hasher.update(b"\0table=");
            hasher.update(table.name.as_bytes());
            hasher.update(b"@");
            hasher.update(digest.as_bytes());
            tables.push(table.name.clone());
        }
        if reads.catalog {
            // Catalog rows are filtered by grants and some come from the session itself:
            // the entry is the session identity's alone, and the catalog is this process's.
            hasher.update(b"\0security=session:");
            match &session.access {
                planner::Access::All => hasher.update(b"all"),
                planner::Access::Granted { principal, .. } => {
                    // Grants apply by principal, role and group.
                    let roles = principal.roles.join(",");
                    let groups = principal.groups.join(",");
                    for part in [&principal.issuer, &principal.id, &roles, &groups] {
                        hasher.update(part.as_bytes());
                        hasher.update(b"\0");
                    }
                }
            }
            hasher.update(b"\0");
            hasher.update(session.user.as_bytes());
            hasher.update(b"\0");
            hasher.update(session.database.as_bytes());
            for (name, value, _) in session.settings.all() {
                hasher.update(b"\0");
                hasher.update(name.as_bytes());
                hasher.update(b"=");
                hasher.update(value.as_bytes());
            }
        } else {
            // Authorization ran before this and nothing about the principal shapes a plan
            // over data tables: principals allowed to run it share the entry.
            hasher.update(b"\0security=shared");
        }
        Some(Lookup {
            key: hasher.finalize().into(),
            tables,
            shared: !reads.catalog,
        })
    }

    /// A table's version, re-listed when the one known is older than `metadata_refresh`
    /// (the plans kept with prepared statements are checked against it too).
    pub(crate) async fn version(
        &self,
        state: &datafusion::execution::SessionState,
        table: &cache_key::DataTable,
    ) -> Result<String, QueryError> {
        let id = format!("{}|{:p}", table.name, Arc::as_ptr(&table.provider));
        {
            let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = versions.get(&id) {
                if v.read.elapsed() < self.config.metadata_refresh {
                    return Ok(v.digest.clone());
                }
            }
        }
        let read = Instant::now();
        let digest = cache_key::table_version(state, table.provider.as_ref()).await?;
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Version {
                    digest: digest.clone(),
                    read,
                },
            );
        Ok(digest)
    }

    /// The answer of `lookup`: from memory, from the persistent tier, by joining the
    /// identical query in flight, or by running `run` (on a task of its own, shared with
    /// whoever asks the same while it runs). Errors before the first batch are returned.
    pub async fn answer<F>(
        self: &Arc<Self>,
        lookup: Lookup,
        text: &str,
        run: F,
    ) -> Result<(FlightStream, Served), QueryError>
    where
        F: Future<Output = Result<FlightStream, QueryError>> + Send + 'static,
    {
        let key = lookup.key;
        if let Some(hit) = self.hit(&key) {
            return Ok(hit);
        }
        if lookup.shared {
            if let Some(entry) = self.restore(&key, &lookup.tables).await {
                entry.hits.fetch_add(1, Ordering::Relaxed);
                self.stats.restored.fetch_add(1, Ordering::Relaxed);
                let stream = entry.stream();
                self.keep_in_memory(entry);
                return Ok((stream, Served::Restored));
            }
        }
        let (mut subscriber, served) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // A flight that just ended put its entry in memory before leaving this map.
            if let Some(hit) = self.hit(&key) {
                return Ok(hit);
            }
            match inflight.get(&key).and_then(|f| f.subscribe()) {
                Some(subscriber) => (subscriber, Served::Shared),
                None => {
                    let flight = Flight::new(self.config.max_entry_bytes);
                    let subscriber = flight.subscribe().ok_or_else(|| {
                        QueryError::internal("a new flight refused its first reader")
                    })?;
                    inflight.insert(key, flight.clone());
                    self.lead(flight, lookup, text.to_string(), run);
                    (subscriber, Served::Miss)
                }
            }
        };
        match served {
            Served::Shared => self.stats.shared.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.misses.fetch_add(1, Ordering::Relaxed),
        };
        subscriber.ready().await?;
        Ok((subscriber.into_stream(), served))
    }

    /// The answer from memory, counted.
    fn hit(&self, key: &Key) -> Option<(FlightStream, Served)> {
        let entry = self.memory().get(key, self.config.ttl)?;
        entry.hits.fetch_add(1, Ordering::Relaxed);
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some((entry.stream(), Served::Hit))
    }

    /// Run a query into `flight` on a task of its own; keep the result if it is complete
    /// and small enough.
    fn lead<F>(self: &Arc<Self>, flight: Arc<Flight>, lookup: Lookup, text: String, run: F)
    where
        F: Future<Output = Result<FlightStream, QueryError>> + Send + 'static,
    {
        let cache = self.clone();
        let key = lookup.key;
        tokio::spawn(
            async move {
                let started = tokio::select! {
                    started = run => Some(started),
                    _ = flight.abandoned() => None,
                };
                match started {
                    Some(Ok(stream)) => {
                        flight::drive(&flight, stream, || {
                            cache.forget_flight(&key, &flight);
                            cache.stats.too_large.fetch_add(1, Ordering::Relaxed);
                        })
                        .await
                    }
                    Some(Err(e)) => flight.finish(Err(e)),
                    None => {}
                }
                if let Some(messages) = flight.kept() {
                    let rows = messages
                        .iter()
                        .filter_map(workers::protocol::message_rows)
                        .map(|n| n as u64)
                        .sum();
                    let entry = Arc::new(Entry::new(
                        key,
                        messages,
                        rows,
                        lookup.tables,
                        lookup.shared,
                        text,
                        SystemTime::now(),
                        false,
                    ));
                    cache.stats.stored.fetch_add(1, Ordering::Relaxed);
                    if lookup.shared && cache.persistent.is_some() {
                        let saving = entry.clone();
                        let cache = cache.clone();
                        tokio::spawn(async move { cache.save(&saving).await });
                    }
                    cache.keep_in_memory(entry);
                }
                // After the entry is in memory: a query arriving now finds one or the other.
                cache.forget_flight(&key, &flight);
            }
            .instrument(tracing::Span::current()),
        );
    }

    fn forget_flight(&self, key: &Key, flight: &Arc<Flight>) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if inflight.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            inflight.remove(key);
        }
    }

    fn keep_in_memory(&self, entry: Arc<Entry>) {
        let evicted = self.memory().insert(entry);
        self.stats
            .evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
    }

    /// Every entry in memory (for `system.cache`).
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.memory().entries()
    }

    /// Entries and bytes in memory.
    pub fn usage(&self) -> (usize, u64) {
        let memory = self.memory();
        (memory.len(), memory.bytes())
    }

    /// Drop every entry held in memory, and the table versions known (at once, for a
    /// catalog that just changed; [`ResultCache::clear`] also empties the persistent tier).
    pub fn clear_memory(&self) -> usize {
        let cleared = self.memory().clear();
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        cleared
    }

    /// Drop every entry, in memory and in the persistent tier; returns how many were in
    /// memory.
    pub async fn clear(&self) -> Result<usize, QueryError> {
        let cleared = self.clear_memory();
        if let Some((url, store)) = &self.persistent {
            let mut listing = store.list(Some(url.prefix()));
            while let Some(object) = listing.next().await {
                let object = object.map_err(storage_error)?;
                if object.location.as_ref().ends_with(".arrow") {
                    store
                        .delete(&object.location)
                        .await
                        .map_err(storage_error)?;
                }
            }
        }
        Ok(cleared)
    }

    /// Delete persistent entries older than the TTL (at start; they would not be served).
    pub async fn sweep(&self) {
        let Some((url, store)) = &self.persistent else {
            return;
        };
        let ttl = chrono::Duration::from_std(self.config.ttl).unwrap_or(chrono::Duration::MAX);
        let now = chrono::Utc::now();
        let mut removed = 0usize;
        let mut listing = store.list(Some(url.prefix()));
        while let Some(Ok(object)) = listing.next().await {
            if object.location.as_ref().ends_with(".arrow")
                && now.signed_duration_since(object.last_modified) > ttl
                && store.delete(&object.location).await.is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "result cache: expired persistent entries removed");
        }
    }

    fn object_path(url: &ListingTableUrl, key: &Key) -> object_store::path::Path {
        url.prefix()
            .clone()
            .join(format!("{}.arrow", hex::encode(key)))
    }

    /// Write an entry to the persistent tier as LZ4-compressed Arrow IPC (a failure only
    /// costs the entry: it is logged).
    async fn save(&self, entry: &Entry) {
        let Some((url, store)) = &self.persistent else {
            return;
        };
        let encoded = (|| -> Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
            let options = IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::LZ4_FRAME))?;
            let first = entry.messages.first().ok_or_else(|| {
                datafusion::arrow::error::ArrowError::IpcError("an entry without its schema".into())
            })?;
            let schema = datafusion::arrow::datatypes::Schema::try_from(first)?;
            let mut writer = FileWriter::try_new_with_options(Vec::new(), &schema, options)?;
            for batch in arrow_flight::utils::flight_data_to_batches(&entry.messages)? {
                writer.write(&batch)?;
            }
            writer.write_metadata("sluice.tables", entry.tables.join(","));
            writer.write_metadata("sluice.text", entry.text.clone());
            writer.finish()?;
            writer.into_inner()
        })();
        let result = match encoded {
            Ok(bytes) => store
                .put(&Self::object_path(url, &entry.key), bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!("result cache: could not save an entry to the persistent tier: {e}");
        }
    }

    /// An entry from the persistent tier, if one is there and not expired.
    async fn restore(&self, key: &Key, tables: &[String]) -> Option<Arc<Entry>> {
        let (url, store) = self.persistent.as_ref()?;
        let path = Self::object_path(url, key);
        let object = store.get(&path).await.ok()?;
        let modified = object.meta.last_modified;
        let bytes = object.bytes().await.ok()?;
        let age = chrono::Utc::now()
            .signed_duration_since(modified)
            .to_std()
            .unwrap_or_default();
        if age > self.config.ttl {
            let _ = store.delete(&path).await;
            return None;
        }
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| tracing::warn!("result cache: unreadable persistent entry: {e}"))
            .ok()?;
        let schema = reader.schema();
        let text = reader
            .custom_metadata()
            .get("sluice.text")
            .cloned()
            .unwrap_or_default();
        let batches = reader.collect::<Result<Vec<_>, _>>().ok()?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let messages = arrow_flight::utils::batches_to_flight_data(&schema, batches)
            .map_err(|e| tracing::warn!("result cache: persistent entry not re-encoded: {e}"))
            .ok()?;
        Some(Arc::new(Entry::new(
            *key,
            messages,
            rows,
            tables.to_vec(),
            true,
            text,
            SystemTime::now() - age,
            true,
        )))
    }
}

/// The persistent tier's location as a URL: a directory path or an object store URL.
fn persistent_url(location: &str) -> Result<ListingTableUrl, String> {
    let mut location = location.to_string();
    if !location.contains("://") {
        let path = std::path::Path::new(&location);
        std::fs::create_dir_all(path).map_err(|e| format!("cache.persistent {location:?}: {e}"))?;
        location = std::fs::canonicalize(path)
            .map_err(|e| format!("cache.persistent {location:?}: {e}"))?
            .to_string_lossy()
            .into_owned();
    }
    if !location.ends_with('/') {
        location.push('/');
    }
    ListingTableUrl::parse(&location).map_err(|e| format!("cache.persistent {location:?}: {e}"))
}

fn storage_error(e: object_store::Error) -> QueryError {
    QueryError::new(
        ErrorKind::DataUnreadable,
        format!("result cache persistent tier: {e}"),
    )
}

/// Whether a setting's value means off.
fn is_false(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "false" | "off" | "0" | "no" | "f" | "n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_its_own_bytes_and_counts_them() {
        // A message decoded from a stream is a slice of the receive buffer.
        let received = bytes::Bytes::from(vec![7u8; 64 << 10]);
        let message = FlightData {
            flight_descriptor: None,
            data_header: received.slice(0..100),
            app_metadata: bytes::Bytes::new(),
            data_body: received.slice(100..300),
        };
        let entry = Entry::new(
            [0; 32],
            vec![message],
            1,
            vec!["tpch.nation".into()],
            true,
            "select 1".into(),
            SystemTime::now(),
            false,
        );
        let range = received.as_ptr_range();
        for part in [&entry.messages[0].data_header, &entry.messages[0].data_body] {
            assert!(
                !range.contains(&part.as_ptr()),
                "still a slice of the buffer"
            );
        }
        assert_eq!(entry.messages[0].data_body.len(), 200);
        // What the budget counts: the bytes and what holds them.
        assert!(entry.bytes >= 300 + ENTRY_OVERHEAD + MESSAGE_OVERHEAD);
        assert!(entry.bytes < 300 + ENTRY_OVERHEAD + 1024);
    }
}

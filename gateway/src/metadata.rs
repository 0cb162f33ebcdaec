//! The metadata store: what outlives the process and what several gateways share: the
//! query history and the catalog objects created with SQL; an embedded database file under the data dir by default
//! (`<data-dir>/metadata.redb`), PostgreSQL when `[metadata] url = "postgres://…"` is set
//! (then every gateway pointed at it writes to and reads from one history).
//!
//! The store's errors name the store and the cause, never the URL's password.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use planner::ddl::CatalogObject;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// One statement's history record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    pub statement_id: String,
    /// With secrets replaced by `'***'`.
    pub statement_text: String,
    pub principal: String,
    pub principal_id: String,
    pub protocol: String,
    pub warehouse: Option<String>,
    pub worker_id: Option<u64>,
    /// `FINISHED`, `FAILED` or `CANCELED`.
    pub state: String,
    pub sqlstate: Option<String>,
    pub error_message: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    /// Microseconds since the Unix epoch.
    pub start_us: i64,
    pub end_us: i64,
    pub queued_us: u64,
    pub planning_us: u64,
    pub executing_us: u64,
    /// `none`, `hit`, `shared`, `restored` or `miss`.
    pub from_cache: String,
    /// `host:pid` of the gateway that ran it.
    pub gateway: String,
    /// A distributed query: its stages (the gateway's head stage included), its tasks,
    /// and the workers they ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedRecord>,
    /// Its profile is kept (see [`QueryProfile`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_profile: bool,
    /// The profile, on its way to the store (kept apart from the record there).
    #[serde(skip)]
    pub profile: Option<Arc<planner::profile::Profile>>,
}

/// A statement's profile as the store keeps it: its record, and the plan that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryProfile {
    pub record: QueryRecord,
    pub profile: planner::profile::Profile,
}

impl QueryProfile {
    /// Where the plan ran, for people: `worker 3`, `workers 1, 2 (3 stages)`, `gateway`.
    pub fn ran_on(&self) -> String {
        match (&self.record.distributed, self.record.worker_id) {
            (Some(d), _) => format!(
                "workers {} ({} stages, {} tasks)",
                d.worker_list().replace(',', ", "),
                d.stages,
                d.tasks
            ),
            (None, Some(w)) => format!("worker {w}"),
            (None, None) => "gateway".into(),
        }
    }

    /// The profile as the REST API answers it: the statement, and its plan as a tree of
    /// operators with their metrics and each one's share of the time of all.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let total = self.profile.total_time_ns();
        let slowest = self.profile.slowest().map(|o| o as *const _);
        fn node(
            op: &planner::profile::Operator,
            total: u64,
            slowest: Option<*const planner::profile::Operator>,
        ) -> serde_json::Value {
            let metrics: serde_json::Map<String, serde_json::Value> = op
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            json!({
                "operator": op.name,
                "detail": op.detail,
                "rows": op.rows,
                "batches": op.batches,
                "time_ns": op.time_ns,
                "time_share": op.time_ns.filter(|_| total > 0).map(|t| t as f64 / total as f64),
                "slowest": slowest == Some(op as *const _),
                "memory_bytes": op.memory_bytes,
                "spilled_bytes": op.spilled_bytes,
                "output_bytes": op.output_bytes,
                "metrics": metrics,
                "children": op.children.iter().map(|c| node(c, total, slowest)).collect::<Vec<_>>(),
            })
        }
        let r = &self.record;
        json!({
            "statement_id": r.statement_id,
            "statement_text": r.statement_text,
            "state": r.state,
            "principal": r.principal,
            "protocol": r.protocol,
            "warehouse": r.warehouse,
            "ran_on": self.ran_on(),
            "worker_id": r.worker_id,
            "distributed": r.distributed.as_ref().map(|d| json!({
                "stages": d.stages, "tasks": d.tasks, "workers": d.workers,
            })),
            "start_time_ms": r.start_us / 1000,
            "end_time_ms": r.end_us / 1000,
            "duration_ms": (r.end_us - r.start_us) as f64 / 1e3,
            "queued_ms": r.queued_us as f64 / 1e3,
            "planning_ms": r.planning_us as f64 / 1e3,
            "executing_ms": r.executing_us as f64 / 1e3,
            "rows": r.rows,
            "bytes": r.bytes,
            "operators_time_ns": total,
            "truncated": self.profile.truncated,
            "plan": node(&self.profile.root, total, slowest),
        })
    }
}

/// One bucket of a series (see `crate::series`), as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub warehouse: String,
    /// The bucket's width in seconds.
    pub resolution: u32,
    /// Its start, in seconds since the Unix epoch.
    pub start: i64,
    /// The bucket, as JSON.
    pub bucket: Vec<u8>,
}

/// Where a distributed query ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedRecord {
    pub stages: u64,
    pub tasks: u64,
    pub workers: Vec<u64>,
}

impl DistributedRecord {
    pub fn from_progress(p: &workers::DistributedProgress) -> Self {
        Self {
            stages: p.stages as u64,
            tasks: p.tasks as u64,
            workers: p.workers.clone(),
        }
    }

    /// The workers as `system.*` shows them: `2,3,5`.
    pub fn worker_list(&self) -> String {
        let ids: Vec<String> = self.workers.iter().map(u64::to_string).collect();
        ids.join(",")
    }
}

/// Which records a reader wants, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only this principal's (by id).
    pub principal_id: Option<String>,
    pub limit: usize,
}

impl HistoryFilter {
    pub fn admits(&self, record: &QueryRecord) -> bool {
        self.principal_id
            .as_ref()
            .is_none_or(|id| *id == record.principal_id)
    }
}

/// A store that failed (its name and the cause, without secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[error("metadata store ({store}): {cause}")]
pub struct StoreError {
    pub store: &'static str,
    pub cause: String,
}

fn embedded_error(cause: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: "embedded",
        cause: cause.to_string(),
    }
}

fn postgres_error(cause: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: "postgresql",
        cause: cause.to_string(),
    }
}

const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("query_history");
/// Catalog objects created with SQL, by [`CatalogObject::key`], as JSON.
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
/// Profiles by statement id: the end time (8 bytes, big-endian), then a [`QueryProfile`]
/// as JSON.
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("query_profiles");
/// Series buckets by warehouse, `\0`, resolution (4 bytes) and start (8 bytes, both
/// big-endian): the bucket as JSON.
const SERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("series");

/// Where history lives.
pub enum Store {
    Embedded(Arc<redb::Database>),
    Postgres(Box<PgStore>),
}

/// PostgreSQL: one connection, made again when it breaks.
pub struct PgStore {
    config: tokio_postgres::Config,
    /// For messages: host, port and database only.
    display: String,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Embedded(_) => f.write_str("Store::Embedded"),
            Store::Postgres(pg) => write!(f, "Store::Postgres({})", pg.display),
        }
    }
}

impl Store {
    /// Open the store: PostgreSQL at `url` (its tables made if missing), else the embedded
    /// file under `data_dir`.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Arc<Self>, StoreError> {
        let store = match url {
            Some(url) => {
                let config: tokio_postgres::Config = url.parse().map_err(|e| {
                    postgres_error(format!("[metadata] url is not a PostgreSQL URL: {e}"))
                })?;
                let display = describe(&config);
                let pg = PgStore {
                    config,
                    display,
                    client: Mutex::new(None),
                };
                drop(pg.client().await?);
                Store::Postgres(Box::new(pg))
            }
            None => {
                let path = data_dir.join("metadata.redb");
                let db = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                    let db = redb::Database::create(&path).map_err(|e| {
                        embedded_error(format!("cannot open {}: {e}", path.display()))
                    })?;
                    // The history holds every principal's statements: the owner's alone.
                    {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                            .map_err(|e| embedded_error(format!("{}: {e}", path.display())))?;
                    }
                    let tx = db.begin_write().map_err(embedded_error)?;
                    tx.open_table(HISTORY).map_err(embedded_error)?;
                    tx.open_table(CATALOG).map_err(embedded_error)?;
                    tx.open_table(PROFILES).map_err(embedded_error)?;
                    tx.open_table(SERIES).map_err(embedded_error)?;
                    tx.commit().map_err(embedded_error)?;
                    Ok(db)
                })
                .await
                .map_err(embedded_error)??;
                Store::Embedded(Arc::new(db))
            }
        };
        Ok(Arc::new(store))
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Embedded(_) => "embedded (metadata.redb in the data dir)".into(),
            Store::Postgres(pg) => format!("postgresql ({})", pg.display),
        }
    }

    /// Add records (a record already there is kept as it is).
    pub async fn append(&self, records: Vec<Arc<QueryRecord>>) -> Result<(), StoreError> {
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_write().map_err(embedded_error)?;
                    {
                        let mut table = tx.open_table(HISTORY).map_err(embedded_error)?;
                        let mut profiles = tx.open_table(PROFILES).map_err(embedded_error)?;
                        for record in &records {
                            let value = serde_json::to_vec(&**record).map_err(embedded_error)?;
                            table
                                .insert(key(record).as_slice(), value.as_slice())
                                .map_err(embedded_error)?;
                            if let Some(profile) = profile_value(record)? {
                                let mut value = record.end_us.to_be_bytes().to_vec();
                                value.extend_from_slice(profile.as_bytes());
                                profiles
                                    .insert(record.statement_id.as_str(), value.as_slice())
                                    .map_err(embedded_error)?;
                            }
                        }
                    }
                    tx.commit().map_err(embedded_error)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => pg.append(records).await,
        }
    }

    /// Records newest first, as the filter admits them.
    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<QueryRecord>, StoreError> {
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_read().map_err(embedded_error)?;
                    let table = tx.open_table(HISTORY).map_err(embedded_error)?;
                    let mut out = Vec::new();
                    for item in table.iter().map_err(embedded_error)?.rev() {
                        if out.len() >= filter.limit {
                            break;
                        }
                        let (_, value) = item.map_err(embedded_error)?;
                        match serde_json::from_slice::<QueryRecord>(value.value()) {
                            Ok(record) if filter.admits(&record) => out.push(record),
                            Ok(_) => {}
                            // A record of another version: skipped, not fatal.
                            Err(e) => tracing::debug!(error = %e, "unreadable history record"),
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => pg.history(filter).await,
        }
    }

    /// Drop records that ended before `before`, and all but the newest `keep`; profiles
    /// too, and all but the newest `keep_profiles` of them.
    pub async fn prune(
        &self,
        before: SystemTime,
        keep: usize,
        keep_profiles: usize,
    ) -> Result<u64, StoreError> {
        let cutoff = micros(before);
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_write().map_err(embedded_error)?;
                    let removed;
                    {
                        let mut table = tx.open_table(HISTORY).map_err(embedded_error)?;
                        let total = table.len().map_err(embedded_error)? as usize;
                        let over = total.saturating_sub(keep);
                        let mut doomed = Vec::new();
                        for (i, item) in table.iter().map_err(embedded_error)?.enumerate() {
                            let (k, _) = item.map_err(embedded_error)?;
                            let k = k.value();
                            let ended = i64::from_be_bytes(
                                k.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]),
                            );
                            if i < over || ended < cutoff {
                                doomed.push(k.to_vec());
                            } else {
                                break;
                            }
                        }
                        removed = doomed.len() as u64;
                        for k in doomed {
                            table.remove(k.as_slice()).map_err(embedded_error)?;
                        }
                        // Profiles: those older than the cutoff, and all but the newest
                        // `keep_profiles`.
                        let mut profiles = tx.open_table(PROFILES).map_err(embedded_error)?;
                        let mut ends = Vec::new();
                        for item in profiles.iter().map_err(embedded_error)? {
                            let (k, v) = item.map_err(embedded_error)?;
                            let ended = i64::from_be_bytes(
                                v.value()
                                    .get(..8)
                                    .and_then(|b| b.try_into().ok())
                                    .unwrap_or([0; 8]),
                            );
                            ends.push((ended, k.value().to_string()));
                        }
                        ends.sort_unstable();
                        let over = ends.len().saturating_sub(keep_profiles);
                        for (i, (ended, id)) in ends.iter().enumerate() {
                            if i < over || *ended < cutoff {
                                profiles.remove(id.as_str()).map_err(embedded_error)?;
                            }
                        }
                    }
                    tx.commit().map_err(embedded_error)?;
                    Ok(removed)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => pg.prune(cutoff, keep, keep_profiles).await,
        }
    }
}

impl Store {
    /// A statement's profile (None: none was kept).
    pub async fn profile(&self, statement_id: &str) -> Result<Option<QueryProfile>, StoreError> {
        let id = statement_id.to_string();
        let json = match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_read().map_err(embedded_error)?;
                    let table = tx.open_table(PROFILES).map_err(embedded_error)?;
                    let value = table.get(id.as_str()).map_err(embedded_error)?;
                    Ok::<_, StoreError>(value.and_then(|v| v.value().get(8..).map(<[u8]>::to_vec)))
                })
                .await
                .map_err(embedded_error)??
            }
            Store::Postgres(pg) => pg
                .query(
                    "SELECT profile FROM sluice_query_profiles WHERE statement_id = $1",
                    &[&id],
                )
                .await?
                .first()
                .map(|row| row.get::<_, &str>(0).as_bytes().to_vec()),
        };
        Ok(json.and_then(|json| match serde_json::from_slice(&json) {
            Ok(profile) => Some(profile),
            Err(e) => {
                tracing::debug!(error = %e, "unreadable profile");
                None
            }
        }))
    }

    /// Keep series buckets (a bucket already there is replaced), and drop each
    /// resolution's buckets that started before its horizon (`(resolution, oldest start)`).
    pub async fn put_series(
        &self,
        rows: Vec<SeriesRow>,
        horizons: Vec<(u32, i64)>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_write().map_err(embedded_error)?;
                    {
                        let mut table = tx.open_table(SERIES).map_err(embedded_error)?;
                        for row in &rows {
                            table
                                .insert(series_key(row).as_slice(), row.bucket.as_slice())
                                .map_err(embedded_error)?;
                        }
                        let mut doomed = Vec::new();
                        for item in table.iter().map_err(embedded_error)? {
                            let (k, _) = item.map_err(embedded_error)?;
                            let k = k.value();
                            let expired = parse_series_key(k).is_none_or(|(_, res, start)| {
                                horizons
                                    .iter()
                                    .find(|(r, _)| *r == res)
                                    .is_none_or(|(_, oldest)| start < *oldest)
                            });
                            if expired {
                                doomed.push(k.to_vec());
                            }
                        }
                        for k in doomed {
                            table.remove(k.as_slice()).map_err(embedded_error)?;
                        }
                    }
                    tx.commit().map_err(embedded_error)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => pg.put_series(rows, horizons).await,
        }
    }

    /// Every series bucket kept.
    pub async fn series(&self) -> Result<Vec<SeriesRow>, StoreError> {
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_read().map_err(embedded_error)?;
                    let table = tx.open_table(SERIES).map_err(embedded_error)?;
                    let mut out = Vec::new();
                    for item in table.iter().map_err(embedded_error)? {
                        let (k, v) = item.map_err(embedded_error)?;
                        if let Some((warehouse, resolution, start)) = parse_series_key(k.value()) {
                            out.push(SeriesRow {
                                warehouse,
                                resolution,
                                start,
                                bucket: v.value().to_vec(),
                            });
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => {
                let rows = pg
                    .query(
                        "SELECT warehouse, resolution, start_s, bucket FROM sluice_series",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| SeriesRow {
                        warehouse: row.get(0),
                        resolution: row.get::<_, i32>(1) as u32,
                        start: row.get(2),
                        bucket: row.get::<_, &str>(3).as_bytes().to_vec(),
                    })
                    .collect())
            }
        }
    }

    /// The catalog objects created with SQL.
    pub async fn catalog_objects(&self) -> Result<Vec<CatalogObject>, StoreError> {
        let decode = |key: &str, value: &[u8]| match serde_json::from_slice(value) {
            Ok(object) => Some(object),
            Err(e) => {
                tracing::warn!(object = key, error = %e, "unreadable catalog object skipped");
                None
            }
        };
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_read().map_err(embedded_error)?;
                    let table = tx.open_table(CATALOG).map_err(embedded_error)?;
                    let mut out = Vec::new();
                    for item in table.iter().map_err(embedded_error)? {
                        let (key, value) = item.map_err(embedded_error)?;
                        out.extend(decode(key.value(), value.value()));
                    }
                    Ok(out)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => {
                let rows = pg
                    .query("SELECT key, object FROM sluice_catalog ORDER BY key", &[])
                    .await?;
                Ok(rows
                    .iter()
                    .filter_map(|row| decode(row.get(0), row.get::<_, &str>(1).as_bytes()))
                    .collect())
            }
        }
    }

    /// Keep `object` under its key; false (and nothing changed) when one is there already
    /// and `replace` is not set.
    pub async fn put_object(
        &self,
        object: &CatalogObject,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let key = object.key();
        let value = serde_json::to_string(object).map_err(embedded_error)?;
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_write().map_err(embedded_error)?;
                    let kept = {
                        let mut table = tx.open_table(CATALOG).map_err(embedded_error)?;
                        let there = table.get(key.as_str()).map_err(embedded_error)?.is_some();
                        if there && !replace {
                            false
                        } else {
                            table
                                .insert(key.as_str(), value.as_bytes())
                                .map_err(embedded_error)?;
                            true
                        }
                    };
                    tx.commit().map_err(embedded_error)?;
                    Ok(kept)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => {
                let sql = if replace {
                    "INSERT INTO sluice_catalog (key, object) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET object = excluded.object"
                } else {
                    "INSERT INTO sluice_catalog (key, object) VALUES ($1, $2) \
                     ON CONFLICT (key) DO NOTHING"
                };
                Ok(pg.execute(sql, &[&key, &value]).await? == 1)
            }
        }
    }

    /// Remove the object under `key`; false when there was none.
    pub async fn remove_object(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_string();
        match self {
            Store::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_write().map_err(embedded_error)?;
                    let removed = tx
                        .open_table(CATALOG)
                        .map_err(embedded_error)?
                        .remove(key.as_str())
                        .map_err(embedded_error)?
                        .is_some();
                    tx.commit().map_err(embedded_error)?;
                    Ok(removed)
                })
                .await
                .map_err(embedded_error)?
            }
            Store::Postgres(pg) => Ok(pg
                .execute("DELETE FROM sluice_catalog WHERE key = $1", &[&key])
                .await?
                == 1),
        }
    }
}

/// End time first (big-endian, so keys sort by it), then the id.
fn key(record: &QueryRecord) -> Vec<u8> {
    let mut key = record.end_us.to_be_bytes().to_vec();
    key.extend_from_slice(record.statement_id.as_bytes());
    key
}

/// A record's profile as the store keeps it (None: it has none).
fn profile_value(record: &QueryRecord) -> Result<Option<String>, StoreError> {
    let Some(profile) = &record.profile else {
        return Ok(None);
    };
    let stored = QueryProfile {
        record: QueryRecord {
            profile: None,
            ..record.clone()
        },
        profile: (**profile).clone(),
    };
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(embedded_error)
}

fn series_key(row: &SeriesRow) -> Vec<u8> {
    let mut key = row.warehouse.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&row.resolution.to_be_bytes());
    key.extend_from_slice(&row.start.to_be_bytes());
    key
}

fn parse_series_key(key: &[u8]) -> Option<(String, u32, i64)> {
    let (warehouse, rest) = key.split_at(key.len().checked_sub(12)?);
    let warehouse = warehouse.strip_suffix(&[0])?;
    let resolution = u32::from_be_bytes(rest[..4].try_into().ok()?);
    let start = i64::from_be_bytes(rest[4..].try_into().ok()?);
    Some((
        String::from_utf8(warehouse.to_vec()).ok()?,
        resolution,
        start,
    ))
}

pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub fn from_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

/// `host:port/dbname` of a PostgreSQL config: what messages may show.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sluice_query_history (
    statement_id text PRIMARY KEY,
    end_us bigint NOT NULL,
    principal_id text NOT NULL,
    record text NOT NULL
);
CREATE INDEX IF NOT EXISTS sluice_query_history_end ON sluice_query_history (end_us);
CREATE TABLE IF NOT EXISTS sluice_catalog (
    key text PRIMARY KEY,
    object text NOT NULL
);
CREATE TABLE IF NOT EXISTS sluice_query_profiles (
    statement_id text PRIMARY KEY,
    end_us bigint NOT NULL,
    profile text NOT NULL
);
CREATE INDEX IF NOT EXISTS sluice_query_profiles_end ON sluice_query_profiles (end_us);
CREATE TABLE IF NOT EXISTS sluice_series (
    warehouse text NOT NULL,
    resolution integer NOT NULL,
    start_s bigint NOT NULL,
    bucket text NOT NULL,
    PRIMARY KEY (warehouse, resolution, start_s)
);
";

impl PgStore {
    /// The connection, made (and the tables with it) when there is none or it broke.
    async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<tokio_postgres::Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let connect = self.config.connect(tokio_postgres::NoTls);
            let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
                .await
                .map_err(|_| postgres_error(format!("{}: no answer within 10 s", self.display)))?
                .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
            let name = self.display.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(store = %name, error = %e, "metadata store connection lost");
                }
            });
            // Two gateways may create the tables at once: one wins, the other retries.
            if let Err(e) = client.batch_execute(PG_SCHEMA).await {
                tracing::debug!(error = %e, "creating the metadata tables raced; retrying");
                client.batch_execute(PG_SCHEMA).await.map_err(|e| {
                    postgres_error(format!("{}: creating tables: {e}", self.display))
                })?;
            }
            *guard = Some(client);
        }
        Ok(guard)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| postgres_error("not connected"))?;
        client
            .query(sql, params)
            .await
            .map_err(|e| postgres_error(format!("{}: {e}", self.display)))
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| postgres_error("not connected"))?;
        client
            .execute(sql, params)
            .await
            .map_err(|e| postgres_error(format!("{}: {e}", self.display)))
    }

    async fn append(&self, records: Vec<Arc<QueryRecord>>) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(records.len());
        let mut ends = Vec::with_capacity(records.len());
        let mut principals = Vec::with_capacity(records.len());
        let mut values = Vec::with_capacity(records.len());
        for r in &records {
            ids.push(r.statement_id.clone());
            ends.push(r.end_us);
            principals.push(r.principal_id.clone());
            values.push(serde_json::to_string(&**r).map_err(postgres_error)?);
        }
        let (mut profile_ids, mut profile_ends, mut profiles) =
            (Vec::new(), Vec::new(), Vec::new());
        for r in &records {
            if let Some(profile) = profile_value(r).map_err(|e| postgres_error(e.cause))? {
                profile_ids.push(r.statement_id.clone());
                profile_ends.push(r.end_us);
                profiles.push(profile);
            }
        }
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| postgres_error("not connected"))?;
        client
            .execute(
                "INSERT INTO sluice_query_history (statement_id, end_us, principal_id, record) \
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) \
                 ON CONFLICT (statement_id) DO NOTHING",
                &[&ids, &ends, &principals, &values],
            )
            .await
            .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
        if !profiles.is_empty() {
            client
                .execute(
                    "INSERT INTO sluice_query_profiles (statement_id, end_us, profile) \
                     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[]) \
                     ON CONFLICT (statement_id) DO NOTHING",
                    &[&profile_ids, &profile_ends, &profiles],
                )
                .await
                .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
        }
        Ok(())
    }

    async fn put_series(
        &self,
        rows: Vec<SeriesRow>,
        horizons: Vec<(u32, i64)>,
    ) -> Result<(), StoreError> {
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| postgres_error("not connected"))?;
        let error = |e: tokio_postgres::Error| postgres_error(format!("{}: {e}", self.display));
        let warehouses: Vec<&str> = rows.iter().map(|r| r.warehouse.as_str()).collect();
        let resolutions: Vec<i32> = rows.iter().map(|r| r.resolution as i32).collect();
        let starts: Vec<i64> = rows.iter().map(|r| r.start).collect();
        let buckets: Vec<String> = rows
            .iter()
            .map(|r| String::from_utf8_lossy(&r.bucket).into_owned())
            .collect();
        client
            .execute(
                "INSERT INTO sluice_series (warehouse, resolution, start_s, bucket) \
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::text[]) \
                 ON CONFLICT (warehouse, resolution, start_s) DO UPDATE SET bucket = excluded.bucket",
                &[&warehouses, &resolutions, &starts, &buckets],
            )
            .await
            .map_err(error)?;
        let kept: Vec<i32> = horizons.iter().map(|(r, _)| *r as i32).collect();
        client
            .execute(
                "DELETE FROM sluice_series WHERE NOT (resolution = ANY($1::int4[]))",
                &[&kept],
            )
            .await
            .map_err(error)?;
        for (resolution, oldest) in horizons {
            client
                .execute(
                    "DELETE FROM sluice_series WHERE resolution = $1 AND start_s < $2",
                    &[&(resolution as i32), &oldest],
                )
                .await
                .map_err(error)?;
        }
        Ok(())
    }

    async fn history(&self, filter: HistoryFilter) -> Result<Vec<QueryRecord>, StoreError> {
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| postgres_error("not connected"))?;
        let limit = filter.limit as i64;
        let rows = match &filter.principal_id {
            Some(id) => {
                client
                    .query(
                        "SELECT record FROM sluice_query_history WHERE principal_id = $1 \
                         ORDER BY end_us DESC LIMIT $2",
                        &[id, &limit],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        "SELECT record FROM sluice_query_history ORDER BY end_us DESC LIMIT $1",
                        &[&limit],
                    )
                    .await
            }
        }
        .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_str(row.get::<_, &str>(0)).ok())
            .collect())
    }

    async fn prune(
        &self,
        cutoff: i64,
        keep: usize,
        keep_profiles: usize,
    ) -> Result<u64, StoreError> {
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| postgres_error("not connected"))?;
        let keep = keep as i64;
        let old = client
            .execute(
                "DELETE FROM sluice_query_history WHERE end_us < $1",
                &[&cutoff],
            )
            .await
            .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
        let over = client
            .execute(
                "DELETE FROM sluice_query_history WHERE end_us < (SELECT end_us FROM \
                 sluice_query_history ORDER BY end_us DESC OFFSET $1 LIMIT 1)",
                &[&keep],
            )
            .await
            .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
        client
            .execute(
                "DELETE FROM sluice_query_profiles WHERE end_us < $1 OR end_us < (SELECT end_us \
                 FROM sluice_query_profiles ORDER BY end_us DESC OFFSET $2 LIMIT 1)",
                &[&cutoff, &(keep_profiles as i64)],
            )
            .await
            .map_err(|e| postgres_error(format!("{}: {e}", self.display)))?;
        Ok(old + over)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A finished `select 1` record.
    pub(crate) fn record(id: &str, end_us: i64, principal: &str) -> QueryRecord {
        QueryRecord {
            statement_id: id.into(),
            statement_text: "select 1".into(),
            principal: principal.into(),
            principal_id: principal.into(),
            protocol: "pg".into(),
            warehouse: Some("default".into()),
            worker_id: None,
            state: "FINISHED".into(),
            sqlstate: None,
            error_message: None,
            rows: 1,
            bytes: 8,
            start_us: end_us - 10,
            end_us,
            queued_us: 0,
            planning_us: 1,
            executing_us: 2,
            from_cache: "none".into(),
            gateway: "test:1".into(),
            distributed: None,
            has_profile: false,
            profile: None,
        }
    }

    #[tokio::test]
    async fn embedded_store_keeps_filters_and_prunes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("opens");
        store
            .append(vec![
                Arc::new(record("a", 1_000, "alice")),
                Arc::new(record("b", 2_000, "bob")),
                Arc::new(record("c", 3_000, "alice")),
            ])
            .await
            .expect("appends");
        let all = HistoryFilter {
            principal_id: None,
            limit: 10,
        };
        let ids = |rs: Vec<QueryRecord>| rs.into_iter().map(|r| r.statement_id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.history(all.clone()).await.expect("reads")),
            ["c", "b", "a"]
        );
        let alice = HistoryFilter {
            principal_id: Some("alice".into()),
            limit: 10,
        };
        assert_eq!(ids(store.history(alice).await.expect("reads")), ["c", "a"]);
        drop(store);
        // Reopened: still there. Pruning by age, then by count.
        let store = Store::open(None, dir.path()).await.expect("reopens");
        assert_eq!(
            store
                .prune(from_micros(1_500), 100, 100)
                .await
                .expect("prunes"),
            1
        );
        assert_eq!(store.prune(from_micros(0), 1, 1).await.expect("prunes"), 1);
        assert_eq!(ids(store.history(all).await.expect("reads")), ["c"]);
    }

    #[tokio::test]
    async fn profiles_are_kept_apart_and_pruned_with_the_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("opens");
        let profile = planner::profile::Profile {
            root: planner::profile::Operator {
                name: "AggregateExec".into(),
                rows: Some(4),
                time_ns: Some(1_000),
                ..Default::default()
            },
            truncated: false,
        };
        let with_profile = |id: &str, end| QueryRecord {
            has_profile: true,
            profile: Some(Arc::new(profile.clone())),
            ..record(id, end, "alice")
        };
        store
            .append(vec![
                Arc::new(with_profile("p1", 1_000)),
                Arc::new(record("p2", 2_000, "alice")),
                Arc::new(with_profile("p3", 3_000)),
            ])
            .await
            .expect("appends");
        drop(store);
        let store = Store::open(None, dir.path()).await.expect("reopens");
        let kept = store.profile("p1").await.expect("reads").expect("kept");
        assert_eq!(kept.profile, profile);
        assert_eq!(kept.record.statement_id, "p1");
        assert!(kept.record.has_profile && kept.record.profile.is_none());
        assert!(store.profile("p2").await.expect("reads").is_none());
        // The history's record does not carry the profile.
        let records = store
            .history(HistoryFilter {
                principal_id: None,
                limit: 10,
            })
            .await
            .expect("reads");
        assert!(records.iter().all(|r| r.profile.is_none()));
        assert_eq!(kept.to_json()["plan"]["slowest"], true);
        // One profile kept at most: the newest.
        store.prune(from_micros(0), 100, 1).await.expect("prunes");
        assert!(store.profile("p1").await.expect("reads").is_none());
        assert!(store.profile("p3").await.expect("reads").is_some());
        // Older than the retention: gone with its record.
        store
            .prune(from_micros(3_500), 100, 100)
            .await
            .expect("prunes");
        assert!(store.profile("p3").await.expect("reads").is_none());
    }
}

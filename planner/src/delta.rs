//! Delta Lake tables. The gateway reads a table's transaction log with the `deltalake`
//! crate and plans a scan of exactly the Parquet files of one snapshot: an ordinary
//! DataFusion Parquet scan, which ships to the workers like any other (they need nothing of
//! Delta). Each statement sees the newest commit (the log is checked when the statement is
//! planned); `VERSION AS OF n` and `TIMESTAMP AS OF '…'` read an older snapshot. The Delta
//! version is the table version the result cache keys on.
//!
//! Not read yet: tables with deletion vectors or column mapping (refused with a clear error,
//! never answered wrongly). Partition columns come after the data columns.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::Mutex;

use crate::error::{ErrorKind, QueryError};

/// Which snapshot a statement reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsOf {
    Latest,
    Version(i64),
    /// An RFC 3339 timestamp (or a date): the last commit at or before it.
    Timestamp(String),
}

impl AsOf {
    /// The suffix a time-travel reference carries in its table name (`sales@v3`); see
    /// [`crate::compat::rewrite_time_travel`].
    pub fn parse_suffix(suffix: &str) -> Option<Self> {
        if let Some(v) = suffix.strip_prefix('v') {
            return v.parse().ok().map(AsOf::Version);
        }
        suffix
            .strip_prefix('t')
            .map(|t| AsOf::Timestamp(t.to_string()))
    }
}

/// A Delta table of the catalog: where it is, and the newest snapshot read so far.
pub struct DeltaSource {
    /// `schema.table`, for messages.
    name: String,
    url: ListingTableUrl,
    store: Arc<dyn ObjectStore>,
    latest: Mutex<Option<(DeltaTable, Arc<DeltaSnapshot>)>>,
}

impl std::fmt::Debug for DeltaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaSource")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl DeltaSource {
    /// Open the table at `url` (its log is read now, so a table that is not there or not
    /// readable is known at once).
    pub async fn open(
        state: &dyn Session,
        name: &str,
        url: ListingTableUrl,
    ) -> Result<Self, QueryError> {
        let store = state
            .runtime_env()
            .object_store(&url)
            .map_err(QueryError::from)?;
        let source = Self {
            name: name.to_string(),
            url,
            store,
            latest: Mutex::new(None),
        };
        source.snapshot(&AsOf::Latest).await?;
        Ok(source)
    }

    fn builder(&self) -> Result<DeltaTableBuilder, QueryError> {
        let location: url::Url = self.url.get_url().clone();
        Ok(DeltaTableBuilder::from_url(location.clone())
            .map_err(|e| self.error(e))?
            .with_storage_backend(self.store.clone(), location))
    }

    fn error(&self, e: DeltaTableError) -> QueryError {
        delta_error(&self.name, e)
    }

    /// The newest snapshot read so far (for a plan's schema; its scan checks again).
    async fn cached_latest(&self) -> Result<Arc<DeltaSnapshot>, QueryError> {
        if let Some((_, snapshot)) = self.latest.lock().await.as_ref() {
            return Ok(snapshot.clone());
        }
        self.snapshot(&AsOf::Latest).await
    }

    /// The snapshot a statement reads: the newest commit (the log is checked now), or the
    /// one named.
    pub async fn snapshot(&self, as_of: &AsOf) -> Result<Arc<DeltaSnapshot>, QueryError> {
        match as_of {
            AsOf::Latest => {
                let mut latest = self.latest.lock().await;
                match latest.as_mut() {
                    Some((table, snapshot)) => {
                        let newest = table
                            .get_latest_version()
                            .await
                            .map_err(|e| self.error(e))?;
                        if Some(newest) != table.version() {
                            table
                                .update_incremental(None)
                                .await
                                .map_err(|e| self.error(e))?;
                            *snapshot = Arc::new(self.read(table).await?);
                        }
                        Ok(snapshot.clone())
                    }
                    None => {
                        let table = self.builder()?.load().await.map_err(|e| self.error(e))?;
                        let snapshot = Arc::new(self.read(&table).await?);
                        *latest = Some((table, snapshot.clone()));
                        Ok(snapshot)
                    }
                }
            }
            AsOf::Version(v) => {
                let table = self
                    .builder()?
                    .with_version(u64::try_from(*v).map_err(|_| {
                        QueryError::new(ErrorKind::InvalidValue, "a Delta version is 0 or more")
                    })?)
                    .load()
                    .await
                    .map_err(|e| self.error(e))?;
                Ok(Arc::new(self.read(&table).await?))
            }
            AsOf::Timestamp(t) => {
                let text = if t.len() == 10 {
                    format!("{t}T00:00:00Z")
                } else {
                    t.replace(' ', "T")
                };
                let text = if text.ends_with('Z') || text[10..].contains(['+', '-']) {
                    text
                } else {
                    format!("{text}Z")
                };
                let builder = self.builder()?.with_datestring(&text).map_err(|_| {
                    QueryError::new(
                        ErrorKind::InvalidText,
                        format!("TIMESTAMP AS OF {t:?} is not a timestamp (use 'YYYY-MM-DD HH:MM:SS' or RFC 3339)"),
                    )
                })?;
                let table = builder.load().await.map_err(|e| self.error(e))?;
                Ok(Arc::new(self.read(&table).await?))
            }
        }
    }

    /// The files, schema and version of a loaded table.
    async fn read(&self, table: &DeltaTable) -> Result<DeltaSnapshot, QueryError> {
        let state = table.snapshot().map_err(|e| self.error(e))?;
        let features = state
            .protocol()
            .reader_features()
            .unwrap_or_default()
            .iter()
            .map(|f| format!("{f:?}").to_ascii_lowercase())
            .collect::<Vec<_>>();
        let not_read = |what: &str| {
            QueryError::new(
                ErrorKind::NotSupported,
                format!(
                    "table {} uses {what}, which sluice does not read yet",
                    self.name
                ),
            )
        };
        if features.iter().any(|f| f.contains("deletionvector")) {
            return Err(not_read("deletion vectors"));
        }
        if features.iter().any(|f| f.contains("columnmapping"))
            || state
                .table_config()
                .column_mapping_mode
                .is_some_and(|m| !format!("{m:?}").eq_ignore_ascii_case("none"))
        {
            return Err(not_read("column mapping"));
        }
        let logical = state.snapshot().arrow_schema();
        let files: Vec<_> = table
            .get_active_add_actions_by_partitions(&[])
            .try_collect()
            .await
            .map_err(|e| self.error(e))?;
        let mut partition_names: Vec<String> = files
            .first()
            .map(|f| f.partition_values_map().into_keys().collect())
            .unwrap_or_default();
        // In the table's order.
        partition_names.sort_by_key(|n| logical.index_of(n).unwrap_or(usize::MAX));
        let file_fields: Vec<Arc<Field>> = logical
            .fields()
            .iter()
            .filter(|f| !partition_names.contains(f.name()))
            .cloned()
            .collect();
        let partition_fields: Vec<Arc<Field>> = partition_names
            .iter()
            .filter_map(|n| logical.field_with_name(n).ok())
            .map(|f| Arc::new(f.clone()))
            .collect();
        let file_schema = Arc::new(Schema::new(file_fields.clone()));
        let mut all = file_fields;
        all.extend(partition_fields.iter().cloned());
        let schema = Arc::new(Schema::new(all));

        let prefix = self.url.prefix().clone();
        let mut scan_files = Vec::with_capacity(files.len());
        for file in &files {
            let relative = file.object_store_path();
            let path: object_store::path::Path = prefix.parts().chain(relative.parts()).collect();
            let values = file.partition_values_map();
            let partition_values = partition_fields
                .iter()
                .map(|field| match values.get(field.name()).cloned().flatten() {
                    Some(text) => ScalarValue::try_from_string(text, field.data_type()),
                    None => ScalarValue::try_from(field.data_type()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(QueryError::from)?;
            let mut scan_file = PartitionedFile::new(path.to_string(), file.size().max(0) as u64)
                .with_partition_values(partition_values);
            scan_file.object_meta.last_modified = file.modification_datetime().unwrap_or_default();
            scan_files.push(scan_file);
        }
        Ok(DeltaSnapshot {
            version: table.version().unwrap_or(0) as i64,
            url: self.url.clone(),
            schema,
            file_schema,
            partition_fields,
            files: scan_files,
        })
    }
}

fn delta_error(name: &str, e: DeltaTableError) -> QueryError {
    let (kind, cause) = match &e {
        DeltaTableError::ObjectStore { source } => {
            (ErrorKind::DataUnreadable, crate::storage::describe(source))
        }
        DeltaTableError::NotATable(_) => (
            ErrorKind::DataUnreadable,
            "no Delta table there (no readable _delta_log)".to_string(),
        ),
        DeltaTableError::InvalidVersion(v) => {
            (ErrorKind::InvalidValue, format!("it has no version {v}"))
        }
        _ => {
            let text = crate::storage::scrub(&e.to_string(), &[]);
            let kind = if text.contains("version") || text.contains("timestamp") {
                ErrorKind::InvalidValue
            } else {
                ErrorKind::DataUnreadable
            };
            (kind, text)
        }
    };
    QueryError::new(kind, format!("Delta table {name}: {cause}"))
}

/// One commit of a Delta table, as DESCRIBE HISTORY lists it (from its `commitInfo`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    pub version: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub operation: Option<String>,
    /// Each value as text (JSON values other than strings as their JSON).
    pub operation_parameters: Vec<(String, String)>,
    pub read_version: Option<i64>,
    pub isolation_level: Option<String>,
    pub is_blind_append: Option<bool>,
    pub operation_metrics: Vec<(String, String)>,
    pub user_metadata: Option<String>,
    pub engine_info: Option<String>,
}

/// The longest commit file DESCRIBE HISTORY reads (a commit lists every file it added:
/// a commit past this is reported by version only).
const MAX_COMMIT_FILE: usize = 16 << 20;

impl Commit {
    /// The `commitInfo` action of one commit file's text (one JSON action per line).
    fn read(version: i64, log: &str) -> Self {
        let mut commit = Commit {
            version,
            ..Default::default()
        };
        let Some(info) = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|mut action| action.get_mut("commitInfo").map(serde_json::Value::take))
        else {
            return commit;
        };
        let text = |key: &str| match info.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let pairs = |key: &str| -> Vec<(String, String)> {
            let Some(serde_json::Value::Object(map)) = info.get(key) else {
                return Vec::new();
            };
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        commit.timestamp = info.get("timestamp").and_then(serde_json::Value::as_i64);
        commit.user_id = text("userId");
        commit.user_name = text("userName");
        commit.operation = text("operation");
        commit.operation_parameters = pairs("operationParameters");
        commit.read_version = info.get("readVersion").and_then(serde_json::Value::as_i64);
        commit.isolation_level = text("isolationLevel");
        commit.is_blind_append = info
            .get("isBlindAppend")
            .and_then(serde_json::Value::as_bool);
        commit.operation_metrics = pairs("operationMetrics");
        commit.user_metadata = text("userMetadata");
        commit.engine_info = text("engineInfo");
        commit
    }
}

/// One snapshot of a Delta table: its version, schema and files.
#[derive(Debug)]
pub struct DeltaSnapshot {
    pub version: i64,
    url: ListingTableUrl,
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<Arc<Field>>,
    files: Vec<PartitionedFile>,
}

impl DeltaSnapshot {
    /// What the result cache keys on: the table and its version.
    pub fn cache_version(&self) -> String {
        format!("delta:{}@{}", self.url.as_str(), self.version)
    }
}

/// A Delta table as a statement reads it. Planned against the newest snapshot, it reads the
/// newest snapshot again when it runs and when the result cache asks for its version, so a
/// plan kept for reuse (a prepared statement, the plan memo) never answers from an old one.
/// `VERSION AS OF` / `TIMESTAMP AS OF` read the snapshot they name, always.
#[derive(Debug)]
pub struct DeltaTableProvider {
    source: Arc<DeltaSource>,
    /// The snapshot of a time-travel reference.
    pinned: Option<Arc<DeltaSnapshot>>,
    schema: SchemaRef,
}

impl DeltaTableProvider {
    pub async fn new(source: Arc<DeltaSource>, as_of: &AsOf) -> Result<Self, QueryError> {
        let snapshot = match as_of {
            AsOf::Latest => source.cached_latest().await?,
            _ => source.snapshot(as_of).await?,
        };
        Ok(Self {
            schema: snapshot.schema.clone(),
            pinned: (*as_of != AsOf::Latest).then_some(snapshot),
            source,
        })
    }

    /// The snapshot a statement reads now.
    async fn current(&self) -> Result<Arc<DeltaSnapshot>, QueryError> {
        let snapshot = match &self.pinned {
            Some(snapshot) => snapshot.clone(),
            None => self.source.snapshot(&AsOf::Latest).await?,
        };
        if snapshot.schema != self.schema {
            return Err(QueryError::new(
                ErrorKind::InvalidValue,
                format!(
                    "the schema of Delta table {} changed since this statement was planned; prepare it again",
                    self.source.name
                ),
            ));
        }
        Ok(snapshot)
    }

    /// The table's commits, newest first, at most `limit`: each version's `commitInfo`
    /// from its log file. Versions whose log files are gone (cleaned up after a
    /// checkpoint, as Delta's log retention does) end the list.
    pub async fn history(&self, limit: usize) -> Result<Vec<Commit>, QueryError> {
        let latest = self.source.snapshot(&AsOf::Latest).await?.version;
        let log = self.source.url.prefix().clone().join("_delta_log");
        let mut commits = Vec::new();
        for version in (0..=latest).rev().take(limit) {
            let path = log.clone().join(format!("{version:020}.json").as_str());
            let object = match self.source.store.get(&path).await {
                Ok(object) => object,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => {
                    return Err(self
                        .source
                        .error(DeltaTableError::ObjectStore { source: e }))
                }
            };
            let text = if object.meta.size > MAX_COMMIT_FILE as u64 {
                String::new()
            } else {
                let bytes = object.bytes().await.map_err(|e| {
                    self.source
                        .error(DeltaTableError::ObjectStore { source: e })
                })?;
                String::from_utf8_lossy(&bytes).into_owned()
            };
            commits.push(Commit::read(version, &text));
        }
        Ok(commits)
    }

    /// The result cache's table version: the Delta version read now.
    pub async fn cache_version(&self) -> Result<String, QueryError> {
        Ok(self.current().await?.cache_version())
    }

    /// What the plan fingerprint holds of the table: where it is and which snapshot (the
    /// newest, or a pinned version).
    pub fn identity(&self) -> String {
        match &self.pinned {
            Some(s) => s.cache_version(),
            None => format!("delta:{}@latest", self.source.url.as_str()),
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for DeltaTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Kept above the scan; the physical optimizer pushes them into the Parquet reader
        // (row groups and pages skipped by statistics).
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self
            .current()
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        if snapshot.files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let groups = state
            .config()
            .target_partitions()
            .max(1)
            .min(snapshot.files.len());
        let mut file_groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
        for (i, file) in snapshot.files.iter().enumerate() {
            file_groups[i % groups].push(file.clone());
        }
        let table_schema = TableSchema::builder(snapshot.file_schema.clone())
            .with_table_partition_cols(snapshot.partition_fields.clone())
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let config = FileScanConfigBuilder::new(snapshot.url.object_store(), source)
            .with_file_groups(file_groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

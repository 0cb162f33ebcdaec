//! Configuration: command-line flags, `SLUICE_*` environment variables and an optional
//! TOML file, resolved once at start-up with precedence flag > env > file > default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use planner::TableDef;
use serde::Deserialize;

/// Flags of `sluice serve`. Every flag also reads an environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (see sluice.example.toml).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// PostgreSQL wire listener [default: 127.0.0.1:5433]. Port 0 picks a free port.
    #[arg(long, env = "SLUICE_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,
    /// Arrow Flight SQL listener [default: 127.0.0.1:50051]. Port 0 picks a free port.
    #[arg(long, env = "SLUICE_FLIGHT_ADDR")]
    pub flight_addr: Option<SocketAddr>,
    /// HTTP listener (/healthz) [default: 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long, env = "SLUICE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Where sluice keeps its state: demo data, dev token, endpoints.json [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Worker processes of the default warehouse, a fixed pool [default: 1 to 4, autoscaled].
    #[arg(long, env = "SLUICE_WORKERS")]
    pub workers: Option<usize>,
    /// Scale factor of the TPC-H demo tables [default: 0.1].
    #[arg(long, env = "SLUICE_DEMO_SCALE")]
    pub demo_scale: Option<f64>,
    /// Do not create the TPC-H demo schema.
    #[arg(long, env = "SLUICE_NO_DEMO")]
    pub no_demo: bool,
    /// Log format [default: human].
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_parser = ["human", "json"])]
    pub log_format: Option<String>,
    /// Trusted OIDC issuer of access tokens (repeatable), e.g.
    /// https://login.microsoftonline.com/<tenant-id>/v2.0 (its v1 form is accepted too).
    #[arg(
        long = "oidc-issuer",
        env = "SLUICE_OIDC_ISSUER",
        value_delimiter = ','
    )]
    pub oidc_issuers: Vec<String>,
    /// Accepted token audience (repeatable): the App ID URI and/or the client id.
    #[arg(
        long = "oidc-audience",
        env = "SLUICE_OIDC_AUDIENCE",
        value_delimiter = ','
    )]
    pub oidc_audiences: Vec<String>,
    /// TLS certificate chain (PEM) for every listener.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for every listener.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed certificate kept in the data dir (local use).
    #[arg(long, env = "SLUICE_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Accept tokens over plain TCP on a listener that is not loopback-only (unsafe).
    #[arg(long, env = "SLUICE_ALLOW_INSECURE_PASSWORD")]
    pub allow_insecure_password: bool,
}

/// The config file. Unknown keys are errors that name the key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `catalog`: the one catalog's name as clients see it (`sluice` unless set).
    pub catalog: Option<String>,
    pub pg_addr: Option<SocketAddr>,
    pub flight_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub demo: Option<bool>,
    pub demo_scale: Option<f64>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableDef>,
    #[serde(default)]
    pub warehouses: BTreeMap<String, WarehouseFile>,
    /// `[[routing]]`: which warehouse a principal's sessions use by default.
    #[serde(default)]
    pub routing: Vec<gateway::warehouses::Route>,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default)]
    pub tls: TlsFile,
    /// `[[grants]]`: who may SELECT which tables.
    #[serde(default)]
    pub grants: Vec<auth::Grant>,
    /// `[hs2]`: the HiveServer2 endpoint of the Databricks drivers.
    #[serde(default)]
    pub hs2: Hs2File,
    /// `[cache]`: the result cache.
    #[serde(default)]
    pub cache: CacheFile,
    /// `[metadata]`: where history (and, later, the managed catalog) persists.
    #[serde(default)]
    pub metadata: MetadataFile,
    /// `[history]`: the query history.
    #[serde(default)]
    pub history: HistoryFile,
    /// `[metrics]`: Prometheus metrics at /metrics.
    #[serde(default)]
    pub metrics: MetricsFile,
    /// `[shutdown]`: how SIGTERM drains.
    #[serde(default)]
    pub shutdown: ShutdownFile,
    /// `[storage]`: how tables on object storage are reached.
    #[serde(default)]
    pub storage: StorageFile,
    /// `[limits]`: what one statement, principal or connection may hold.
    #[serde(default)]
    pub limits: LimitsFile,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_statement_size: Option<String>,
    pub max_expression_depth: Option<usize>,
    pub max_expression_nodes: Option<usize>,
    pub gateway_query_memory: Option<String>,
    pub gateway_query_timeout: Option<String>,
    pub max_prepared_statements: Option<usize>,
    pub max_sessions: Option<usize>,
    pub max_operations: Option<usize>,
    pub max_cursors: Option<usize>,
    pub cursor_idle_timeout: Option<String>,
    pub max_stored_results_size: Option<String>,
    pub http_header_timeout: Option<String>,
    pub max_http_connections: Option<usize>,
    pub max_kept_plans: Option<usize>,
}

fn resolve_limits(file: &LimitsFile) -> Result<gateway::limits::Limits, String> {
    let mut limits = gateway::limits::Limits::default();
    let positive = |value: Option<usize>, key: &str, into: &mut usize| -> Result<(), String> {
        match value {
            Some(0) => Err(format!("limits.{key} must be more than 0")),
            Some(v) => {
                *into = v;
                Ok(())
            }
            None => Ok(()),
        }
    };
    let bytes = |value: &Option<String>, key: &str| -> Result<Option<u64>, String> {
        match value.as_deref().map(parse_bytes).transpose() {
            Ok(Some(0)) => Err(format!("limits.{key} must be more than 0")),
            Ok(v) => Ok(v),
            Err(e) => Err(format!("limits.{key}: {e}")),
        }
    };
    let duration = |value: &Option<String>, key: &str| -> Result<Option<Duration>, String> {
        match value.as_deref().map(parse_duration).transpose() {
            Ok(Some(d)) if d.is_zero() => Err(format!("limits.{key} must be more than 0")),
            Ok(v) => Ok(v),
            Err(e) => Err(format!("limits.{key}: {e}")),
        }
    };
    if let Some(v) = bytes(&file.max_statement_size, "max_statement_size")? {
        limits.statement.max_statement_bytes = v as usize;
    }
    positive(
        file.max_expression_depth,
        "max_expression_depth",
        &mut limits.statement.max_expression_depth,
    )?;
    // Deeper than the threads' stacks can plan would crash the process instead.
    if limits.statement.max_expression_depth > 10_000 {
        return Err("limits.max_expression_depth: at most 10000".into());
    }
    positive(
        file.max_expression_nodes,
        "max_expression_nodes",
        &mut limits.statement.max_expression_nodes,
    )?;
    if let Some(v) = bytes(&file.gateway_query_memory, "gateway_query_memory")? {
        limits.statement.local_memory = v;
    }
    if let Some(v) = duration(&file.gateway_query_timeout, "gateway_query_timeout")? {
        limits.gateway_query_timeout = v;
    }
    positive(
        file.max_prepared_statements,
        "max_prepared_statements",
        &mut limits.max_prepared_statements,
    )?;
    positive(file.max_sessions, "max_sessions", &mut limits.max_sessions)?;
    positive(
        file.max_operations,
        "max_operations",
        &mut limits.max_operations,
    )?;
    positive(file.max_cursors, "max_cursors", &mut limits.max_cursors)?;
    positive(
        file.max_kept_plans,
        "max_kept_plans",
        &mut limits.max_kept_plans,
    )?;
    if let Some(v) = duration(&file.cursor_idle_timeout, "cursor_idle_timeout")? {
        limits.cursor_idle_timeout = v;
    }
    if let Some(v) = bytes(&file.max_stored_results_size, "max_stored_results_size")? {
        limits.max_stored_result_bytes = v;
    }
    if let Some(v) = duration(&file.http_header_timeout, "http_header_timeout")? {
        limits.http_header_timeout = v;
    }
    positive(
        file.max_http_connections,
        "max_http_connections",
        &mut limits.max_http_connections,
    )?;
    Ok(limits)
}

/// `[storage]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// `[storage.azure]`: object_store's Azure options (strings, booleans or numbers).
    #[serde(default)]
    pub azure: BTreeMap<String, toml::Value>,
    /// Largest size of each local worker's cache of remote Parquet bytes ("0": none).
    pub data_cache_size: Option<String>,
    /// Where the local workers keep it (default: `data-cache` in the data dir).
    pub data_cache_dir: Option<PathBuf>,
    /// Local directories and object store URL prefixes where `CREATE EXTERNAL TABLE` may
    /// point (none: it is refused).
    #[serde(default)]
    pub allowed_locations: Vec<String>,
}

/// Default size of each local worker's data cache.
const DATA_CACHE_SIZE: u64 = 2 << 30;

fn resolve_data_cache(
    file: &StorageFile,
    data_dir: &Path,
    base: &Path,
) -> Result<Option<workers::data_cache::DataCacheConfig>, String> {
    let capacity = match &file.data_cache_size {
        Some(v) => parse_bytes(v).map_err(|e| format!("storage.data_cache_size: {e}"))?,
        None => DATA_CACHE_SIZE,
    };
    let dir = match &file.data_cache_dir {
        Some(dir) if dir.is_relative() => base.join(dir),
        Some(dir) => dir.clone(),
        None => data_dir.join("data-cache"),
    };
    Ok((capacity > 0).then_some(workers::data_cache::DataCacheConfig { dir, capacity }))
}

fn resolve_storage(file: &StorageFile) -> Result<planner::storage::StorageOptions, String> {
    let mut options = planner::storage::StorageOptions::default();
    for (key, value) in &file.azure {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Integer(i) => i.to_string(),
            _ => {
                return Err(format!(
                    "[storage.azure] {key}: use a string, boolean or number"
                ))
            }
        };
        options.azure.insert(key.clone(), text);
    }
    options.validate()?;
    Ok(options)
}

/// `[metadata]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataFile {
    /// `postgres://user:password@host:port/db`: a PostgreSQL store several gateways share.
    /// Unset: an embedded store in the data dir. Also `SLUICE_METADATA_URL`.
    pub url: Option<String>,
}

/// `[history]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFile {
    /// Keep a record of every statement (default true).
    pub enabled: Option<bool>,
    /// Records older than this are removed, e.g. "30d".
    pub retention: Option<String>,
    /// At most this many records are kept (default 1000000).
    pub max_records: Option<usize>,
    /// At most this many query profiles are kept (default 10000).
    pub max_profiles: Option<usize>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// Serve and count metrics (default true).
    pub enabled: Option<bool>,
    /// Record series over time for the admin page's charts (default true).
    pub series: Option<bool>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownFile {
    /// How long SIGTERM lets running statements finish before cancelling them, e.g. "30s".
    pub drain_timeout: Option<String>,
}

/// `[cache]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// Whether results are cached at all (default true).
    pub enabled: Option<bool>,
    /// Memory the kept results may take, e.g. "1GiB".
    pub memory_budget: Option<String>,
    /// Results larger than this stream through without being kept, e.g. "16MiB".
    pub max_entry_size: Option<String>,
    /// How long an entry is served, e.g. "24h".
    pub ttl: Option<String>,
    /// How old a table's file listing may be when a lookup relies on it, e.g. "1s".
    pub metadata_refresh: Option<String>,
    /// A directory (or object store URL) where entries are also kept, surviving restarts
    /// and shared by gateways that point at the same place.
    pub persistent: Option<String>,
}

/// `[hs2]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hs2File {
    /// Largest Thrift request body, e.g. "16MiB".
    pub max_request_size: Option<String>,
    /// Results larger than this are downloaded by link (CloudFetch), e.g. "16MiB".
    pub cloud_fetch_threshold: Option<String>,
    /// Size of one downloadable chunk, e.g. "16MiB".
    pub cloud_fetch_chunk_size: Option<String>,
    /// How long a download link stays valid, e.g. "15m".
    pub link_ttl: Option<String>,
    /// A session nobody used for this long is closed, e.g. "1h".
    pub session_idle_timeout: Option<String>,
    /// An operation nobody read for this long is closed (its query stops), e.g. "10m".
    pub operation_idle_timeout: Option<String>,
    /// How long GetOperationStatus waits for a running statement to change, e.g. "500ms".
    pub status_poll_wait: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    #[serde(default)]
    pub oidc_issuers: Vec<String>,
    #[serde(default)]
    pub oidc_audiences: Vec<String>,
    /// A token must carry one of these roles or scopes.
    #[serde(default)]
    pub required_roles: Vec<String>,
    /// How often signing keys are refreshed, e.g. "1h".
    pub jwks_refresh: Option<String>,
    /// Least time between refetches caused by unknown key ids, e.g. "10s".
    pub jwks_min_refetch: Option<String>,
    /// Create and accept the development token (default true).
    pub dev_token: Option<bool>,
    pub allow_insecure_password: Option<bool>,
    /// `[[auth.tokens]]`: static service tokens, stored as SHA-256 hashes.
    #[serde(default)]
    pub tokens: Vec<TokenFile>,
}

/// `[[auth.tokens]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub name: String,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed: Option<bool>,
}

/// `[warehouses.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseFile {
    /// A fixed pool: `min_workers = max_workers = workers`.
    pub workers: Option<usize>,
    pub min_workers: Option<usize>,
    pub max_workers: Option<usize>,
    pub max_concurrency_per_worker: Option<usize>,
    pub max_queued: Option<usize>,
    /// e.g. "30s", "5m".
    pub queue_timeout: Option<String>,
    /// Idle time after which workers above min_workers stop, e.g. "10m"; "0" never.
    pub auto_stop: Option<String>,
    /// Most workers starting at once.
    pub max_starting_workers: Option<usize>,
    /// e.g. "2GiB", "512MB".
    pub worker_memory_limit: Option<String>,
    /// Default `statement_timeout` of the warehouse's sessions, e.g. "15m".
    pub statement_timeout: Option<String>,
    /// "local" (child processes, the default) or "static" (`worker_addrs`).
    pub launcher: Option<String>,
    /// Static workers: `host:port` of each `sluice worker --listen`.
    #[serde(default)]
    pub worker_addrs: Vec<String>,
    /// Static workers: the secret they were started with (or SLUICE_WORKER_SECRET).
    pub worker_secret: Option<String>,
    /// Static workers over TLS: the CA their certificates are checked against…
    pub worker_tls_ca: Option<PathBuf>,
    /// …the name those certificates carry (default: each address's host)…
    pub worker_tls_domain: Option<String>,
    /// …and a client certificate and key for mutual TLS.
    pub worker_tls_cert: Option<PathBuf>,
    pub worker_tls_key: Option<PathBuf>,
    /// "auto" (the default), "off" or "always": whether one query spreads over several
    /// of the warehouse's workers.
    pub distributed: Option<String>,
    /// With `distributed = "auto"`: the bytes of files a query must scan to be spread,
    /// e.g. "1GiB".
    pub min_distributed_bytes: Option<String>,
    /// Queries that scan at most this many bytes of files (a dimension table, a point
    /// lookup) run in the gateway, without a round trip to a worker; "0": never.
    pub small_query_bytes: Option<String>,
}

/// The input size above which `distributed = "auto"` spreads a query: below it, the
/// stages' start-up (a plan sent to each task, a stream between each pair of stages)
/// costs more than the second core saves.
pub const DEFAULT_MIN_DISTRIBUTED_BYTES: u64 = 512 * 1024 * 1024;

/// The input size up to which a query runs in the gateway: a worker's round trip (a plan
/// encoded, sent, decoded; a stream back) costs more than scanning this much here.
pub const DEFAULT_SMALL_QUERY_BYTES: u64 = 256 * 1024;

/// Everything resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The one catalog's name (`catalog`; fixed for the process: a change needs a restart).
    pub catalog: String,
    pub pg_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub demo_scale: Option<f64>,
    pub tables: Vec<TableDef>,
    /// Every warehouse, `default` first.
    /// Each warehouse as its pool takes it; local ones get the worker command from the
    /// server (`WarehouseConfig::with_local_workers`).
    pub warehouses: Vec<workers::WarehouseConfig>,
    pub routing: Vec<gateway::warehouses::Route>,
    pub log_json: bool,
    pub auth: AuthSettings,
    pub tls: Option<TlsSource>,
    pub hs2: databricks::hs2::Hs2Config,
    pub cache: gateway::cache::CacheConfig,
    /// PostgreSQL URL of the metadata store (None: embedded).
    pub metadata_url: Option<String>,
    pub history: gateway::history::HistoryConfig,
    pub metrics: bool,
    /// Series over time for the admin page (`[metrics] series`).
    pub series: bool,
    pub drain_timeout: Duration,
    /// `[storage]`: object storage options (Azure), for the gateway and its workers.
    pub storage: planner::storage::StorageOptions,
    /// `[limits]`.
    pub limits: gateway::limits::Limits,
    /// `[storage] allowed_locations`, as written (relative ones are relative to
    /// [`Settings::config_dir`]).
    pub allowed_locations: Vec<String>,
    /// The config file's directory (kept out of reach of SQL, like the data dir).
    pub config_dir: Option<PathBuf>,
    /// `[storage] data_cache_*`: the local workers' cache of remote Parquet bytes (None: off).
    pub data_cache: Option<workers::data_cache::DataCacheConfig>,
}

/// Who may connect and what they may read.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub oidc: auth::OidcSettings,
    pub dev_token: bool,
    pub allow_insecure_password: bool,
    pub tokens: Vec<auth::StaticToken>,
    pub grants: Arc<auth::Grants>,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generated once and kept in the data dir.
    SelfSigned,
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let demo = !args.no_demo && file.demo.unwrap_or(true);
        let demo_scale = args.demo_scale.or(file.demo_scale).unwrap_or(0.1);
        let log_format = args
            .log_format
            .clone()
            .or(file.log_format)
            .unwrap_or_else(|| "human".into());
        if !matches!(log_format.as_str(), "human" | "json") {
            return Err(format!(
                "log_format must be \"human\" or \"json\", not {log_format:?}"
            ));
        }
        // Relative table locations are relative to the config file.
        let base = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let tables = file
            .tables
            .into_iter()
            .map(|mut t| {
                if !planner::storage::is_url(&t.location) && Path::new(&t.location).is_relative() {
                    t.location = base.join(&t.location).to_string_lossy().into_owned();
                }
                t
            })
            .collect();
        let warehouses = resolve_warehouses(args, &file.warehouses, &base)?;
        for (i, route) in file.routing.iter().enumerate() {
            if !warehouses.iter().any(|w| w.name == route.warehouse) {
                return Err(format!(
                    "routing[{i}]: warehouse {:?} is not configured",
                    route.warehouse
                ));
            }
            if route.principals.is_empty() && route.roles.is_empty() && route.groups.is_empty() {
                return Err(format!("routing[{i}]: name principals, roles or groups"));
            }
            for name in &route.principals {
                auth::check_principal_name(name).map_err(|e| format!("routing[{i}]: {e}"))?;
            }
        }
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| "sluice-data".into());
        let catalog = file
            .catalog
            .clone()
            .unwrap_or_else(|| planner::DEFAULT_CATALOG.into());
        planner::check_catalog_name(&catalog)?;
        Ok(Self {
            catalog,
            data_cache: resolve_data_cache(&file.storage, &data_dir, &base)?,
            pg_addr: args
                .pg_addr
                .or(file.pg_addr)
                .unwrap_or_else(|| ([127, 0, 0, 1], 5433).into()),
            flight_addr: args
                .flight_addr
                .or(file.flight_addr)
                .unwrap_or_else(|| ([127, 0, 0, 1], 50051).into()),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| ([127, 0, 0, 1], 8080).into()),
            data_dir,
            demo_scale: demo.then_some(demo_scale),
            tables,
            warehouses,
            routing: file.routing.clone(),
            log_json: log_format == "json",
            auth: resolve_auth(args, file.auth, file.grants)?,
            tls: resolve_tls(args, file.tls, &base)?,
            hs2: resolve_hs2(&file.hs2)?,
            cache: resolve_cache(&file.cache, &base)?,
            metadata_url: std::env::var("SLUICE_METADATA_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .or(file.metadata.url.clone()),
            history: resolve_history(&file.history)?,
            metrics: file.metrics.enabled.unwrap_or(true),
            series: file.metrics.series.unwrap_or(true),
            drain_timeout: match &file.shutdown.drain_timeout {
                Some(v) => parse_duration(v).map_err(|e| format!("shutdown.drain_timeout: {e}"))?,
                None => Duration::from_secs(30),
            },
            storage: resolve_storage(&file.storage)?,
            limits: resolve_limits(&file.limits)?,
            allowed_locations: file.storage.allowed_locations.clone(),
            config_dir: args.config.as_deref().map(|_| base.clone()),
        })
    }
}

fn resolve_auth(
    args: &ServeArgs,
    file: AuthFile,
    grants: Vec<auth::Grant>,
) -> Result<AuthSettings, String> {
    let pick = |flag: &Vec<String>, file: Vec<String>| {
        if flag.is_empty() {
            file
        } else {
            flag.clone()
        }
    };
    let duration = |value: Option<String>, key: &str, default: u64| {
        value
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("auth.{key}: {e}"))
            .map(|d| d.unwrap_or(Duration::from_secs(default)))
    };
    let oidc = auth::OidcSettings {
        issuers: pick(&args.oidc_issuers, file.oidc_issuers),
        audiences: pick(&args.oidc_audiences, file.oidc_audiences),
        required_roles: file.required_roles,
        refresh_interval: duration(file.jwks_refresh, "jwks_refresh", 3600)?,
        min_refetch_interval: duration(file.jwks_min_refetch, "jwks_min_refetch", 10)?,
        ..auth::OidcSettings::default()
    };
    if !oidc.issuers.is_empty() && oidc.audiences.is_empty() {
        return Err("--oidc-issuer needs --oidc-audience (the App ID URI or client id tokens are issued for)".into());
    }
    let tokens = file
        .tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let principal = auth::Principal {
                roles: t.roles,
                ..auth::Principal::service(&t.name, &[])
            };
            auth::StaticToken::from_hash_hex(&t.sha256, principal)
                .map_err(|e| format!("auth.tokens[{i}] ({}): {e}", t.name))
        })
        .collect::<Result<_, _>>()?;
    let grants = auth::Grants::new(grants).map_err(|e| e.to_string())?;
    Ok(AuthSettings {
        oidc,
        dev_token: file.dev_token.unwrap_or(true),
        allow_insecure_password: args.allow_insecure_password
            || file.allow_insecure_password.unwrap_or(false),
        tokens,
        grants: Arc::new(grants),
    })
}

/// Every `[warehouses.<name>]`, and `default` when the file does not configure it. The
/// default warehouse keeps one worker and grows to four; others stop when idle.
fn resolve_warehouses(
    args: &ServeArgs,
    files: &BTreeMap<String, WarehouseFile>,
    base: &Path,
) -> Result<Vec<workers::WarehouseConfig>, String> {
    let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
    if !names.contains(&gateway::warehouses::DEFAULT) {
        names.insert(0, gateway::warehouses::DEFAULT);
    }
    names.sort_by_key(|n| *n != gateway::warehouses::DEFAULT);
    let empty = WarehouseFile::default();
    names
        .into_iter()
        .map(|name| {
            let wh = files.get(name).unwrap_or(&empty);
            let key = |k: &str| format!("warehouses.{name}.{k}");
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "[warehouses.{name}]: a warehouse name is letters, digits, - and _"
                ));
            }
            let is_default = name == gateway::warehouses::DEFAULT;
            let fixed = if is_default {
                args.workers.or(wh.workers)
            } else {
                wh.workers
            };
            let (min_default, max_default) = if is_default { (1, 4) } else { (0, 4) };
            let mut min = fixed.or(wh.min_workers).unwrap_or(min_default);
            let mut max = fixed.or(wh.max_workers).unwrap_or(max_default.max(min));
            let launcher = wh
                .launcher
                .as_deref()
                .unwrap_or(if wh.worker_addrs.is_empty() {
                    "local"
                } else {
                    "static"
                });
            let static_addrs = match launcher {
                "local" if wh.worker_addrs.is_empty() => Vec::new(),
                "local" => {
                    return Err(format!(
                        "{}: worker_addrs needs launcher = \"static\"",
                        key("worker_addrs")
                    ))
                }
                "static" if wh.worker_addrs.is_empty() => {
                    return Err(format!(
                        "{}: a static warehouse needs worker_addrs",
                        key("launcher")
                    ))
                }
                "static" => {
                    // A static pool is its addresses.
                    min = wh.worker_addrs.len();
                    max = wh.worker_addrs.len();
                    wh.worker_addrs.clone()
                }
                other => {
                    return Err(format!(
                        "{}: {other:?} is not \"local\" or \"static\"",
                        key("launcher")
                    ))
                }
            };
            if max == 0 || max > 256 {
                return Err(format!(
                    "{}: between 1 and 256, not {max}",
                    key("max_workers")
                ));
            }
            if min > max {
                return Err(format!(
                    "{}: min_workers ({min}) is more than max_workers ({max})",
                    key("min_workers")
                ));
            }
            let secret = match (&wh.worker_secret, static_addrs.is_empty()) {
                (Some(s), _) => Some(s.clone()),
                (None, true) => None,
                (None, false) => {
                    Some(std::env::var(workers::protocol::SECRET_ENV).map_err(|_| {
                        format!(
                            "{}: static workers need the secret they were started with (or {})",
                            key("worker_secret"),
                            workers::protocol::SECRET_ENV
                        )
                    })?)
                }
            };
            let tls = match (&wh.worker_tls_ca, &wh.worker_tls_cert, &wh.worker_tls_key) {
                (None, None, None) => None,
                (Some(ca), cert, key_file) => Some(workers::WorkerTls {
                    ca: base.join(ca),
                    domain: wh.worker_tls_domain.clone(),
                    identity: match (cert, key_file) {
                        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
                        (None, None) => None,
                        _ => {
                            return Err(format!(
                                "{}: needs both worker_tls_cert and worker_tls_key",
                                key("worker_tls_cert")
                            ))
                        }
                    },
                }),
                (None, _, _) => {
                    return Err(format!(
                        "{}: worker TLS needs worker_tls_ca",
                        key("worker_tls_ca")
                    ))
                }
            };
            let duration = |v: &Option<String>, k: &str| -> Result<Option<Duration>, String> {
                v.as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| format!("{}: {e}", key(k)))
            };
            Ok(workers::WarehouseConfig {
                name: name.to_string(),
                min_workers: min,
                max_workers: max,
                max_concurrency_per_worker: wh.max_concurrency_per_worker.unwrap_or(8).max(1),
                max_queued: wh.max_queued.unwrap_or(1000),
                queue_timeout: duration(&wh.queue_timeout, "queue_timeout")?
                    .unwrap_or(Duration::from_secs(300)),
                auto_stop: match duration(&wh.auto_stop, "auto_stop")? {
                    Some(d) if d.is_zero() => None,
                    Some(d) => Some(d),
                    None => Some(Duration::from_secs(600)),
                },
                max_starting: wh.max_starting_workers.unwrap_or(2).max(1),
                worker_memory_limit: wh
                    .worker_memory_limit
                    .as_deref()
                    .map(parse_bytes)
                    .transpose()
                    .map_err(|e| format!("{}: {e}", key("worker_memory_limit")))?,
                statement_timeout: duration(&wh.statement_timeout, "statement_timeout")?
                    .filter(|d| !d.is_zero()),
                launcher: if static_addrs.is_empty() {
                    workers::Launcher::Local(workers::LocalWorkers::default())
                } else {
                    workers::Launcher::Static {
                        addrs: static_addrs,
                    }
                },
                secret,
                tls,
                distributed: match wh.distributed.as_deref() {
                    None => planner::distributed::Mode::Auto,
                    Some(v) => planner::distributed::Mode::parse(v).ok_or_else(|| {
                        format!(
                            "{}: {v:?} is not one of \"auto\", \"off\", \"always\"",
                            key("distributed")
                        )
                    })?,
                },
                min_distributed_bytes: wh
                    .min_distributed_bytes
                    .as_deref()
                    .map(parse_bytes)
                    .transpose()
                    .map_err(|e| format!("{}: {e}", key("min_distributed_bytes")))?
                    .unwrap_or(DEFAULT_MIN_DISTRIBUTED_BYTES),
                small_query_bytes: wh
                    .small_query_bytes
                    .as_deref()
                    .map(parse_bytes)
                    .transpose()
                    .map_err(|e| format!("{}: {e}", key("small_query_bytes")))?
                    .unwrap_or(DEFAULT_SMALL_QUERY_BYTES),
            })
        })
        .collect()
}

fn resolve_cache(file: &CacheFile, base: &Path) -> Result<gateway::cache::CacheConfig, String> {
    let mut config = gateway::cache::CacheConfig::default();
    if let Some(enabled) = file.enabled {
        config.enabled = enabled;
    }
    for (value, key, into) in [
        (
            &file.memory_budget,
            "memory_budget",
            &mut config.memory_budget,
        ),
        (
            &file.max_entry_size,
            "max_entry_size",
            &mut config.max_entry_bytes,
        ),
    ] {
        if let Some(v) = value {
            *into = parse_bytes(v).map_err(|e| format!("cache.{key}: {e}"))?;
        }
    }
    for (value, key, into) in [
        (&file.ttl, "ttl", &mut config.ttl),
        (
            &file.metadata_refresh,
            "metadata_refresh",
            &mut config.metadata_refresh,
        ),
    ] {
        if let Some(v) = value {
            *into = parse_duration(v).map_err(|e| format!("cache.{key}: {e}"))?;
        }
    }
    if config.max_entry_bytes > config.memory_budget {
        return Err(format!(
            "cache.max_entry_size ({} bytes) is larger than cache.memory_budget ({} bytes)",
            config.max_entry_bytes, config.memory_budget
        ));
    }
    config.persistent = file.persistent.as_ref().map(|location| {
        if location.contains("://") || Path::new(location).is_absolute() {
            location.clone()
        } else {
            base.join(location).to_string_lossy().into_owned()
        }
    });
    Ok(config)
}

fn resolve_history(file: &HistoryFile) -> Result<gateway::history::HistoryConfig, String> {
    let mut config = gateway::history::HistoryConfig::default();
    if let Some(enabled) = file.enabled {
        config.enabled = enabled;
    }
    if let Some(v) = &file.retention {
        config.retention = parse_duration(v).map_err(|e| format!("history.retention: {e}"))?;
    }
    if let Some(n) = file.max_records {
        if n == 0 {
            return Err(
                "history.max_records must be at least 1 (to keep none, set enabled = false)".into(),
            );
        }
        config.max_records = n;
    }
    if let Some(n) = file.max_profiles {
        config.max_profiles = n;
    }
    Ok(config)
}

fn resolve_hs2(file: &Hs2File) -> Result<databricks::hs2::Hs2Config, String> {
    let mut config = databricks::hs2::Hs2Config::default();
    let size = |value: &Option<String>, key: &str, into: &mut usize| -> Result<(), String> {
        if let Some(v) = value {
            *into = parse_bytes(v).map_err(|e| format!("hs2.{key}: {e}"))? as usize;
            if *into == 0 {
                return Err(format!("hs2.{key} must be more than 0"));
            }
        }
        Ok(())
    };
    let duration = |value: &Option<String>, key: &str, into: &mut Duration| -> Result<(), String> {
        if let Some(v) = value {
            *into = parse_duration(v).map_err(|e| format!("hs2.{key}: {e}"))?;
        }
        Ok(())
    };
    size(
        &file.max_request_size,
        "max_request_size",
        &mut config.max_request_bytes,
    )?;
    size(
        &file.cloud_fetch_threshold,
        "cloud_fetch_threshold",
        &mut config.cloud_fetch_threshold,
    )?;
    size(
        &file.cloud_fetch_chunk_size,
        "cloud_fetch_chunk_size",
        &mut config.spool.chunk_bytes,
    )?;
    duration(&file.link_ttl, "link_ttl", &mut config.spool.link_ttl)?;
    duration(
        &file.session_idle_timeout,
        "session_idle_timeout",
        &mut config.session_idle,
    )?;
    duration(
        &file.operation_idle_timeout,
        "operation_idle_timeout",
        &mut config.operation_idle,
    )?;
    Ok(config)
}

fn resolve_tls(args: &ServeArgs, file: TlsFile, base: &Path) -> Result<Option<TlsSource>, String> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        }));
    }
    if args.tls_self_signed {
        return Ok(Some(TlsSource::SelfSigned));
    }
    match (file.cert, file.key, file.self_signed.unwrap_or(false)) {
        (Some(cert), Some(key), false) => Ok(Some(TlsSource::Files {
            cert: base.join(cert),
            key: base.join(key),
        })),
        (None, None, true) => Ok(Some(TlsSource::SelfSigned)),
        (None, None, false) => Ok(None),
        (Some(_), None, _) | (None, Some(_), _) => Err("[tls] needs both cert and key".into()),
        (Some(_), Some(_), true) => {
            Err("[tls]: cert/key and self_signed exclude each other".into())
        }
    }
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

/// "500ms", "30s", "5m", "2h", or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\" or \"5m\""))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// "512MB", "2GiB", "1024" (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"2GiB\""))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" | "k" => 1024.0,
        "mb" => 1e6,
        "mib" | "m" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    Ok((value * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_bytes("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("512MB"), Ok(512_000_000));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("pg_adress = \"127.0.0.1:1\"")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("pg_adress"), "{err}");
        let err = toml::from_str::<FileConfig>("[warehouses.default]\nworkerz = 1")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("workerz"), "{err}");
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "pg_addr = \"127.0.0.1:7000\"\nhttp_addr = \"127.0.0.1:7001\"\n[warehouses.default]\nworkers = 3\n").expect("write");
        let args = ServeArgs {
            config: Some(path),
            pg_addr: Some("127.0.0.1:9000".parse().expect("addr")),
            ..Default::default()
        };
        let s = Settings::resolve(&args).expect("resolves");
        assert_eq!(s.pg_addr.port(), 9000); // flag (or env, which clap folds into the flag)
        assert_eq!(s.http_addr.port(), 7001); // file
        assert_eq!(s.warehouses[0].name, "default");
        assert_eq!(
            (s.warehouses[0].min_workers, s.warehouses[0].max_workers),
            (3, 3)
        ); // file
        assert_eq!(s.data_dir, PathBuf::from("sluice-data")); // default
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sluice.example.toml");
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let s = Settings::resolve(&args).expect("the example config is valid");
        assert!(!s.tables.is_empty());
        assert!(s
            .tables
            .iter()
            .any(|t| t.format == planner::TableFormat::Csv));
        // A token whose hash is in a public file is no secret: the example ships none.
        assert!(s.auth.tokens.is_empty());
        assert_eq!(s.limits, gateway::limits::Limits::default());
        let etl = auth::Principal::service("etl", &["Warehouse.Read"]);
        let table = |schema: &str, table: &str| auth::TableName {
            catalog: "sluice".into(),
            schema: schema.into(),
            table: table.into(),
        };
        assert!(s.auth.grants.allows(&etl, &table("mobility", "trips")));
        assert!(!s.auth.grants.allows(&etl, &table("tpch", "orders")));
        assert_eq!(s.tls, None);
        let ops = auth::Principal::service("ops", &["Warehouse.Monitor"]);
        assert!(s.auth.grants.has_privilege(&ops, auth::MONITOR));
        assert!(!s.auth.grants.has_privilege(&etl, auth::MONITOR));
        assert_eq!(s.history, gateway::history::HistoryConfig::default());
        assert_eq!(s.drain_timeout, Duration::from_secs(30));
        assert!(s.metrics && s.metadata_url.is_none());
    }

    #[test]
    fn history_and_shutdown_sections() {
        let resolve = |text: &str| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).expect("write");
            Settings::resolve(&ServeArgs {
                config: Some(path),
                ..Default::default()
            })
        };
        let s = resolve(
            "[history]\nretention = \"7d\"\nmax_records = 10\n[shutdown]\ndrain_timeout = \"5s\"\n\
             [metrics]\nenabled = false\nseries = false\n[metadata]\nurl = \"postgres://u@h/db\"\n",
        )
        .expect("resolves");
        assert_eq!(s.history.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(s.history.max_records, 10);
        assert_eq!(s.drain_timeout, Duration::from_secs(5));
        assert!(!s.metrics && !s.series);
        assert_eq!(s.history.max_profiles, 10_000);
        assert_eq!(s.metadata_url.as_deref(), Some("postgres://u@h/db"));
        let err = resolve("[history]\nmax_records = 0\n").expect_err("zero records");
        assert!(err.contains("history.max_records"), "{err}");
        let err = resolve("[shutdown]\ndrain_timeout = \"later\"\n").expect_err("bad duration");
        assert!(err.contains("shutdown.drain_timeout"), "{err}");
        let err = resolve("[[grants]]\nroles = [\"r\"]\nprivileges = [\"ROOT\"]\n")
            .expect_err("privilege");
        assert!(err.contains("ROOT"), "{err}");
    }

    #[test]
    fn cache_settings_resolve_and_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(&ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let defaults = resolve("").expect("no [cache]").cache;
        assert_eq!(defaults, gateway::cache::CacheConfig::default());
        assert!(defaults.enabled && defaults.persistent.is_none());
        let c = resolve(
            "[cache]\nmemory_budget = \"2MiB\"\nmax_entry_size = \"1MiB\"\nttl = \"1h\"\n\
             metadata_refresh = \"250ms\"\npersistent = \"results\"\n",
        )
        .expect("resolves")
        .cache;
        assert_eq!((c.memory_budget, c.max_entry_bytes), (2 << 20, 1 << 20));
        assert_eq!(c.ttl, Duration::from_secs(3600));
        assert_eq!(c.metadata_refresh, Duration::from_millis(250));
        // A relative directory is relative to the config file.
        assert_eq!(
            c.persistent.as_deref(),
            Some(dir.path().join("results").to_string_lossy().as_ref())
        );
        let err = resolve("[cache]\nmemory_budget = \"1MiB\"\nmax_entry_size = \"2MiB\"\n")
            .expect_err("entry larger than the budget");
        assert!(err.contains("max_entry_size"), "{err}");
        let err = resolve("[cache]\nttl = \"soon\"\n").expect_err("bad duration");
        assert!(err.contains("cache.ttl"), "{err}");
        let err = resolve("[cache]\nenable = false\n").expect_err("unknown key");
        assert!(err.contains("enable"), "{err}");
    }

    #[test]
    fn warehouses_resolve_with_defaults_and_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(&ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        // No config: the default warehouse, 1 to 4 workers, 10 minutes to shrink.
        let s = resolve("").expect("resolves");
        assert_eq!(s.warehouses.len(), 1);
        let d = &s.warehouses[0];
        assert_eq!(
            (d.name.as_str(), d.min_workers, d.max_workers),
            ("default", 1, 4)
        );
        assert_eq!(d.auto_stop, Some(Duration::from_secs(600)));
        assert_eq!(d.max_queued, 1000);
        // Named warehouses stop when idle by default; default stays first.
        let s = resolve(
            "[warehouses.etl]
max_workers = 3
auto_stop = \"30s\"
statement_timeout = \"15m\"

[[routing]]
roles = [\"etl\"]
warehouse = \"etl\"
",
        )
        .expect("resolves");
        let names: Vec<&str> = s.warehouses.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["default", "etl"]);
        let etl = &s.warehouses[1];
        assert_eq!((etl.min_workers, etl.max_workers), (0, 3));
        assert_eq!(etl.auto_stop, Some(Duration::from_secs(30)));
        assert_eq!(etl.statement_timeout, Some(Duration::from_secs(900)));
        assert_eq!(s.routing[0].warehouse, "etl");
        // auto_stop = "0": never shrink.
        let s = resolve(
            "[warehouses.default]
auto_stop = \"0\"
",
        )
        .expect("resolves");
        assert_eq!(s.warehouses[0].auto_stop, None);
        // Static workers: their addresses are the pool; the secret is required.
        let s = resolve(
            "[warehouses.remote]
worker_addrs = [\"10.0.0.1:7000\", \"10.0.0.2:7000\"]
worker_secret = \"s\"
",
        )
        .expect("resolves");
        let remote = &s.warehouses[1];
        assert_eq!((remote.min_workers, remote.max_workers), (2, 2));
        assert!(matches!(remote.launcher, workers::Launcher::Static { .. }));
        for (text, named) in [
            (
                "[warehouses.x]
min_workers = 3
max_workers = 2
",
                "min_workers",
            ),
            (
                "[warehouses.x]
max_workers = 0
",
                "max_workers",
            ),
            (
                "[warehouses.x]
launcher = \"static\"
",
                "worker_addrs",
            ),
            (
                "[warehouses.x]
launcher = \"k8s\"
",
                "launcher",
            ),
            (
                "[warehouses.x]
auto_stop = \"soon\"
",
                "auto_stop",
            ),
            (
                "[warehouses.x]
worker_tls_cert = \"c.pem\"
",
                "worker_tls_ca",
            ),
            (
                "[[routing]]
roles = [\"a\"]
warehouse = \"nope\"
",
                "routing[0]",
            ),
            (
                "[warehouses.x]

[[routing]]
warehouse = \"x\"
",
                "routing[0]",
            ),
            (
                "[warehouses.\"a b\"]
",
                "warehouse name",
            ),
        ] {
            let err = resolve(text).expect_err(text);
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn auth_flags_beat_the_file_and_bad_grants_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[auth]\noidc_issuers = [\"https://file.example/\"]\noidc_audiences = [\"a\"]\n[tls]\nself_signed = true\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path.clone()),
            oidc_issuers: vec!["https://flag.example/".into()],
            ..Default::default()
        };
        let s = Settings::resolve(&args).expect("resolves");
        assert_eq!(
            s.auth.oidc.issuers,
            vec!["https://flag.example/".to_string()]
        );
        assert_eq!(s.auth.oidc.audiences, vec!["a".to_string()]);
        assert_eq!(s.tls, Some(TlsSource::SelfSigned));

        std::fs::write(&path, "[[grants]]\nselect = [\"tpch.nation\"]\n").expect("write");
        let err = Settings::resolve(&ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect_err("no grantee");
        assert!(err.contains("grants[0]"), "{err}");
        std::fs::write(&path, "[auth]\noidc_issuers = [\"https://x.example/\"]\n").expect("write");
        let err = Settings::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("no audience");
        assert!(err.contains("--oidc-audience"), "{err}");
    }
}

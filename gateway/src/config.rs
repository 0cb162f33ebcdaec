//! Configuration: command-line flags, `SLUICE_*` environment variables and an optional
//! TOML file, resolved once at start-up with precedence flag > env > file > default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// HTTP listener (/healthz) [default: 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long, env = "SLUICE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Where sluice keeps its state: demo data, dev token, endpoints.json [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Worker processes of the default warehouse [default: 2].
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
}

/// The config file. Unknown keys are errors that name the key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub pg_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub demo: Option<bool>,
    pub demo_scale: Option<f64>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableDef>,
    #[serde(default)]
    pub warehouses: BTreeMap<String, WarehouseFile>,
}

/// `[warehouses.<name>]`. In this version only `default` exists, with a fixed pool size.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseFile {
    /// Worker processes kept running.
    pub workers: Option<usize>,
    pub max_concurrency_per_worker: Option<usize>,
    pub max_queued: Option<usize>,
    /// e.g. "30s", "5m".
    pub queue_timeout: Option<String>,
    /// e.g. "2GiB", "512MB".
    pub worker_memory_limit: Option<String>,
}

/// Everything resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pg_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub demo_scale: Option<f64>,
    pub tables: Vec<TableDef>,
    pub warehouse: WarehouseSettings,
    pub log_json: bool,
}

#[derive(Debug, Clone)]
pub struct WarehouseSettings {
    pub workers: usize,
    pub max_concurrency_per_worker: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    pub worker_memory_limit: Option<u64>,
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        if let Some(name) = file.warehouses.keys().find(|n| n.as_str() != "default") {
            return Err(format!(
                "[warehouses.{name}]: only the `default` warehouse is available in this version"
            ));
        }
        let wh = file.warehouses.get("default").cloned().unwrap_or_default();
        let workers = args.workers.or(wh.workers).unwrap_or(2);
        if workers == 0 || workers > 256 {
            return Err(format!("workers must be between 1 and 256, not {workers}"));
        }
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
                if Path::new(&t.location).is_relative() {
                    t.location = base.join(&t.location).to_string_lossy().into_owned();
                }
                t
            })
            .collect();
        Ok(Self {
            pg_addr: args
                .pg_addr
                .or(file.pg_addr)
                .unwrap_or_else(|| ([127, 0, 0, 1], 5433).into()),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| ([127, 0, 0, 1], 8080).into()),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| "sluice-data".into()),
            demo_scale: demo.then_some(demo_scale),
            tables,
            warehouse: WarehouseSettings {
                workers,
                max_concurrency_per_worker: wh.max_concurrency_per_worker.unwrap_or(8).max(1),
                max_queued: wh.max_queued.unwrap_or(1000),
                queue_timeout: wh
                    .queue_timeout
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| format!("warehouses.default.queue_timeout: {e}"))?
                    .unwrap_or(Duration::from_secs(300)),
                worker_memory_limit: wh
                    .worker_memory_limit
                    .as_deref()
                    .map(parse_bytes)
                    .transpose()
                    .map_err(|e| format!("warehouses.default.worker_memory_limit: {e}"))?,
            },
            log_json: log_format == "json",
        })
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
        assert_eq!(s.warehouse.workers, 3); // file
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
    }
}

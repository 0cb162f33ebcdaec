//! The `sluice` command line.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ServeArgs, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A self-hosted SQL warehouse gateway: PostgreSQL wire in, DataFusion worker pools behind."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (with no config: a demo warehouse with the TPC-H tables).
    Serve(Box<ServeArgs>),
    /// Run a query worker (normally started by the gateway).
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Internal Flight endpoint; port 0 picks one (printed on stdout). A worker for a
    /// static warehouse on another host listens on a fixed address, with the secret in
    /// SLUICE_WORKER_SECRET.
    #[arg(long, env = "SLUICE_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Exit when standard input closes (set by the gateway for the workers it spawns).
    #[arg(long)]
    exit_with_parent: bool,
    /// Memory limit of this worker's queries, in bytes.
    #[arg(long, env = "SLUICE_WORKER_MEMORY_LIMIT")]
    memory_limit: Option<usize>,
    /// Parallelism within one query [default: the number of cores].
    #[arg(long, env = "SLUICE_WORKER_THREADS")]
    threads: Option<usize>,
    /// Keep Parquet bytes read from object storage in this directory (emptied at start).
    #[arg(long, env = "SLUICE_WORKER_DATA_CACHE")]
    data_cache: Option<std::path::PathBuf>,
    /// Largest size of the data cache, in bytes.
    #[arg(long, env = "SLUICE_WORKER_DATA_CACHE_SIZE", default_value_t = 2 << 30)]
    data_cache_size: u64,
    /// TLS certificate (PEM) of the internal endpoint (remote workers).
    #[arg(long, env = "SLUICE_WORKER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) of the internal endpoint.
    #[arg(long, env = "SLUICE_WORKER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require gateway client certificates signed by this CA (mutual TLS).
    #[arg(long, env = "SLUICE_WORKER_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// The CA other workers' certificates are checked against when a distributed query's
    /// stages read from each other [default: this worker's own --tls-cert]. With
    /// --tls-client-ca, this worker presents its own certificate to them.
    #[arg(long, env = "SLUICE_WORKER_TLS_PEER_CA", requires = "tls_cert")]
    tls_peer_ca: Option<std::path::PathBuf>,
    /// The name other workers' certificates carry [default: each one's address].
    #[arg(long, env = "SLUICE_WORKER_TLS_PEER_DOMAIN", requires = "tls_cert")]
    tls_peer_domain: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Two crypto backends end up linked (aws-lc-rs and ring); pick one before any TLS use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(planner::limits::THREAD_STACK)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Worker(args) => worker(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args).map_err(anyhow::Error::msg)?;
    init_tracing(settings.log_json);
    planner::set_catalog_name(&settings.catalog).map_err(anyhow::Error::msg)?;
    let mut drain = settings.drain_timeout;
    let server = crate::server::Server::start(settings).await?;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = wait_for_signal() => break,
            _ = hangup.recv() => {
                // SIGHUP: read the configuration again and apply what can change live.
                match Settings::resolve(&args) {
                    Ok(settings) if settings.catalog != planner::catalog() => tracing::error!(
                        catalog = %settings.catalog,
                        "reload refused: the catalog's name changes only with a restart; the previous configuration stays"
                    ),
                    Ok(settings) => match server.reload(&settings).await {
                        Ok(()) => {
                            drain = settings.drain_timeout;
                            tracing::info!("configuration reloaded");
                        }
                        Err(e) => tracing::error!(error = %e, "reload failed; the previous configuration stays"),
                    },
                    Err(e) => tracing::error!(error = %e, "reload refused: the configuration is not valid; the previous one stays"),
                }
            }
        }
    }
    tracing::info!("shutting down");
    server.stop(drain).await;
    Ok(())
}

async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    init_tracing(false);
    let secret = std::env::var(workers::protocol::SECRET_ENV).map_err(|_| {
        anyhow::anyhow!(
            "{} must hold the gateway's worker secret",
            workers::protocol::SECRET_ENV
        )
    })?;
    // The secret must not leak to anything this process might start.
    // SAFETY-free: removing an env var is safe in a single-threaded start; tokio's workers
    // do not read the environment.
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    workers::worker::run(workers::worker::WorkerOptions {
        listen: args.listen,
        secret,
        memory_limit: args.memory_limit,
        exit_with_parent: args.exit_with_parent,
        target_partitions: threads,
        data_cache: args
            .data_cache
            .filter(|_| args.data_cache_size > 0)
            .map(|dir| workers::data_cache::DataCacheConfig {
                dir,
                capacity: args.data_cache_size,
            }),
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(workers::worker::WorkerServerTls {
                cert,
                key,
                client_ca: args.tls_client_ca,
                peer_ca: args.tls_peer_ca,
                peer_domain: args.tls_peer_domain,
            }),
            _ => None,
        },
    })
    .await
    .map_err(|e| anyhow::anyhow!("worker: {e}"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

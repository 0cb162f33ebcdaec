//! Start-up and shutdown of `sluice serve`: data dir, demo data, dev token, planner,
//! warehouse, listeners, `endpoints.json`, then serve until SIGTERM / Ctrl-C.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use auth::{Authenticator, Principal, StaticToken};
use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, TlsSource};
use gateway::handler::{Engine, Handler};
use gateway::warehouses::Warehouses;
use pg::PgFrontend;

/// Most client connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 4096;

/// A running gateway.
pub struct Server {
    pub pg_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub warehouses: Arc<Warehouses>,
    /// How local workers are started (`[sluice, worker]`, their parallelism, storage
    /// options and data cache), for warehouses added on reload. `[storage]` is read at
    /// start only: a change needs a restart.
    local_workers: workers::LocalWorkers,
    pub engine: Arc<Engine>,
    pub activity: Arc<gateway::activity::Activity>,
    /// The demo's tables (the catalog's first; the config file's follow them).
    demo_tables: Vec<planner::TableDef>,
    /// What SIGHUP reloads the certificate from: its source, the names a self-signed one
    /// carries, the data dir.
    tls: Option<(
        TlsSource,
        Vec<String>,
        std::path::PathBuf,
        Arc<crate::tls::Certificates>,
    )>,
    /// Stops the pg and Flight SQL listeners taking connections (the start of a drain).
    shutdown: CancellationToken,
    /// Stops the HTTP listener: after the drain, since draining HS2 and REST clients fetch
    /// their results over it, and load balancers read `/readyz` from it.
    http_shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The history writer: stopped last, after the drain, so every record is written.
    history: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    series: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Server {
    /// Bring everything up; returns once every listener is bound.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        // The data dir holds the dev token, the history, results: its owner's alone.
        gateway::files::private_dir(&settings.data_dir)?;
        let data_dir = std::fs::canonicalize(&settings.data_dir)?;
        let auth_settings = &settings.auth;
        let mut static_tokens = auth_settings.tokens.clone();
        let token = if auth_settings.dev_token {
            let token = dev_token(&data_dir)?;
            static_tokens.push(StaticToken::from_secret(
                &token,
                Principal::service("dev", &[gateway::handler::ADMIN_ROLE]),
            ));
            Some(token)
        } else {
            None
        };
        let authenticator = Arc::new(
            Authenticator::with_oidc(static_tokens, auth_settings.oidc.clone())
                .map_err(anyhow::Error::msg)?,
        );
        authenticator.start_refresh();
        // A self-signed certificate names the listeners' addresses and this host.
        let mut names: Vec<String> = [
            settings.pg_addr.ip(),
            settings.flight_addr.ip(),
            settings.http_addr.ip(),
        ]
        .iter()
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect();
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            names.push(host.trim().to_string());
        }
        names.retain(|n| !n.is_empty());
        let tls = match &settings.tls {
            Some(source) => Some(crate::tls::identity(source, &data_dir, &names)?),
            None => None,
        };

        let mut tables = Vec::new();
        if let Some(scale) = settings.demo_scale {
            let dir = data_dir.clone();
            tables.extend(
                tokio::task::spawn_blocking(move || crate::tpch::ensure_demo_data(&dir, scale))
                    .await??,
            );
        }
        let demo_tables = tables.clone();
        tables.extend(settings.tables.iter().cloned());
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let system = Arc::new(gateway::system::SystemView::default());
        let storage = planner::storage::Registry::new(settings.storage.clone());
        if let Some(cache) = &settings.data_cache {
            // What workers of an earlier run left (a killed gateway's) is not indexed.
            workers::data_cache::remove(&cache.dir);
        }
        let store = gateway::metadata::Store::open(settings.metadata_url.as_deref(), &data_dir)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(store = %store.describe(), "metadata store open");
        // Where CREATE EXTERNAL TABLE may point: never at sluice's own files.
        let mut own = vec![data_dir.clone()];
        if let Some(dir) = &settings.config_dir {
            own.push(if dir.as_os_str().is_empty() {
                std::env::current_dir()?
            } else {
                dir.clone()
            });
        }
        if let Some(cache) = &settings.data_cache {
            own.push(cache.dir.clone());
        }
        if let Some(persistent) = &settings.cache.persistent {
            if !planner::storage::is_url(persistent) {
                own.push(persistent.into());
            }
        }
        if let Some(TlsSource::Files { cert, key }) = &settings.tls {
            own.extend([cert.clone(), key.clone()]);
        }
        let locations = planner::locations::LocationPolicy::new(
            &settings.allowed_locations,
            settings.config_dir.as_deref().unwrap_or(Path::new("")),
            &own,
        )
        .map_err(anyhow::Error::msg)?;
        let catalog = gateway::catalog::Catalog::open(
            store.clone(),
            threads,
            system.clone(),
            storage.clone(),
            settings.limits.statement,
            locations,
            tables,
        )
        .await
        .map_err(|e| anyhow::anyhow!("catalog: {e}"))?;

        let local_workers = workers::LocalWorkers {
            command: vec![
                std::env::current_exe()?.into_os_string(),
                OsString::from("worker"),
            ],
            threads,
            storage: settings.storage.clone(),
            data_cache: settings.data_cache.clone(),
        };
        let configs = settings
            .warehouses
            .iter()
            .map(|w| w.clone().with_local_workers(&local_workers))
            .collect();
        let warehouses = Warehouses::start(configs, settings.routing.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        system.attach(&warehouses);
        let cache = gateway::cache::ResultCache::new(settings.cache.clone(), &catalog.planner())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        system.attach_cache(&cache);
        {
            let cache = cache.clone();
            tokio::spawn(async move { cache.sweep().await });
        }

        let history = settings
            .history
            .enabled
            .then(|| gateway::history::History::new(store.clone(), settings.history.clone()));
        let history_task = history.as_ref().map(|h| {
            let stop = CancellationToken::new();
            (stop.clone(), tokio::spawn(h.clone().run(stop)))
        });
        if let Some(h) = &history {
            system.attach_history(h);
        }
        let metrics = settings
            .metrics
            .then(|| Arc::new(gateway::metrics::Metrics::default()));
        let series = match settings.series {
            true => Some(gateway::series::Series::open(Some(store.clone())).await),
            false => None,
        };
        let series_task = series.as_ref().map(|s| {
            let stop = CancellationToken::new();
            (
                stop.clone(),
                tokio::spawn(s.clone().run(warehouses.clone(), stop)),
            )
        });
        let activity = gateway::activity::Activity::new(history, metrics.clone(), series);
        let engine = Arc::new(Engine::new(
            warehouses.clone(),
            authenticator,
            auth_settings.grants.clone(),
            cache.clone(),
            activity.clone(),
            catalog.clone(),
            settings.limits.clone(),
        ));
        let handler: Arc<dyn Handler> = engine.clone();
        let pg_listener = TcpListener::bind(settings.pg_addr)
            .await
            .map_err(|e| anyhow::anyhow!("pg listener {}: {e}", settings.pg_addr))?;
        let http_listener = TcpListener::bind(settings.http_addr)
            .await
            .map_err(|e| anyhow::anyhow!("http listener {}: {e}", settings.http_addr))?;
        let flight_listener = TcpListener::bind(settings.flight_addr)
            .await
            .map_err(|e| anyhow::anyhow!("flight listener {}: {e}", settings.flight_addr))?;
        let pg_addr = pg_listener.local_addr()?;
        let flight_addr = flight_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;

        // Tokens travel in the clear only where nobody else can listen: on loopback, or
        // where the operator said so.
        let require_tls = !pg_addr.ip().is_loopback() && !auth_settings.allow_insecure_password;
        if require_tls && tls.is_none() {
            tracing::warn!(%pg_addr, "the pg listener is not loopback-only and has no TLS: every login will be refused (set --tls-cert/--tls-key or --tls-self-signed)");
        }
        // One certificate for every listener, reloaded on SIGHUP.
        let certificates = match &tls {
            Some(identity) => Some(crate::tls::Certificates::load(identity)?),
            None => None,
        };
        let acceptor = |alpn: &[&[u8]]| {
            certificates
                .as_ref()
                .map(|c| pgwire::tokio::TlsAcceptor::from(crate::tls::server_config(c, alpn)))
        };
        let pg_tls = acceptor(&[b"postgresql"]);

        let shutdown = CancellationToken::new();
        let http_stop = CancellationToken::new();
        let mut tasks = Vec::new();
        // Another gateway's CREATE / DROP on a shared metadata store.
        tasks.push(tokio::spawn(catalog.clone().watch(shutdown.clone())));
        tasks.push(tokio::spawn(serve_pg(
            pg_listener,
            pg_tls,
            Arc::new(PgFrontend::new(handler.clone(), require_tls)),
            pg::connection::MessageLimits::new(settings.limits.statement.max_statement_bytes),
            shutdown.clone(),
            metrics.clone(),
        )));
        // Flight SQL: gRPC, over TLS (HTTP/2 by ALPN) when configured.
        let flight_plain_refused = tls.is_none()
            && !flight_addr.ip().is_loopback()
            && !auth_settings.allow_insecure_password;
        let flight = arrow_flight::flight_service_server::FlightServiceServer::new(
            flight::FlightSqlFrontend::new(
                handler.clone(),
                flight_plain_refused,
                settings.limits.max_prepared_statements,
            ),
        )
        // A statement, or a DoPut message of parameters, and room for its envelope.
        .max_decoding_message_size(
            settings
                .limits
                .statement
                .max_statement_bytes
                .max(flight::MAX_PUT_BYTES)
                + (64 << 10),
        );
        let flight_shutdown = shutdown.clone().cancelled_owned();
        let flight_router = tonic::transport::Server::builder().add_service(flight);
        match acceptor(&[b"h2"]) {
            Some(acceptor) => {
                let incoming = crate::tls::TlsListener::new(flight_listener, acceptor)?
                    .into_stream()
                    .map_ok(counted_flight(metrics.clone()));
                tasks.push(tokio::spawn(serve_flight(
                    flight_router,
                    incoming,
                    flight_shutdown,
                )));
            }
            None => {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(flight_listener)
                    .map_ok(counted_flight(metrics.clone()));
                tasks.push(tokio::spawn(serve_flight(
                    flight_router,
                    incoming,
                    flight_shutdown,
                )));
            }
        }

        let hs2 = databricks::hs2::Hs2::new(
            handler.clone(),
            databricks::hs2::Hs2Config {
                max_sessions_per_principal: settings.limits.max_sessions,
                max_operations_per_principal: settings.limits.max_operations,
                ..settings.hs2.clone()
            },
            &data_dir,
            tls.is_some(),
        );
        let databricks = databricks::AppState {
            handler: handler.clone(),
            hs2: hs2.clone(),
            statements: databricks::statements::Statements::new(
                &data_dir,
                tls.is_some(),
                &settings.limits,
            ),
        };
        let router = crate::http::router(
            crate::http::AppState {
                warehouses: warehouses.clone(),
                handler,
                hs2,
                cache,
                activity: activity.clone(),
                metrics,
                tls: tls.is_some(),
                refuse_plain: tls.is_none()
                    && !http_addr.ip().is_loopback()
                    && !auth_settings.allow_insecure_password,
                ui_sessions: Default::default(),
            },
            databricks,
        );
        tasks.push(tokio::spawn(crate::http::serve::serve(
            http_listener,
            router,
            crate::http::serve::ServeOptions {
                tls: acceptor(&[b"http/1.1"]),
                max_connections: settings.limits.max_http_connections,
                header_timeout: settings.limits.http_header_timeout,
            },
            http_stop.clone(),
        )));

        let tls_cert = tls.as_ref().map(|t| t.cert.clone());
        write_endpoints(
            &data_dir,
            pg_addr,
            flight_addr,
            http_addr,
            tls_cert.as_deref(),
        )?;
        tracing::info!(%pg_addr, %flight_addr, %http_addr, tls = tls.is_some(), data_dir = %data_dir.display(), "sluice is ready");
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!(
            "sluice is ready\n  pg:     {pg_addr}{}\n  flight: {}://{flight_addr}\n  http:   {scheme}://{http_addr}",
            if tls.is_some() {
                " (TLS: sslmode=require)"
            } else {
                ""
            },
            if tls.is_some() { "grpc+tls" } else { "grpc" }
        );
        if let Some(cert) = &tls_cert {
            println!("  TLS certificate: {}", cert.display());
        }
        if let Some(token) = &token {
            println!(
                "  dev token (use it as the password): {token}\n  token file: {}",
                data_dir.join("dev-token").display()
            );
        }
        Ok(Self {
            pg_addr,
            flight_addr,
            http_addr,
            warehouses,
            local_workers,
            engine,
            activity,
            demo_tables,
            tls: match (&settings.tls, certificates) {
                (Some(source), Some(certificates)) => {
                    Some((source.clone(), names, data_dir.clone(), certificates))
                }
                _ => None,
            },
            shutdown,
            http_shutdown: http_stop,
            tasks,
            history: history_task,
            series: series_task,
        })
    }

    /// Apply a reloaded configuration (SIGHUP): `[[tables]]` (statements planned from now
    /// on see the new catalog; the result cache is cleared), the TLS certificate (new
    /// handshakes present it), grants (open sessions see them from their next statement),
    /// warehouse sizes,
    /// limits and timeouts, warehouses added or removed, routing rules. Sessions and
    /// running queries stay.
    pub async fn reload(&self, settings: &Settings) -> anyhow::Result<()> {
        // What can fail comes first (a catalog whose tables do not load, a certificate
        // that does not), before anything changed.
        let mut wanted = self.demo_tables.clone();
        wanted.extend(settings.tables.iter().cloned());
        let tables = self
            .engine
            .catalog
            .prepare_config(wanted)
            .await
            .map_err(|e| anyhow::anyhow!("tables: {e}"))?;
        match (&self.tls, &settings.tls) {
            (Some((_, names, data_dir, certificates)), Some(source)) => {
                let identity = crate::tls::identity(source, data_dir, names)?;
                certificates.reload(&identity)?;
                tracing::info!(cert = %identity.cert.display(), "TLS certificate reloaded");
            }
            (None, None) => {}
            _ => tracing::warn!(
                "turning TLS on or off needs a restart; the listeners keep their current setting"
            ),
        }
        self.engine.grants.replace(&settings.auth.grants);
        if let Some(tables) = tables {
            self.engine
                .catalog
                .apply_config(tables)
                .await
                .map_err(|e| anyhow::anyhow!("tables: {e}"))?;
            tracing::info!("tables reloaded");
        }
        let configs = settings
            .warehouses
            .iter()
            .map(|w| w.clone().with_local_workers(&self.local_workers))
            .collect();
        self.warehouses
            .reload(configs, settings.routing.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// SIGTERM: stop accepting connections and statements, let running statements finish
    /// for up to `drain`, cancel what still runs, stop the workers, write the last history.
    pub async fn stop(self, drain: std::time::Duration) {
        self.activity.drain();
        self.shutdown.cancel();
        let running = self.activity.running();
        if running > 0 {
            tracing::info!(running, drain_timeout = ?drain, "draining: waiting for running statements to finish");
        }
        if !self.activity.idle(drain).await {
            let cancelled = self.activity.cancel_all("the server shutting down");
            tracing::warn!(
                cancelled,
                "drain timeout passed: cancelling the statements still running"
            );
            self.activity.idle(std::time::Duration::from_secs(5)).await;
        }
        self.http_shutdown.cancel();
        self.warehouses.stop();
        for task in self.tasks {
            // Listeners close once their connections end; idle ones do not hold us.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        for (stop, task) in self.history.into_iter().chain(self.series) {
            stop.cancel();
            let _ = task.await;
        }
    }
}

/// Serve Flight SQL on a stream of accepted connections (plain or TLS) until `shutdown`.
async fn serve_flight<I, IO>(
    router: tonic::transport::server::Router,
    incoming: I,
    shutdown: tokio_util::sync::WaitForCancellationFutureOwned,
) where
    I: futures::Stream<Item = Result<IO, std::io::Error>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
{
    if let Err(e) = router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
    {
        tracing::error!(error = %e, "flight listener failed");
    }
}

/// Flight SQL connections, each counted while open.
fn counted_flight<IO>(
    metrics: Option<Arc<gateway::metrics::Metrics>>,
) -> impl FnMut(IO) -> gateway::metrics::Counted<IO> {
    move |io| {
        gateway::metrics::Counted::new(io, gateway::metrics::Connection::flight(metrics.clone()))
    }
}

async fn serve_pg(
    listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    frontend: Arc<PgFrontend>,
    limits: pg::connection::MessageLimits,
    shutdown: CancellationToken,
    metrics: Option<Arc<gateway::metrics::Metrics>>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let frontend = frontend.clone();
                let tls = tls.clone();
                let open = gateway::metrics::Connection::pg(metrics.clone());
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = pg::connection::serve(socket, tls, frontend, limits).await {
                        tracing::debug!(%peer, error = %e, "pg connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// The development token: created on first start, reused afterwards (so scripts and
/// saved connections keep working), readable by the owner only.
fn dev_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("dev-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let token = auth::generate_token();
    gateway::files::write_private(&path, &token)?;
    Ok(token)
}

/// `<data-dir>/endpoints.json`: where each listener really is (port 0 picks one), and the
/// TLS certificate when the listeners speak TLS.
fn write_endpoints(
    data_dir: &Path,
    pg: SocketAddr,
    flight: SocketAddr,
    http: SocketAddr,
    tls_cert: Option<&Path>,
) -> std::io::Result<()> {
    let mut json = serde_json::json!({
        "pg": pg.to_string(),
        "flight": flight.to_string(),
        "http": http.to_string(),
    });
    if let Some(cert) = tls_cert {
        json["tls"] = serde_json::json!({ "cert": cert.display().to_string() });
    }
    gateway::files::write_private(
        &data_dir.join("endpoints.json"),
        &serde_json::to_string_pretty(&json)?,
    )
}

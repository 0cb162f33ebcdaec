//! How a warehouse's pool changes size: the autoscaler, starting and stopping workers
//! (local processes or static remote ones), and their health checks.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Action;
use futures::StreamExt;
use planner::{ErrorKind, QueryError};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::pool::{
    Launcher, LocalWorkers, Warehouse, WorkerHandle, WorkerTls, DOWN, DRAINING, HEALTH_EVERY,
    HEALTH_FAILURES, HEALTH_TIMEOUT, READY, SCALE_UP_WAIT, TICK, WORKER_START_TIMEOUT,
};
use crate::protocol::{
    WorkerReport, MAX_MESSAGE_BYTES, READY_PREFIX, SECRET_ENV, STATUS_ACTION, STREAM_WINDOW_BYTES,
};

impl Warehouse {
    /// The workers a warehouse starts with: `min_workers` local ones (waiting for them),
    /// or every static address (checked by the health checks from then on).
    pub(crate) async fn initial_workers(self: &Arc<Self>) -> Result<(), QueryError> {
        let config = self.config();
        match &config.launcher {
            Launcher::Static { addrs } => {
                for addr in addrs {
                    let handle = self.connect(addr, None, &config.tls).await?;
                    handle.state.store(DOWN, Ordering::Relaxed);
                    self.lock().workers.push(handle);
                }
                // First contact now, so a healthy static warehouse is ready at start.
                self.health_checks().await;
                Ok(())
            }
            Launcher::Local(_) => {
                let n = config.min_workers.min(config.max_workers.max(1));
                if n == 0 {
                    return Ok(());
                }
                self.lock().starting += n;
                let results =
                    futures::future::join_all((0..n).map(|_| self.clone().start_local())).await;
                let started = results.iter().filter(|r| r.is_ok()).count();
                {
                    let mut state = self.lock();
                    *state.scale_events.entry("min_workers").or_default() += started as u64;
                }
                if started == 0 {
                    if let Some(Err(e)) = results.into_iter().next() {
                        return Err(e);
                    }
                }
                tracing::info!(warehouse = %self.name(), workers = started, "warehouse ready");
                Ok(())
            }
        }
    }

    /// The autoscaler: decide at every queue change and every [`TICK`]; health checks
    /// every [`HEALTH_EVERY`].
    pub(crate) async fn autoscale(self: Arc<Self>) {
        let mut checked = Instant::now();
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = self.stopping.cancelled() => return,
            }
            self.tick();
            if checked.elapsed() >= HEALTH_EVERY {
                checked = Instant::now();
                let me = self.clone();
                tokio::spawn(async move { me.health_checks().await });
            }
        }
    }

    /// One autoscaling decision.
    fn tick(self: &Arc<Self>) {
        if self.stopping.is_cancelled() {
            return;
        }
        let mut starts: Vec<(&'static str, String)> = Vec::new();
        {
            let mut state = self.lock();
            if state.config.is_static() {
                return;
            }
            let config = state.config.clone();
            let conc = config.max_concurrency_per_worker.max(1);
            let max = config.max_workers.max(1);
            let ready: Vec<Arc<WorkerHandle>> = state
                .workers
                .iter()
                .filter(|w| w.state.load(Ordering::Relaxed) == READY)
                .cloned()
                .collect();
            let mut planned = ready.len() + state.starting;
            let room = |state: &crate::pool::PoolState, starts: &Vec<_>| {
                config.max_starting.max(1) > state.starting + starts.len()
            };
            while planned < config.min_workers.min(max) && room(&state, &starts) {
                starts.push((
                    "min_workers",
                    format!(
                        "starting a worker: {planned} running or starting, min_workers is {}",
                        config.min_workers
                    ),
                ));
                planned += 1;
            }
            let queued = state.queue.len();
            if let Some(oldest) = state.queue.front().map(|w| w.since.elapsed()) {
                if ready.is_empty() || oldest >= SCALE_UP_WAIT {
                    let coming = state.starting + starts.len();
                    let wanted = queued.div_ceil(conc).saturating_sub(coming);
                    for _ in 0..wanted {
                        if planned >= max || !room(&state, &starts) {
                            break;
                        }
                        starts.push((
                            "queue",
                            format!(
                                "starting a worker: {queued} queries waiting, the oldest for {} ms ({planned} of max_workers {max} running or starting)",
                                oldest.as_millis()
                            ),
                        ));
                        planned += 1;
                    }
                }
            }
            // Shrink: idle workers above min_workers after auto_stop; any beyond a lowered
            // max_workers (busy ones drain: no new queries, stopped when done).
            let mut keep = ready.len();
            if queued == 0 {
                if let Some(idle_after) = config.auto_stop {
                    let mut idle: Vec<&Arc<WorkerHandle>> = ready
                        .iter()
                        .filter(|w| w.running.load(Ordering::Relaxed) == 0)
                        .collect();
                    idle.sort_by_key(|w| *w.idle_since.lock().unwrap_or_else(|p| p.into_inner()));
                    for worker in idle {
                        let idle_for = worker
                            .idle_since
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .elapsed();
                        if keep > config.min_workers && idle_for >= idle_after {
                            worker.state.store(DRAINING, Ordering::Relaxed);
                            keep -= 1;
                            self.record(
                                &mut state,
                                "idle",
                                format!(
                                    "stopping worker {}: idle for {} s (auto_stop {} s)",
                                    worker.id,
                                    idle_for.as_secs(),
                                    idle_after.as_secs()
                                ),
                            );
                        }
                    }
                }
            }
            if keep > max {
                let mut by_load = ready.clone();
                by_load.sort_by_key(|w| w.running.load(Ordering::Relaxed));
                for worker in by_load
                    .iter()
                    .filter(|w| w.state.load(Ordering::Relaxed) == READY)
                    .take(keep - max)
                {
                    worker.state.store(DRAINING, Ordering::Relaxed);
                    self.record(
                        &mut state,
                        "reload",
                        format!("stopping worker {}: max_workers is now {max}", worker.id),
                    );
                }
            }
            // Drained workers go once their queries have ended.
            for worker in &state.workers {
                if worker.state.load(Ordering::Relaxed) == DRAINING
                    && worker.running.load(Ordering::Relaxed) == 0
                {
                    worker.retire.cancel();
                }
            }
            if state.start_after.is_some_and(|t| Instant::now() < t) {
                starts.clear();
            }
            state.starting += starts.len();
            for (reason, detail) in &starts {
                self.record(&mut state, reason, detail.clone());
            }
        }
        self.spawn_starts(starts.len());
    }

    /// Start `n` local workers in the background (the caller counted them in `starting`).
    fn spawn_starts(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.clone().start_local().await {
                    tracing::error!(warehouse = %me.name(), error = %e, "could not start a worker");
                }
            });
        }
    }

    /// Start one local worker process and add it to the pool. The caller counted it in
    /// `starting`.
    async fn start_local(self: Arc<Self>) -> Result<(), QueryError> {
        let result = self.spawn_local().await;
        let mut state = self.lock();
        state.starting = state.starting.saturating_sub(1);
        match &result {
            Ok(_) => {
                state.start_failures = 0;
                state.start_after = None;
            }
            Err(_) => {
                state.start_failures += 1;
                let backoff =
                    Duration::from_millis(200) * 2u32.saturating_pow(state.start_failures.min(8));
                state.start_after = Some(Instant::now() + backoff.min(Duration::from_secs(30)));
            }
        }
        drop(state);
        self.pump();
        self.wake.notify_one();
        result.map(|_| ())
    }

    async fn spawn_local(self: &Arc<Self>) -> Result<Arc<WorkerHandle>, QueryError> {
        let unavailable = |what: String| QueryError::new(ErrorKind::Unavailable, what);
        let config = self.config();
        let Launcher::Local(LocalWorkers {
            command,
            threads,
            storage,
            data_cache,
        }) = &config.launcher
        else {
            return Err(QueryError::internal("not a local warehouse"));
        };
        let (program, args) = command
            .split_first()
            .ok_or_else(|| QueryError::internal("no worker command configured"))?;
        let mut process = tokio::process::Command::new(program);
        process
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--exit-with-parent")
            .arg("--threads")
            .arg(threads.max(&1).to_string());
        if let Some(limit) = config.worker_memory_limit {
            process.arg("--memory-limit").arg(limit.to_string());
        }
        // A directory per worker process, removed when it exits.
        let cache_dir = data_cache.as_ref().map(|c| {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = c.dir.join(format!("{}-{n}", self.name()));
            process
                .arg("--data-cache")
                .arg(&dir)
                .arg("--data-cache-size")
                .arg(c.capacity.to_string());
            dir
        });
        process
            .env(SECRET_ENV, &self.secret)
            .env(planner::storage::STORAGE_ENV, storage.to_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = process
            .spawn()
            .map_err(|e| unavailable(format!("could not start a worker process: {e}")))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| QueryError::internal("worker stdout not captured"))?;
        let mut lines = BufReader::new(stdout).lines();
        // `SLUICE_WORKER_LISTENING <flight addr> <distributed addr>`
        let (addr, distributed) = tokio::time::timeout(WORKER_START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addrs) = line.strip_prefix(READY_PREFIX) {
                    let mut addrs = addrs.split_whitespace().map(str::to_string);
                    return Some((addrs.next()?, addrs.next()));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            unavailable("a worker process exited or timed out before it was ready".into())
        })?;
        // Keep reading the worker's stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let handle = self.connect(&addr, pid, &None).await?;
        *handle.distributed.lock().unwrap_or_else(|p| p.into_inner()) =
            distributed.and_then(|a| url::Url::parse(&format!("http://{a}")).ok());
        self.lock().workers.push(handle.clone());
        tracing::info!(warehouse = %self.name(), worker = handle.id, pid, %addr, "worker started");

        // Watch the process: when it exits, take it out of the pool; the autoscaler starts
        // another when one is needed (min_workers, waiting queries).
        let warehouse = self.clone();
        let watched = handle.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let exit = tokio::select! {
                status = child.wait() => Some(status),
                _ = watched.retire.cancelled() => {
                    let _ = child.kill().await;
                    let _ = child.wait().await;
                    None
                }
                _ = warehouse.stopping.cancelled() => {
                    let _ = child.kill().await;
                    None
                }
            };
            drop(stdin);
            if let Some(dir) = &cache_dir {
                crate::data_cache::remove(dir);
            }
            let mut state = warehouse.lock();
            state.workers.retain(|w| w.id != watched.id);
            // Its distributed endpoint's connection goes with it (a new worker has a new port).
            if let Some(url) = watched.distributed_url() {
                warehouse.channels.forget(&url);
            }
            if let Some(status) = exit {
                let status = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                warehouse.record(
                    &mut state,
                    "replace",
                    format!(
                        "worker {} (pid {pid:?}) exited ({status}); it is replaced when needed",
                        watched.id
                    ),
                );
                if started.elapsed() < Duration::from_secs(5) {
                    // It died young: do not spin if every new worker dies at once.
                    state.start_failures += 1;
                    state.start_after = Some(Instant::now() + Duration::from_secs(1));
                }
            } else {
                tracing::info!(warehouse = %warehouse.name(), worker = watched.id, "worker stopped");
            }
            drop(state);
            warehouse.wake.notify_one();
        });
        Ok(handle)
    }

    /// A handle for the worker at `addr` (`host:port`).
    async fn connect(
        self: &Arc<Self>,
        addr: &str,
        pid: Option<u32>,
        tls: &Option<WorkerTls>,
    ) -> Result<Arc<WorkerHandle>, QueryError> {
        let unavailable = |what: String| QueryError::new(ErrorKind::Unavailable, what);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| {
                QueryError::new(
                    ErrorKind::InvalidValue,
                    format!("worker address {addr:?}: {e}"),
                )
            })?
            .tcp_nodelay(true)
            // HTTP/2 flow control bounds what a worker can send ahead of the client: enough
            // to keep the loopback busy (the 64 KiB default throttles bulk results), small
            // enough that a slow client holds only a few MiB per query in the gateway.
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(STREAM_WINDOW_BYTES * 4)
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(client_tls(tls, addr)?).map_err(|e| {
                QueryError::new(ErrorKind::InvalidValue, format!("worker TLS: {e}"))
            })?;
        }
        let channel = if pid.is_some() {
            endpoint
                .connect()
                .await
                .map_err(|e| unavailable(format!("could not connect to a new worker: {e}")))?
        } else {
            // Remote workers may not be up yet: connect on first use, reconnect after a
            // restart.
            endpoint.connect_lazy()
        };
        let client = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut state = self.lock();
        state.next_id += 1;
        Ok(Arc::new(WorkerHandle {
            id: state.next_id,
            pid,
            addr: addr.to_string(),
            started: SystemTime::now(),
            client,
            running: Default::default(),
            state: Default::default(),
            idle_since: Mutex::new(Instant::now()),
            failed_checks: Default::default(),
            report: Mutex::new(None),
            retire: CancellationToken::new(),
            distributed: Mutex::new(None),
        }))
    }

    /// Ask every worker for its status; one that fails [`HEALTH_FAILURES`] checks in a
    /// row is replaced (local) or taken out of admission until it answers again (static).
    pub(crate) async fn health_checks(self: &Arc<Self>) {
        let workers: Vec<Arc<WorkerHandle>> = self
            .lock()
            .workers
            .iter()
            .filter(|w| w.state.load(Ordering::Relaxed) != DRAINING)
            .cloned()
            .collect();
        let checks = workers.iter().map(|worker| async move {
            let answer = tokio::time::timeout(HEALTH_TIMEOUT, self.status_of(worker)).await;
            (worker.clone(), answer)
        });
        for (worker, answer) in futures::future::join_all(checks).await {
            match answer {
                Ok(Ok(report)) => {
                    worker.failed_checks.store(0, Ordering::Relaxed);
                    if let Some(port) = report.as_ref().and_then(|r| r.distributed_port) {
                        self.learn_distributed_port(&worker, port);
                    }
                    let stuck = report.as_ref().map(|r| r.stuck).unwrap_or(0);
                    *worker.report.lock().unwrap_or_else(|p| p.into_inner()) = report;
                    // A cancelled query still computing can only be stopped with its
                    // process: take no new queries there, replace it once its own are done.
                    if stuck > 0
                        && worker.pid.is_some()
                        && worker
                            .state
                            .compare_exchange(READY, DRAINING, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        let mut state = self.lock();
                        self.record(&mut state, "stuck", format!("worker {} (pid {:?}) is still computing {stuck} cancelled queries; replacing it once its other queries end", worker.id, worker.pid));
                        drop(state);
                        self.wake.notify_one();
                    }
                    if worker
                        .state
                        .compare_exchange(DOWN, READY, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        tracing::info!(warehouse = %self.name(), worker = worker.id, addr = %worker.addr, "worker is answering; it takes queries");
                        self.pump();
                    }
                }
                failed => {
                    let why = match failed {
                        Ok(Err(status)) => status.message().to_string(),
                        _ => format!("no answer within {} s", HEALTH_TIMEOUT.as_secs()),
                    };
                    let failures = worker.failed_checks.fetch_add(1, Ordering::Relaxed) + 1;
                    if failures < HEALTH_FAILURES || worker.state.load(Ordering::Relaxed) == DOWN {
                        continue;
                    }
                    let mut state = self.lock();
                    if state.config.is_static() {
                        worker.state.store(DOWN, Ordering::Relaxed);
                        self.record(&mut state, "health", format!("worker {} at {} failed {failures} health checks ({why}); no queries go there until it answers", worker.id, worker.addr));
                    } else {
                        worker.state.store(DRAINING, Ordering::Relaxed);
                        worker.retire.cancel();
                        self.record(&mut state, "health", format!("worker {} (pid {:?}) failed {failures} health checks ({why}); replacing it", worker.id, worker.pid));
                    }
                    drop(state);
                    self.wake.notify_one();
                }
            }
        }
    }
}

impl Warehouse {
    /// A static worker's distributed endpoint: its host, the port its status names.
    fn learn_distributed_port(&self, worker: &WorkerHandle, port: u32) {
        let mut url = worker.distributed.lock().unwrap_or_else(|p| p.into_inner());
        if url.as_ref().and_then(|u| u.port()).map(u32::from) == Some(port) {
            return;
        }
        let scheme = if self.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        let host = worker
            .addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&worker.addr);
        *url = url::Url::parse(&format!("{scheme}://{host}:{port}")).ok();
    }

    /// A query big enough to be spread arrived: start workers up to `max_workers` (at most
    /// `max_starting` at once), so that the next big queries have them. Idle ones stop
    /// again after `auto_stop`.
    pub(crate) fn grow_for_distributed(self: &Arc<Self>) {
        let starts = {
            let mut state = self.lock();
            if state.config.is_static()
                || self.stopping.is_cancelled()
                || state.start_after.is_some_and(|t| Instant::now() < t)
            {
                return;
            }
            let config = state.config.clone();
            let ready = state
                .workers
                .iter()
                .filter(|w| w.state.load(Ordering::Relaxed) == READY)
                .count();
            let planned = ready + state.starting;
            let room = config.max_starting.max(1).saturating_sub(state.starting);
            let wanted = config.max_workers.saturating_sub(planned).min(room);
            if wanted == 0 {
                return;
            }
            state.starting += wanted;
            for _ in 0..wanted {
                self.record(
                    &mut state,
                    "distributed",
                    format!(
                        "starting a worker: a query big enough to spread over the warehouse ({planned} of max_workers {} running or starting)",
                        config.max_workers
                    ),
                );
            }
            wanted
        };
        self.spawn_starts(starts);
    }

    /// Ask every ready worker for its status now, briefly: one that does not answer is
    /// taken out of admission at once (a distributed query lost a worker and is about to
    /// run again over the others).
    pub(crate) async fn probe(self: &Arc<Self>) {
        let workers: Vec<Arc<WorkerHandle>> = self
            .lock()
            .workers
            .iter()
            .filter(|w| w.state.load(Ordering::Relaxed) == READY)
            .cloned()
            .collect();
        let checks = workers.iter().map(|worker| async move {
            let answered = tokio::time::timeout(PROBE_TIMEOUT, self.status_of(worker))
                .await
                .is_ok_and(|r| r.is_ok());
            (worker.clone(), answered)
        });
        for (worker, answered) in futures::future::join_all(checks).await {
            if !answered {
                tracing::warn!(warehouse = %self.name(), worker = worker.id, addr = %worker.addr, "worker does not answer; taking it out of admission");
                if let Some(url) = worker.distributed_url() {
                    self.channels.forget(&url);
                }
                self.lost(&worker);
            }
        }
    }

    async fn status_of(
        &self,
        worker: &WorkerHandle,
    ) -> Result<Option<WorkerReport>, tonic::Status> {
        let mut client = worker.client.clone();
        let mut request = tonic::Request::new(Action {
            r#type: STATUS_ACTION.into(),
            body: Default::default(),
        });
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        let mut stream = client.do_action(request).await?.into_inner();
        match stream.next().await {
            Some(Ok(result)) => Ok(WorkerReport::decode(result.body).ok()),
            Some(Err(status)) => Err(status),
            None => Ok(None),
        }
    }
}

/// How long [`Warehouse::probe`] waits for each worker.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn client_tls(tls: &WorkerTls, addr: &str) -> Result<ClientTlsConfig, QueryError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            QueryError::new(
                ErrorKind::InvalidValue,
                format!("worker TLS file {}: {e}", path.display()),
            )
        })
    };
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .domain_name(
            tls.domain
                .clone()
                .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string()),
        );
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

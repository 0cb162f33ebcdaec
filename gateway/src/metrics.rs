//! Prometheus metrics at `GET /metrics` (text exposition format 0.0.4). Counters the query
//! path moves are kept here; gauges of state that lives elsewhere (workers, queues, the
//! result cache, sessions) are read from their owners at scrape time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What one statement's end moves, under one lock. Keys are looked up borrowed: once a
/// label set exists, counting allocates nothing.
#[derive(Debug, Default)]
struct Statements {
    /// (protocol, outcome) → warehouse → statements.
    queries: HashMap<(&'static str, &'static str), HashMap<String, u64>>,
    /// protocol → statement latency (start to last row).
    latency: HashMap<&'static str, Histogram>,
    /// warehouse → time waited for a worker slot.
    queue_wait: HashMap<String, Histogram>,
}

/// What the gateway counts itself.
#[derive(Debug, Default)]
pub struct Metrics {
    statements: Mutex<Statements>,
    /// reason → refused logins.
    auth_failures: Mutex<BTreeMap<String, u64>>,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    /// Open pg and Flight SQL connections.
    pub pg_connections: AtomicI64,
    pub flight_connections: AtomicI64,
    /// Executions of statements that keep their plans: plans reused, plans made.
    pub plans_reused: AtomicU64,
    pub plans_made: AtomicU64,
    /// Data queries small enough to run in the gateway.
    pub small_queries: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Label values escaped as the format asks.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// A statement ended (`outcome`: finished, failed, canceled).
    pub fn statement(
        &self,
        protocol: &'static str,
        warehouse: &str,
        outcome: &'static str,
        total: Duration,
        queued: Option<Duration>,
    ) {
        let mut s = lock(&self.statements);
        let by_warehouse = s.queries.entry((protocol, outcome)).or_default();
        match by_warehouse.get_mut(warehouse) {
            Some(n) => *n += 1,
            None => {
                by_warehouse.insert(warehouse.to_string(), 1);
            }
        }
        s.latency
            .entry(protocol)
            .or_default()
            .observe(total.as_secs_f64());
        if let Some(queued) = queued {
            let seconds = queued.as_secs_f64();
            match s.queue_wait.get_mut(warehouse) {
                Some(h) => h.observe(seconds),
                None => s
                    .queue_wait
                    .entry(warehouse.to_string())
                    .or_default()
                    .observe(seconds),
            }
        }
    }

    pub fn auth_failure(&self, reason: &str) {
        *lock(&self.auth_failures)
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// The counters kept here, in exposition format.
    pub fn render(&self, out: &mut String) {
        let s = lock(&self.statements);
        header(
            out,
            "sluice_queries_total",
            "counter",
            "Statements ended, by protocol, warehouse and outcome.",
        );
        let queries: BTreeMap<_, _> = s
            .queries
            .iter()
            .flat_map(|((protocol, outcome), w)| {
                w.iter()
                    .map(move |(warehouse, n)| ((*protocol, warehouse, *outcome), *n))
            })
            .collect();
        for ((protocol, warehouse, outcome), n) in queries {
            let _ = writeln!(
                out,
                "sluice_queries_total{{protocol=\"{}\",warehouse=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(protocol),
                label(warehouse)
            );
        }
        header(
            out,
            "sluice_query_duration_seconds",
            "histogram",
            "Statement latency from arrival to the last row, by protocol.",
        );
        for (protocol, h) in s.latency.iter().collect::<BTreeMap<_, _>>() {
            h.render(
                out,
                "sluice_query_duration_seconds",
                &format!("protocol=\"{}\"", label(protocol)),
            );
        }
        header(
            out,
            "sluice_queue_wait_seconds",
            "histogram",
            "Time statements waited for a worker slot, by warehouse.",
        );
        for (warehouse, h) in s.queue_wait.iter().collect::<BTreeMap<_, _>>() {
            h.render(
                out,
                "sluice_queue_wait_seconds",
                &format!("warehouse=\"{}\"", label(warehouse)),
            );
        }
        drop(s);
        header(
            out,
            "sluice_auth_failures_total",
            "counter",
            "Refused logins, by reason.",
        );
        for (reason, n) in lock(&self.auth_failures).iter() {
            let _ = writeln!(
                out,
                "sluice_auth_failures_total{{reason=\"{}\"}} {n}",
                label(reason)
            );
        }
        header(
            out,
            "sluice_result_rows_total",
            "counter",
            "Rows sent to clients.",
        );
        let _ = writeln!(
            out,
            "sluice_result_rows_total {}",
            self.rows.load(Ordering::Relaxed)
        );
        header(
            out,
            "sluice_result_bytes_total",
            "counter",
            "Arrow bytes of the rows sent to clients.",
        );
        let _ = writeln!(
            out,
            "sluice_result_bytes_total {}",
            self.bytes.load(Ordering::Relaxed)
        );
        header(
            out,
            "sluice_kept_plans_total",
            "counter",
            "Executions of prepared statements that keep their plans, by whether an earlier execution's plans served.",
        );
        for (plan, n) in [("reused", &self.plans_reused), ("made", &self.plans_made)] {
            let _ = writeln!(
                out,
                "sluice_kept_plans_total{{plan=\"{plan}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "sluice_small_queries_total",
            "counter",
            "Data queries small enough (small_query_bytes) to run in the gateway.",
        );
        let _ = writeln!(
            out,
            "sluice_small_queries_total {}",
            self.small_queries.load(Ordering::Relaxed)
        );
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line.
pub fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
        return;
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// Which gauge of [`Metrics`] a connection counts in.
type Gauge = fn(&Metrics) -> &AtomicI64;

/// A client connection, counted in its protocol's gauge while it lives.
pub struct Connection(Option<(std::sync::Arc<Metrics>, Gauge)>);

impl Connection {
    pub fn pg(metrics: Option<std::sync::Arc<Metrics>>) -> Self {
        Self::open(metrics, |m| &m.pg_connections)
    }

    pub fn flight(metrics: Option<std::sync::Arc<Metrics>>) -> Self {
        Self::open(metrics, |m| &m.flight_connections)
    }

    fn open(metrics: Option<std::sync::Arc<Metrics>>, gauge: Gauge) -> Self {
        if let Some(m) = &metrics {
            gauge(m).fetch_add(1, Ordering::Relaxed);
        }
        Self(metrics.map(|m| (m, gauge)))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((m, gauge)) = &self.0 {
            gauge(m).fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connection's stream that counts the connection while it is open (for servers that
/// take a stream of connections, as tonic does).
pub struct Counted<IO> {
    io: IO,
    _open: Connection,
}

impl<IO> Counted<IO> {
    pub fn new(io: IO, open: Connection) -> Self {
        Self { io, _open: open }
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The whole `/metrics` page (Prometheus text format): the counters and histograms, then
/// gauges read from the warehouses, the result cache, running statements and the
/// history writer. `running` is the statements between arrival and last row; `hs2` the
/// Databricks front-end's open (sessions, operations).
pub fn exposition(
    metrics: &Metrics,
    warehouses: &crate::warehouses::Warehouses,
    cache: &crate::cache::ResultCache,
    history: Option<&crate::history::History>,
    running: usize,
    hs2: (usize, usize),
) -> String {
    let (hs2_sessions, hs2_operations) = hs2;
    let mut out = String::with_capacity(8192);
    metrics.render(&mut out);
    let statuses: Vec<_> = warehouses.all().iter().map(|w| w.status()).collect();
    header(
        &mut out,
        "sluice_workers",
        "gauge",
        "Workers by warehouse and state (starting: being started).",
    );
    for s in &statuses {
        for state in ["ready", "draining", "down"] {
            let n = s.workers.iter().filter(|w| w.state == state).count();
            sample(
                &mut out,
                "sluice_workers",
                &[("warehouse", &s.name), ("state", state)],
                n,
            );
        }
        sample(
            &mut out,
            "sluice_workers",
            &[("warehouse", &s.name), ("state", "starting")],
            s.starting,
        );
    }
    header(
        &mut out,
        "sluice_queue_depth",
        "gauge",
        "Statements waiting for a worker slot.",
    );
    for s in &statuses {
        sample(
            &mut out,
            "sluice_queue_depth",
            &[("warehouse", &s.name)],
            s.queued,
        );
    }
    header(
        &mut out,
        "sluice_running_queries",
        "gauge",
        "Statements running on workers.",
    );
    for s in &statuses {
        sample(
            &mut out,
            "sluice_running_queries",
            &[("warehouse", &s.name)],
            s.running,
        );
    }
    header(
        &mut out,
        "sluice_scale_events_total",
        "counter",
        "Autoscaler decisions by warehouse and reason.",
    );
    for s in &statuses {
        for (reason, n) in &s.scale_events {
            sample(
                &mut out,
                "sluice_scale_events_total",
                &[("warehouse", &s.name), ("reason", reason)],
                n,
            );
        }
    }
    let stats = &cache.stats;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    header(
        &mut out,
        "sluice_cache_lookups_total",
        "counter",
        "Result cache lookups by result.",
    );
    for (result, n) in [
        ("hit", count(&stats.hits)),
        ("restored", count(&stats.restored)),
        ("shared", count(&stats.shared)),
        ("miss", count(&stats.misses)),
    ] {
        sample(
            &mut out,
            "sluice_cache_lookups_total",
            &[("result", result)],
            n,
        );
    }
    header(
        &mut out,
        "sluice_cache_stored_total",
        "counter",
        "Results kept by the result cache.",
    );
    sample(
        &mut out,
        "sluice_cache_stored_total",
        &[],
        count(&stats.stored),
    );
    header(
        &mut out,
        "sluice_cache_evicted_total",
        "counter",
        "Result cache entries evicted.",
    );
    sample(
        &mut out,
        "sluice_cache_evicted_total",
        &[],
        count(&stats.evicted),
    );
    let (entries, bytes) = cache.usage();
    header(
        &mut out,
        "sluice_cache_bytes",
        "gauge",
        "Memory the kept results take.",
    );
    sample(&mut out, "sluice_cache_bytes", &[], bytes);
    header(
        &mut out,
        "sluice_cache_entries",
        "gauge",
        "Results kept in memory.",
    );
    sample(&mut out, "sluice_cache_entries", &[], entries);
    header(
        &mut out,
        "sluice_open_connections",
        "gauge",
        "Open client connections (pg, flight) and sessions (hs2) by protocol.",
    );
    sample(
        &mut out,
        "sluice_open_connections",
        &[("protocol", "pg")],
        metrics
            .pg_connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    sample(
        &mut out,
        "sluice_open_connections",
        &[("protocol", "flight")],
        metrics
            .flight_connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    sample(
        &mut out,
        "sluice_open_connections",
        &[("protocol", "hs2")],
        hs2_sessions,
    );
    header(
        &mut out,
        "sluice_hs2_operations",
        "gauge",
        "Open HS2 operations.",
    );
    sample(&mut out, "sluice_hs2_operations", &[], hs2_operations);
    header(
        &mut out,
        "sluice_statements_running",
        "gauge",
        "Statements between arrival and last row.",
    );
    sample(&mut out, "sluice_statements_running", &[], running);
    if let Some(history) = history {
        header(
            &mut out,
            "sluice_history_written_total",
            "counter",
            "History records written to the metadata store.",
        );
        sample(
            &mut out,
            "sluice_history_written_total",
            &[],
            count(&history.written),
        );
        header(
            &mut out,
            "sluice_history_dropped_total",
            "counter",
            "History records lost while the store was unavailable.",
        );
        sample(
            &mut out,
            "sluice_history_dropped_total",
            &[],
            count(&history.dropped),
        );
        header(
            &mut out,
            "sluice_history_batches_total",
            "counter",
            "Commits of history records to the metadata store.",
        );
        sample(
            &mut out,
            "sluice_history_batches_total",
            &[],
            count(&history.batches),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        m.statement(
            "pg",
            "default",
            "finished",
            Duration::from_millis(3),
            Some(Duration::ZERO),
        );
        m.statement("pg", "default", "failed", Duration::from_secs(2), None);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("sluice_queries_total{protocol=\"pg\",warehouse=\"default\",outcome=\"finished\"} 1"), "{out}");
        assert!(
            out.contains("sluice_query_duration_seconds_bucket{protocol=\"pg\",le=\"0.005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("sluice_query_duration_seconds_bucket{protocol=\"pg\",le=\"2.5\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("sluice_query_duration_seconds_count{protocol=\"pg\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("sluice_queue_wait_seconds_count{warehouse=\"default\"} 1"),
            "{out}"
        );
    }
}

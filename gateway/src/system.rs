//! The rows of `system.warehouses`, `system.workers` and `system.queries`, from the
//! gateway's warehouses, and of `system.cache`, from the result cache. A session sees every
//! warehouse and worker, and its principal's own queries (all of them when it reads every
//! table, as the operator's admin tokens do); cache entries over tables it may read (the
//! statement text, and entries that depend on the catalog as one principal sees it, only
//! when it reads every table), and of `system.query_history`, from the history (its own
//! statements, everyone's with `MONITOR`).

use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use planner::system::{SystemSource, SystemTable};
use planner::{Access, QueryError, SessionInfo};

use crate::cache::ResultCache;
use crate::warehouses::Warehouses;

/// The gateway's side of the system tables. It holds the warehouses weakly: the planner
/// (which holds this) lives as long as they do.
#[derive(Debug, Default)]
pub struct SystemView {
    warehouses: std::sync::OnceLock<Weak<Warehouses>>,
    cache: std::sync::OnceLock<Weak<ResultCache>>,
    history: std::sync::OnceLock<Arc<crate::history::History>>,
}

impl SystemView {
    /// Connect the view to the warehouses once they exist.
    pub fn attach(&self, warehouses: &Arc<Warehouses>) {
        let _ = self.warehouses.set(Arc::downgrade(warehouses));
    }

    /// Connect the view to the result cache.
    pub fn attach_cache(&self, cache: &Arc<ResultCache>) {
        let _ = self.cache.set(Arc::downgrade(cache));
    }

    /// Connect the view to the query history.
    pub fn attach_history(&self, history: &Arc<crate::history::History>) {
        let _ = self.history.set(history.clone());
    }

    fn warehouses(&self) -> Option<Arc<Warehouses>> {
        self.warehouses.get().and_then(Weak::upgrade)
    }
}

fn text(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}
fn maybe_text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}
fn counts(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}
fn maybe_counts(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}
fn seconds(values: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}
fn times(values: Vec<Option<SystemTime>>) -> ArrayRef {
    let micros = values
        .into_iter()
        .map(|t| {
            t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as i64)
        })
        .collect::<Vec<_>>();
    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
}

/// Whether a session sees the queries of the principal with id `principal_id`: its own,
/// everyone's with `MONITOR`.
fn sees(access: &Access, principal_id: &str) -> bool {
    match access {
        Access::All => true,
        Access::Granted { principal: me, .. } => me.key() == principal_id || access.monitors(),
    }
}

/// The principal whose queries alone a session sees (None: everyone's).
pub fn own_queries_only(access: &Access) -> Option<String> {
    match access {
        Access::Granted { principal, .. } if !access.monitors() => Some(principal.key()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl SystemSource for SystemView {
    async fn rows(
        &self,
        table: SystemTable,
        session: &SessionInfo,
    ) -> Result<RecordBatch, QueryError> {
        let statuses = self
            .warehouses()
            .map(|w| {
                w.all()
                    .into_iter()
                    .map(|w| (w.status(), w.queries()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let columns: Vec<ArrayRef> = match table {
            SystemTable::Warehouses => {
                let s: Vec<_> = statuses.iter().map(|(s, _)| s).collect();
                let up = |st: &&workers::WarehouseStatus| {
                    ["min_workers", "queue", "replace", "distributed"]
                        .iter()
                        .map(|r| st.scale_events.get(r).copied().unwrap_or(0))
                        .sum::<u64>() as i64
                };
                let down = |st: &&workers::WarehouseStatus| {
                    ["idle", "health", "reload", "stuck"]
                        .iter()
                        .map(|r| st.scale_events.get(r).copied().unwrap_or(0))
                        .sum::<u64>() as i64
                };
                vec![
                    text(s.iter().map(|w| w.name.clone()).collect()),
                    text(s.iter().map(|w| w.state.to_string()).collect()),
                    text(
                        s.iter()
                            .map(|w| match w.config.launcher {
                                workers::Launcher::Local(_) => "local".to_string(),
                                workers::Launcher::Static { .. } => "static".to_string(),
                            })
                            .collect(),
                    ),
                    counts(s.iter().map(|w| w.config.min_workers as i64).collect()),
                    counts(s.iter().map(|w| w.config.max_workers as i64).collect()),
                    counts(
                        s.iter()
                            .map(|w| w.config.max_concurrency_per_worker as i64)
                            .collect(),
                    ),
                    counts(s.iter().map(|w| w.config.max_queued as i64).collect()),
                    seconds(
                        s.iter()
                            .map(|w| Some(w.config.queue_timeout.as_secs_f64()))
                            .collect(),
                    ),
                    seconds(
                        s.iter()
                            .map(|w| w.config.auto_stop.map(|d| d.as_secs_f64()))
                            .collect(),
                    ),
                    seconds(
                        s.iter()
                            .map(|w| w.config.statement_timeout.map(|d| d.as_secs_f64()))
                            .collect(),
                    ),
                    maybe_counts(
                        s.iter()
                            .map(|w| w.config.worker_memory_limit.map(|b| b as i64))
                            .collect(),
                    ),
                    counts(
                        s.iter()
                            .map(|w| w.workers.iter().filter(|x| x.state == "ready").count() as i64)
                            .collect(),
                    ),
                    counts(s.iter().map(|w| w.starting as i64).collect()),
                    counts(s.iter().map(|w| w.queued as i64).collect()),
                    counts(s.iter().map(|w| w.running as i64).collect()),
                    counts(s.iter().map(up).collect()),
                    counts(s.iter().map(down).collect()),
                ]
            }
            SystemTable::Workers => {
                let w: Vec<(&str, &workers::WorkerStatus)> = statuses
                    .iter()
                    .flat_map(|(s, _)| s.workers.iter().map(move |w| (s.name.as_str(), w)))
                    .collect();
                // What the worker reported (null before its first report, or a value it
                // does not have: no data cache).
                let report = |f: fn(&workers::WorkerReport) -> Option<u64>| {
                    maybe_counts(
                        w.iter()
                            .map(|(_, x)| x.report.as_ref().and_then(f).map(|v| v as i64))
                            .collect(),
                    )
                };
                vec![
                    text(w.iter().map(|(n, _)| n.to_string()).collect()),
                    counts(w.iter().map(|(_, x)| x.id as i64).collect()),
                    maybe_counts(w.iter().map(|(_, x)| x.pid.map(i64::from)).collect()),
                    text(w.iter().map(|(_, x)| x.addr.clone()).collect()),
                    text(w.iter().map(|(_, x)| x.state.to_string()).collect()),
                    counts(w.iter().map(|(_, x)| x.running as i64).collect()),
                    report(|r| Some(r.running)),
                    report(|r| Some(r.memory_reserved)),
                    report(|r| Some(r.rss_bytes)),
                    report(|r| Some(r.executed)),
                    report(|r| r.data_cache_hits),
                    report(|r| r.data_cache_misses),
                    report(|r| r.data_cache_bytes),
                    times(w.iter().map(|(_, x)| Some(x.started)).collect()),
                ]
            }
            SystemTable::Queries => {
                let q: Vec<&workers::QueryState> = statuses
                    .iter()
                    .flat_map(|(_, queries)| queries.iter())
                    .filter(|q| sees(&session.access, &q.meta.principal_id))
                    .collect();
                let distributed: Vec<Option<crate::metadata::DistributedRecord>> = q
                    .iter()
                    .map(|q| {
                        q.meta
                            .progress
                            .distribution()
                            .map(|d| crate::metadata::DistributedRecord::from_progress(&d))
                    })
                    .collect();
                vec![
                    text(q.iter().map(|q| q.meta.id.clone()).collect()),
                    text(q.iter().map(|q| q.warehouse.clone()).collect()),
                    text(q.iter().map(|q| q.meta.principal.clone()).collect()),
                    text(q.iter().map(|q| q.meta.protocol.clone()).collect()),
                    text(q.iter().map(|q| q.state.to_string()).collect()),
                    maybe_counts(q.iter().map(|q| q.worker.map(|w| w as i64)).collect()),
                    times(q.iter().map(|q| Some(q.submitted)).collect()),
                    Arc::new(Float64Array::from(
                        q.iter().map(|q| q.waited.as_secs_f64()).collect::<Vec<_>>(),
                    )),
                    seconds(
                        q.iter()
                            .map(|q| q.running_for.map(|d| d.as_secs_f64()))
                            .collect(),
                    ),
                    maybe_text(q.iter().map(|q| Some(q.meta.text.clone())).collect()),
                    maybe_counts(
                        distributed
                            .iter()
                            .map(|d| d.as_ref().map(|d| d.stages as i64))
                            .collect(),
                    ),
                    maybe_counts(
                        distributed
                            .iter()
                            .map(|d| d.as_ref().map(|d| d.tasks as i64))
                            .collect(),
                    ),
                    maybe_text(
                        distributed
                            .iter()
                            .map(|d| d.as_ref().map(|d| d.worker_list()))
                            .collect(),
                    ),
                ]
            }
            SystemTable::QueryHistory => return self.history_rows(session).await,
            SystemTable::Cache => {
                let access = &session.access;
                let everything = access.reads_all();
                let entries: Vec<_> = self
                    .cache
                    .get()
                    .and_then(Weak::upgrade)
                    .map(|c| c.entries())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| {
                        everything
                            || (e.shared
                                && e.tables.iter().all(|t| {
                                    let (schema, table) = t.split_once('.').unwrap_or(("", t));
                                    access.can_read(planner::catalog(), schema, table)
                                }))
                    })
                    .collect();
                vec![
                    text(entries.iter().map(|e| hex::encode(e.key)).collect()),
                    text(entries.iter().map(|e| e.tables.join(", ")).collect()),
                    counts(entries.iter().map(|e| e.rows as i64).collect()),
                    counts(entries.iter().map(|e| e.bytes as i64).collect()),
                    counts(
                        entries
                            .iter()
                            .map(|e| e.hits.load(std::sync::atomic::Ordering::Relaxed) as i64)
                            .collect(),
                    ),
                    times(entries.iter().map(|e| Some(e.created)).collect()),
                    text(
                        entries
                            .iter()
                            .map(|e| if e.restored { "restored" } else { "memory" }.to_string())
                            .collect(),
                    ),
                    maybe_text(
                        entries
                            .iter()
                            .map(|e| everything.then(|| e.text.clone()))
                            .collect(),
                    ),
                ]
            }
        };
        RecordBatch::try_new(table.schema(), columns)
            .map_err(|e| QueryError::internal(e.to_string()))
    }
}

impl SystemView {
    async fn history_rows(&self, session: &SessionInfo) -> Result<RecordBatch, QueryError> {
        let table = SystemTable::QueryHistory;
        let records = match self.history.get() {
            Some(history) => history
                .read(crate::metadata::HistoryFilter {
                    principal_id: own_queries_only(&session.access),
                    limit: 0,
                })
                .await
                .map_err(|e| QueryError::new(planner::ErrorKind::Unavailable, e.to_string()))?,
            None => Vec::new(),
        };
        let r = &records;
        let us = |f: fn(&crate::metadata::QueryRecord) -> u64| {
            seconds(r.iter().map(|x| Some(f(x) as f64 / 1e6)).collect())
        };
        let columns: Vec<ArrayRef> = vec![
            text(r.iter().map(|x| x.statement_id.clone()).collect()),
            text(r.iter().map(|x| x.statement_text.clone()).collect()),
            text(r.iter().map(|x| x.principal.clone()).collect()),
            text(r.iter().map(|x| x.principal_id.clone()).collect()),
            text(r.iter().map(|x| x.protocol.clone()).collect()),
            maybe_text(r.iter().map(|x| x.warehouse.clone()).collect()),
            maybe_counts(r.iter().map(|x| x.worker_id.map(|w| w as i64)).collect()),
            text(r.iter().map(|x| x.state.clone()).collect()),
            maybe_text(r.iter().map(|x| x.sqlstate.clone()).collect()),
            maybe_text(r.iter().map(|x| x.error_message.clone()).collect()),
            counts(r.iter().map(|x| x.rows as i64).collect()),
            counts(r.iter().map(|x| x.bytes as i64).collect()),
            times(
                r.iter()
                    .map(|x| Some(crate::metadata::from_micros(x.start_us)))
                    .collect(),
            ),
            times(
                r.iter()
                    .map(|x| Some(crate::metadata::from_micros(x.end_us)))
                    .collect(),
            ),
            us(|x| x.queued_us),
            us(|x| x.planning_us),
            us(|x| x.executing_us),
            us(|x| (x.end_us - x.start_us).max(0) as u64),
            text(r.iter().map(|x| x.from_cache.clone()).collect()),
            text(r.iter().map(|x| x.gateway.clone()).collect()),
            maybe_counts(
                r.iter()
                    .map(|x| x.distributed.as_ref().map(|d| d.stages as i64))
                    .collect(),
            ),
            maybe_counts(
                r.iter()
                    .map(|x| x.distributed.as_ref().map(|d| d.tasks as i64))
                    .collect(),
            ),
            maybe_text(
                r.iter()
                    .map(|x| x.distributed.as_ref().map(|d| d.worker_list()))
                    .collect(),
            ),
        ];
        RecordBatch::try_new(table.schema(), columns)
            .map_err(|e| QueryError::internal(e.to_string()))
    }
}

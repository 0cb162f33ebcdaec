//! Plans kept with a prepared statement for its next executions.
//!
//! BI tools, drivers and pgbench prepare a statement once and run it many times. The first
//! execution with a given session context and parameter values optimizes and plans it; the
//! next ones take those plans again (the physical one with its run-time state reset), as
//! long as the tables it reads are the files they were (checked like the result cache
//! checks them: each table's version, re-listed at most `metadata_refresh` after it was
//! last read). Only statements whose plans depend on nothing else keep them
//! ([`planner::reuse::reusable_reads`]).
//!
//! ```text
//!  execute(stmt, params) ─► KeptPlans::find(context, params, versions) ─hit─► Kept
//!                                   │ miss: optimize + physical plan ──keep──┘
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::common::ScalarValue;
use planner::cache_key::DataTable;
use planner::{OptimizedQuery, PlannedQuery, QueryError};

use crate::cache::ResultCache;

/// Parameter sets (and session contexts) a statement keeps plans for, the most recently
/// used first: a dashboard's filter takes a few dozen values over and over.
const KEPT_PER_STATEMENT: usize = 32;

/// How many plans are kept now, across every statement of the process, against
/// `[limits] max_kept_plans`. Each holds an optimized and a physical plan (about 30 KiB for
/// a small query); statements are bounded per principal and the memo's by count, so
/// without this 1,024 memo statements × 32 parameter sets could hold gigabytes. Past it,
/// executions plan anew each time.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// The plans a prepared statement keeps, and the tables they depend on.
#[derive(Debug)]
pub struct KeptPlans {
    tables: Vec<DataTable>,
    entries: Mutex<VecDeque<Arc<Kept>>>,
}

/// The plans of one execution.
#[derive(Debug)]
pub struct Kept {
    /// The session context and principal they were made for.
    context: String,
    params: Vec<ScalarValue>,
    /// The versions of [`KeptPlans::tables`] they were made from.
    versions: Vec<String>,
    pub optimized: OptimizedQuery,
    /// The physical plan, unless it cannot run twice ([`planner::reuse::physical_reusable`]):
    /// then only the optimized plan is kept.
    pub planned: Option<PlannedQuery>,
    /// The optimized plan's fingerprint, once the result cache asked for it.
    pub fingerprint: OnceLock<Option<[u8; 32]>>,
    /// The physical plan as a worker reads it, once encoded.
    pub encoded: OnceLock<Vec<u8>>,
    /// Counted in [`KEPT`] (and so kept by its statement).
    counted: bool,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if self.counted {
            KEPT.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl KeptPlans {
    pub fn new(tables: Vec<DataTable>) -> Self {
        Self {
            tables,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// The versions of the tables the statement reads, as of now.
    pub async fn versions(
        &self,
        cache: &ResultCache,
        state: &datafusion::execution::SessionState,
    ) -> Result<Vec<String>, QueryError> {
        let mut versions = Vec::with_capacity(self.tables.len());
        for table in &self.tables {
            versions.push(cache.version(state, table).await?);
        }
        Ok(versions)
    }

    /// The plans kept for this context and these parameters, if made from these versions
    /// (plans made from older ones are dropped).
    pub fn find(
        &self,
        context: &str,
        params: &[ScalarValue],
        versions: &[String],
    ) -> Option<Arc<Kept>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries
            .iter()
            .position(|k| k.context == context && k.params == params)?;
        if entries[at].versions != versions {
            entries.remove(at);
            return None;
        }
        let kept = entries.remove(at)?;
        entries.push_front(kept.clone());
        Some(kept)
    }

    /// Keep the plans of an execution for the next ones.
    pub fn keep(
        &self,
        context: String,
        params: Vec<ScalarValue>,
        versions: Vec<String>,
        optimized: OptimizedQuery,
        planned: Option<PlannedQuery>,
        max_kept: usize,
    ) -> Arc<Kept> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|k| !(k.context == context && k.params == params));
        // A slot in the process's budget; a statement at its own limit gives up its oldest
        // plans, whose slot comes back when they are dropped.
        let counted = if entries.len() >= KEPT_PER_STATEMENT {
            KEPT.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            KEPT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max_kept).then_some(n + 1)
            })
            .is_ok()
        };
        let kept = Arc::new(Kept {
            context,
            params,
            versions,
            optimized,
            planned,
            fingerprint: OnceLock::new(),
            encoded: OnceLock::new(),
            counted,
        });
        if !counted {
            // Used for this execution only.
            return kept;
        }
        entries.push_front(kept.clone());
        entries.truncate(KEPT_PER_STATEMENT);
        kept
    }
}

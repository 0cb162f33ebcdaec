//! `[limits]`: what one statement, one principal and one connection may hold of the
//! gateway. Every limit bounds something the process really keeps (bytes, statements,
//! sessions, connections, time), so that no signed-in principal, and nobody on the
//! network, can make it grow without end or starve everyone else.

use std::time::Duration;

/// The limits, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Statement size, expression depth and node count, checked before planning; the
    /// memory queries answered inside the gateway share.
    pub statement: planner::Limits,
    /// Longest a query answered inside the gateway may run (whatever its
    /// `statement_timeout`): it runs on the gateway's own threads.
    pub gateway_query_timeout: Duration,
    /// Flight SQL statement handles (prepared or not) one principal may hold open.
    pub max_prepared_statements: usize,
    /// HS2 sessions one principal may hold open.
    pub max_sessions: usize,
    /// HS2 operations and Statement Execution API statements one principal may hold open.
    pub max_operations: usize,
    /// Cursors one session may hold open (each holds a running query and its worker slot).
    pub max_cursors: usize,
    /// How long an open cursor may go without a FETCH before its query is stopped (its
    /// worker slot is someone else's then).
    pub cursor_idle_timeout: Duration,
    /// Bytes of Statement Execution API results one principal may have kept at once.
    pub max_stored_result_bytes: u64,
    /// Longest an HTTP client may take to send a request's headers.
    pub http_header_timeout: Duration,
    /// Most HTTP connections open at once (more wait in the kernel's queue).
    pub max_http_connections: usize,
    /// Plans kept with prepared statements across the gateway (each an optimized and a
    /// physical plan, about 30 KiB for a small query): past it, executions plan anew.
    pub max_kept_plans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            statement: planner::Limits::default(),
            gateway_query_timeout: Duration::from_secs(120),
            max_prepared_statements: 1_000,
            max_sessions: 200,
            max_operations: 1_000,
            max_cursors: 16,
            cursor_idle_timeout: Duration::from_secs(600),
            max_stored_result_bytes: 1 << 30,
            http_header_timeout: Duration::from_secs(10),
            max_http_connections: 1_024,
            max_kept_plans: 1_024,
        }
    }
}

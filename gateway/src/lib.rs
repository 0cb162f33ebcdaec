//! # gateway — the core every front-end shares
//!
//! ```text
//!  frontends/pg ─────────┐
//!  frontends/flight ─────┼─► Handler (handler.rs): login · prepare · execute
//!  frontends/databricks ─┘        │ sessions, the one error table (error.rs), limits
//!                                 ├─► planner: parse, authorize, plan
//!                                 ├─► cache: the result cache (answers never stale)
//!                                 ├─► warehouses ─► workers::Warehouse (pools of workers)
//!                                 └─► activity: running statements, history, metrics
//!  catalog (the tables and views, DDL) · system tables · metadata store · http (bearer
//!  sign-in shared by the HTTP front-ends) · files (private files of the data dir) ·
//!  databricks_sql (SHOW / DESCRIBE / USE of the Databricks paths)
//! ```
//!
//! Front-ends depend on this crate only (never on each other, never on `workers`): they
//! decode their wire protocol into [`handler::Handler`] calls and encode what comes back.
//! The types they need from the planner and the workers are re-exported here.

pub mod activity;
pub mod cache;
pub mod catalog;
pub mod cursors;
pub mod databricks_sql;
pub mod deadline;
pub mod error;
pub mod files;
pub mod handler;
pub mod history;
pub mod http;
pub mod kept;
pub mod keys;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod series;
pub mod session;
pub mod sqltext;
pub mod system;
pub mod warehouses;

pub use auth;
pub use planner;
pub use planner::{ErrorKind, QueryError};
pub use spark;
pub use spark::spark_type;
pub use workers::{BatchStream, FlightStream};

/// The Arrow forms results take on their way to clients (string views as plain strings;
/// types Flight SQL and HS2 clients read).
pub mod transfer {
    pub use workers::protocol::message_rows;
    pub use workers::worker::{for_transfer, transfer_schema};
}

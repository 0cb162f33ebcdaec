//! # gateway — the `sluice` binary
//!
//! ```text
//!  psql, drivers, BI tools ──pg wire──────► pg/ ─────┐
//!  ADBC, Flight SQL clients ──gRPC─────────► flight/ ──┼─► handler.rs (the one trait):
//!  Databricks drivers, impyla ──HS2/HTTP──► hs2/ ─────┘     auth · plan · execute
//!                                                                  │
//!                     workers::Warehouse ◄── physical plan ────────┘
//!                     (pool of `sluice worker` processes) ── record batches ──► client
//! ```
//!
//! The gateway owns listeners, sessions, configuration and the wire-code table
//! ([`error`]); front-ends only translate protocols; database behaviour lives behind
//! [`handler::Handler`].

pub mod activity;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod flight;
pub mod handler;
pub mod history;
pub mod hs2;
pub mod http;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod pg;
pub mod server;
pub mod session;
pub mod sqltext;
pub mod system;
pub mod tls;
pub mod warehouses;

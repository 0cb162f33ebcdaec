//! # gateway — the `sluice` binary
//!
//! ```text
//!  psql, drivers, BI tools ──pg wire──► pg/ (translate) ─┐
//!                                                         ├─► handler.rs (the one trait):
//!  (Flight SQL, HS2: next front-ends) ───────────────────┘     auth · plan · execute
//!                                                                  │
//!                     workers::Warehouse ◄── physical plan ────────┘
//!                     (pool of `sluice worker` processes) ── record batches ──► client
//! ```
//!
//! The gateway owns listeners, sessions, configuration and the wire-code table
//! ([`error`]); front-ends only translate protocols; database behaviour lives behind
//! [`handler::Handler`].

pub mod cli;
pub mod config;
pub mod error;
pub mod flight;
pub mod handler;
pub mod http;
pub mod pg;
pub mod server;
pub mod session;
pub mod tls;

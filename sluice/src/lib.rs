//! # sluice — the binary
//!
//! ```text
//!  main ─► cli (flags, env) ─► config (the file, resolved) ─► server::Server::start
//!            auth · planner · workers · gateway (the core) ─┐
//!            pg · flight · databricks (the front-ends) ─────┴─► listeners, TLS (tls),
//!            the operations routes /healthz /readyz /metrics /ui (http), SIGHUP, SIGTERM
//! ```
//!
//! The binary wires the crates together; it holds no database behaviour of its own. It
//! also writes the demo warehouse's data on first start (`tpch`: TPC-H generated into
//! Parquet), which the planner's catalog then reads like any other tables.

pub mod cli;
pub mod config;
pub mod http;
pub mod server;
pub mod tls;
pub mod tpch;

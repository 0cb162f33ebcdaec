//! # databricks — the Databricks front-end
//!
//! ```text
//!  POST /sql/1.0/warehouses/<w>  (and the older paths) ─► hs2: HiveServer2 Thrift calls
//!  GET  /results/<op>/<chunk>                          ─► hs2::cloudfetch: download links
//!  /api/2.0/sql/statements…                            ─► statements: the Statement
//!                                                          Execution API
//!  feature flags, token exchange                       ─► routes
//! ```
//!
//! The drivers Power BI, Tableau and Excel use (the Databricks JDBC/ODBC drivers),
//! databricks-sql-connector, `@databricks/sql`, impyla and databricks-sdk connect here.
//! Everything is translated into calls on the core's [`gateway::handler::Handler`]; the
//! crate knows nothing of planning, grants or workers.

pub mod hs2;
pub mod routes;
pub mod statements;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use gateway::handler::Handler;

/// What the Databricks routes reach.
#[derive(Clone)]
pub struct AppState {
    pub handler: Arc<dyn Handler>,
    pub hs2: Arc<hs2::Hs2>,
    pub statements: Arc<statements::Statements>,
}

/// The routes of the Databricks front-end, for the HTTP listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        // HiveServer2 over HTTP: the Databricks SQL warehouse path, its older name, and
        // the paths Hive and Databricks clusters use (which mean the default warehouse).
        .route("/sql/1.0/warehouses/{warehouse}", post(routes::thrift))
        .route("/sql/1.0/endpoints/{warehouse}", post(routes::thrift))
        .route(
            "/sql/protocolv1/o/{org}/{cluster}",
            post(routes::thrift_default),
        )
        .route("/cliservice", post(routes::thrift_default))
        .route("/results/{operation}/{chunk}", get(routes::download))
        .route(
            "/api/2.0/connector-service/feature-flags/{driver}/{version}",
            get(routes::feature_flags),
        )
        .route("/oidc/v1/token", post(routes::token_exchange))
        .route("/api/2.0/sql/statements", post(statements::execute))
        .route(
            "/api/2.0/sql/statements/{id}",
            get(statements::get).delete(statements::close),
        )
        .route(
            "/api/2.0/sql/statements/{id}/cancel",
            post(statements::cancel),
        )
        .route(
            "/api/2.0/sql/statements/{id}/result/chunks/{n}",
            get(statements::chunk),
        )
        .route(
            "/api/2.0/sql/statements/{id}/result/chunks/{n}/download",
            get(statements::download),
        )
        .with_state(state)
}

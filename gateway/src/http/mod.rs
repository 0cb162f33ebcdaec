//! The HTTP listener: health today; HS2, metrics and the admin page as they land.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use workers::Warehouse;

/// Routes served on `--http-addr`.
pub fn router(warehouse: Arc<Warehouse>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(warehouse)
}

/// 200 once every listener is up (this one answering means they are: they bind before the
/// server starts serving) and the default warehouse has a worker ready; 503 otherwise.
async fn healthz(State(warehouse): State<Arc<Warehouse>>) -> (StatusCode, Json<serde_json::Value>) {
    let status = warehouse.status();
    let ready = warehouse.is_ready();
    let body = json!({
        "status": if ready { "ok" } else { "starting" },
        "warehouses": [{
            "name": status.name,
            "queued": status.queued,
            "workers": status.workers.iter().map(|w| json!({
                "id": w.id,
                "pid": w.pid,
                "running": w.running,
            })).collect::<Vec<_>>(),
        }],
    });
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

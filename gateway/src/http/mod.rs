//! The HTTP listener: health, the caller's identity; HS2, metrics and the admin page as
//! they land. Authenticated routes take `Authorization: Bearer <token>` through
//! [`bearer_session`] and answer 401 with `WWW-Authenticate: Bearer` (RFC 6750) otherwise.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use workers::Warehouse;

use crate::handler::Handler;
use crate::session::Session;

#[derive(Clone)]
struct AppState {
    warehouse: Arc<Warehouse>,
    handler: Arc<dyn Handler>,
}

/// Routes served on `--http-addr`.
pub fn router(warehouse: Arc<Warehouse>, handler: Arc<dyn Handler>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/1.0/whoami", get(whoami))
        .with_state(AppState { warehouse, handler })
}

/// 200 once every listener is up (this one answering means they are: they bind before the
/// server starts serving) and the default warehouse has a worker ready; 503 otherwise.
async fn healthz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let warehouse = &app.warehouse;
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

/// Who the bearer token stands for, as sluice sees it.
async fn whoami(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match bearer_session(app.handler.as_ref(), &headers, "").await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let p = &session.principal;
    Json(json!({
        "id": p.id,
        "name": p.name,
        "tenant": p.tenant,
        "issuer": p.issuer,
        "roles": p.roles,
        "groups": p.groups,
        "groups_overage": p.groups_overage,
        "scopes": p.scopes,
        "reads_all_tables": session.access.reads_all(),
    }))
    .into_response()
}

/// The session of the request's bearer token, or the 401 (503 when the issuer is out of
/// reach) to answer with.
pub async fn bearer_session(
    handler: &dyn Handler,
    headers: &HeaderMap,
    database: &str,
) -> Result<Session, Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = presented else {
        return Err(unauthorized(
            "Bearer realm=\"sluice\"",
            "send Authorization: Bearer <token>",
        ));
    };
    match handler.login(token, "", database).await {
        Ok(session) => Ok(session),
        Err(reason) => {
            tracing::warn!(token = %auth::fingerprint(token), reason = reason.code(), "http request refused: {reason}");
            if crate::error::login_http_status(&reason) == StatusCode::SERVICE_UNAVAILABLE {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": "temporarily_unavailable", "message": reason.to_string() })),
                )
                    .into_response());
            }
            let description = reason.to_string().replace(['"', '\\'], "'");
            Err(unauthorized(
                &format!("Bearer realm=\"sluice\", error=\"invalid_token\", error_description=\"{description}\""),
                &reason.to_string(),
            ))
        }
    }
}

fn unauthorized(challenge: &str, message: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "unauthenticated", "message": message })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

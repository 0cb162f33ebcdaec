//! The HTTP listener's operations routes: health (`/healthz`, `/readyz`), Prometheus
//! metrics (`/metrics`), the caller's identity, the result cache's clear endpoint and the
//! admin page ([`ui`]), next to the Databricks front-end's routes (`databricks::router`),
//! all behind one guard (no credentials over plain HTTP off loopback) and served by
//! [`serve`]. Authenticated routes take `Authorization: Bearer <token>` through
//! `gateway::http::bearer_login` and answer 401 with `WWW-Authenticate: Bearer` (RFC 6750)
//! otherwise.

mod charts;
pub mod serve;
mod ui;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use gateway::handler::Handler;
use gateway::http::{bearer_login, bearer_session};

/// What the HTTP routes reach.
#[derive(Clone)]
pub struct AppState {
    pub warehouses: Arc<gateway::warehouses::Warehouses>,
    pub handler: Arc<dyn Handler>,
    pub hs2: Arc<databricks::hs2::Hs2>,
    pub cache: Arc<gateway::cache::ResultCache>,
    pub activity: Arc<gateway::activity::Activity>,
    pub metrics: Option<Arc<gateway::metrics::Metrics>>,
    /// Whether the listener speaks TLS (cookies are then `Secure`).
    pub tls: bool,
    /// Tokens in clear text are refused: a listener off loopback without TLS (unless
    /// `allow_insecure_password`).
    pub refuse_plain: bool,
    /// The admin page's sign-ins.
    pub ui_sessions: Arc<ui::UiSessions>,
}

/// Routes served on `--http-addr`.
pub fn router(state: AppState, databricks: databricks::AppState) -> Router {
    let guard = axum::middleware::from_fn_with_state(state.clone(), plain_text_guard);
    let operations = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/1.0/whoami", get(whoami))
        .route("/api/2.0/sluice/cache", delete(clear_cache))
        .route(
            "/api/2.0/sluice/queries/{statement_id}/profile",
            get(query_profile),
        )
        .route("/ui", get(ui::overview))
        .route("/ui/history", get(ui::history))
        .route("/ui/running", get(ui::running))
        .route("/ui/charts", get(ui::charts_only))
        .route("/ui/queries/{id}", get(ui::profile))
        .route("/ui/login", post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/queries/{id}/cancel", post(ui::cancel))
        .with_state(state.clone());
    operations
        .merge(databricks::router(databricks))
        .layer(guard)
}

/// Routes that take no credentials: answered even where tokens in clear text are refused.
const OPEN_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// On a listener that is off loopback and has no TLS, everything that takes a credential
/// (a bearer token, the admin page, the token exchange, signed result links) is refused,
/// as pg and Flight SQL refuse tokens there: whoever is on the network path would read them.
async fn plain_text_guard(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if app.refuse_plain && !OPEN_ROUTES.contains(&request.uri().path()) {
        let message = "this server accepts credentials only over TLS (https): start it with \
                       --tls-cert/--tls-key or --tls-self-signed, or listen on loopback";
        return (
            StatusCode::FORBIDDEN,
            [(databricks::hs2::ERROR_HEADER, message)],
            Json(json!({ "error_code": "PERMISSION_DENIED", "message": message })),
        )
            .into_response();
    }
    next.run(request).await
}

/// For a load balancer: 200 while this gateway takes new statements (the default warehouse
/// can run them), 503 while it starts or drains after SIGTERM.
async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let draining = app.activity.is_draining();
    let ready = !draining
        && app
            .warehouses
            .default_warehouse()
            .is_some_and(|w| w.is_ready());
    let status = if draining {
        "draining"
    } else if ready {
        "ready"
    } else {
        "starting"
    };
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({ "status": status, "running": app.activity.running() })),
    )
}

/// Prometheus text exposition: the query path's counters, and the state of warehouses,
/// workers, the result cache, sessions and the history, read now.
async fn metrics(State(app): State<AppState>) -> Response {
    let Some(metrics) = &app.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are turned off ([metrics] enabled = false)\n",
        )
            .into_response();
    };
    let out = gateway::metrics::exposition(
        metrics,
        &app.warehouses,
        &app.cache,
        app.activity.history.as_deref(),
        app.activity.running(),
        app.hs2.counts(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// 200 once every listener is up (this one answering means they are: they bind before the
/// server starts serving) and the default warehouse can take queries (a worker is ready,
/// or it cold-starts one); 503 otherwise. The body lists every warehouse.
async fn healthz(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    let ready = app
        .warehouses
        .default_warehouse()
        .is_some_and(|w| w.is_ready());
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ready { "ok" } else { "starting" };
    // The details (workers' pids and addresses, counters) are for operators: a bearer
    // token with the MONITOR privilege.
    let monitor = headers.contains_key(header::AUTHORIZATION)
        && bearer_login(app.handler.as_ref(), &headers, "")
            .await
            .is_ok_and(|s| s.access.monitors());
    if !monitor {
        return (code, Json(json!({ "status": status })));
    }
    let (hs2_sessions, hs2_operations) = app.hs2.counts();
    let warehouses: Vec<serde_json::Value> = app
        .warehouses
        .all()
        .iter()
        .map(|w| {
            let status = w.status();
            json!({
                "name": status.name,
                "state": status.state,
                "queued": status.queued,
                "starting": status.starting,
                "workers": status.workers.iter().map(|w| json!({
                    "id": w.id,
                    "pid": w.pid,
                    "addr": w.addr,
                    "state": w.state,
                    "running": w.running,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (entries, bytes) = app.cache.usage();
    let stats = &app.cache.stats;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let body = json!({
        "status": status,
        "hs2": { "sessions": hs2_sessions, "operations": hs2_operations },
        "cache": {
            "entries": entries,
            "bytes": bytes,
            "budget": app.cache.config().memory_budget,
            "hits": count(&stats.hits),
            "restored": count(&stats.restored),
            "shared": count(&stats.shared),
            "misses": count(&stats.misses),
            "stored": count(&stats.stored),
            "too_large": count(&stats.too_large),
            "evicted": count(&stats.evicted),
        },
        "warehouses": warehouses,
    });
    (code, Json(body))
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

/// A statement's profile (the plan that ran, with its operators' metrics), as JSON: for
/// the principal that ran it, and for principals with `MONITOR`. Others get the same 404 as
/// for a statement that does not exist.
async fn query_profile(
    State(app): State<AppState>,
    axum::extract::Path(statement_id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match bearer_session(app.handler.as_ref(), &headers, "").await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error_code": "RESOURCE_DOES_NOT_EXIST",
                "message": "no profile of this statement is kept (it does not exist, is not \
                    yours, was answered by the result cache or without a plan, or has aged out)",
            })),
        )
            .into_response()
    };
    let Some(history) = &app.activity.history else {
        return not_found();
    };
    if statement_id.len() > 128 {
        return not_found();
    }
    match history.profile(&statement_id).await {
        Ok(Some(profile))
            if session.access.monitors()
                || profile.record.principal_id == session.principal.key() =>
        {
            Json(profile.to_json()).into_response()
        }
        Ok(_) => not_found(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error_code": "TEMPORARILY_UNAVAILABLE", "message": e.to_string() })),
        )
            .into_response(),
    }
}

/// Drop every result-cache entry (memory and persistent tier). Only for principals that
/// read every table (the operator's admin tokens): 403 for others.
async fn clear_cache(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match bearer_session(app.handler.as_ref(), &headers, "").await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    if !session.access.reads_all() {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "permission_denied",
                "message": format!("{} may not clear the result cache (it needs the admin role)", session.access.who()),
            })),
        )
            .into_response();
    }
    match app.cache.clear().await {
        Ok(cleared) => {
            tracing::info!(principal = %session.principal.name, cleared, "result cache cleared");
            Json(json!({ "cleared": cleared })).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "storage", "message": e.message })),
        )
            .into_response(),
    }
}

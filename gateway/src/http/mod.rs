//! The HTTP listener: health (`/healthz`, `/readyz`), Prometheus metrics (`/metrics`), the
//! caller's identity, the HiveServer2 endpoint of the Databricks drivers ([`hs2`]), the
//! Statement Execution API ([`statements`]) and the admin page ([`ui`]). Authenticated
//! routes take `Authorization: Bearer <token>` through [`bearer_login`] and answer 401
//! with `WWW-Authenticate: Bearer` (RFC 6750) otherwise.

mod hs2;
pub mod serve;
pub mod statements;
mod ui;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::handler::Handler;
use crate::session::Session;

/// What the HTTP routes reach.
#[derive(Clone)]
pub struct AppState {
    pub warehouses: Arc<crate::warehouses::Warehouses>,
    pub handler: Arc<dyn Handler>,
    pub hs2: Arc<crate::hs2::Hs2>,
    pub cache: Arc<crate::cache::ResultCache>,
    pub activity: Arc<crate::activity::Activity>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    pub statements: Arc<statements::Statements>,
    /// Whether the listener speaks TLS (cookies are then `Secure`).
    pub tls: bool,
    /// Tokens in clear text are refused: a listener off loopback without TLS (unless
    /// `allow_insecure_password`).
    pub refuse_plain: bool,
    /// The admin page's sign-ins.
    pub ui_sessions: Arc<ui::UiSessions>,
}

/// Routes served on `--http-addr`.
pub fn router(state: AppState) -> Router {
    let guard = axum::middleware::from_fn_with_state(state.clone(), plain_text_guard);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/1.0/whoami", get(whoami))
        // HiveServer2 over HTTP: the Databricks SQL warehouse path, its older name, and
        // the paths Hive and Databricks clusters use (which mean the default warehouse).
        .route("/sql/1.0/warehouses/{warehouse}", post(hs2::thrift))
        .route("/sql/1.0/endpoints/{warehouse}", post(hs2::thrift))
        .route(
            "/sql/protocolv1/o/{org}/{cluster}",
            post(hs2::thrift_default),
        )
        .route("/cliservice", post(hs2::thrift_default))
        .route("/results/{operation}/{chunk}", get(hs2::download))
        .route(
            "/api/2.0/connector-service/feature-flags/{driver}/{version}",
            get(hs2::feature_flags),
        )
        .route("/oidc/v1/token", post(hs2::token_exchange))
        .route("/api/2.0/sluice/cache", delete(clear_cache))
        .route("/ui", get(ui::overview))
        .route("/ui/history", get(ui::history))
        .route("/ui/running", get(ui::running))
        .route("/ui/login", post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/queries/{id}/cancel", post(ui::cancel))
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
        .layer(guard)
        .with_state(state)
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
            [(crate::hs2::ERROR_HEADER, message)],
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
    use crate::metrics::{header as help, sample};
    let Some(metrics) = &app.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are turned off ([metrics] enabled = false)\n",
        )
            .into_response();
    };
    let mut out = String::with_capacity(8192);
    metrics.render(&mut out);
    let statuses: Vec<_> = app.warehouses.all().iter().map(|w| w.status()).collect();
    help(
        &mut out,
        "sluice_workers",
        "gauge",
        "Workers by warehouse and state (starting: being started).",
    );
    for s in &statuses {
        for state in ["ready", "draining", "down"] {
            let n = s.workers.iter().filter(|w| w.state == state).count();
            sample(
                &mut out,
                "sluice_workers",
                &[("warehouse", &s.name), ("state", state)],
                n,
            );
        }
        sample(
            &mut out,
            "sluice_workers",
            &[("warehouse", &s.name), ("state", "starting")],
            s.starting,
        );
    }
    help(
        &mut out,
        "sluice_queue_depth",
        "gauge",
        "Statements waiting for a worker slot.",
    );
    for s in &statuses {
        sample(
            &mut out,
            "sluice_queue_depth",
            &[("warehouse", &s.name)],
            s.queued,
        );
    }
    help(
        &mut out,
        "sluice_running_queries",
        "gauge",
        "Statements running on workers.",
    );
    for s in &statuses {
        sample(
            &mut out,
            "sluice_running_queries",
            &[("warehouse", &s.name)],
            s.running,
        );
    }
    help(
        &mut out,
        "sluice_scale_events_total",
        "counter",
        "Autoscaler decisions by warehouse and reason.",
    );
    for s in &statuses {
        for (reason, n) in &s.scale_events {
            sample(
                &mut out,
                "sluice_scale_events_total",
                &[("warehouse", &s.name), ("reason", reason)],
                n,
            );
        }
    }
    let stats = &app.cache.stats;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    help(
        &mut out,
        "sluice_cache_lookups_total",
        "counter",
        "Result cache lookups by result.",
    );
    for (result, n) in [
        ("hit", count(&stats.hits)),
        ("restored", count(&stats.restored)),
        ("shared", count(&stats.shared)),
        ("miss", count(&stats.misses)),
    ] {
        sample(
            &mut out,
            "sluice_cache_lookups_total",
            &[("result", result)],
            n,
        );
    }
    help(
        &mut out,
        "sluice_cache_stored_total",
        "counter",
        "Results kept by the result cache.",
    );
    sample(
        &mut out,
        "sluice_cache_stored_total",
        &[],
        count(&stats.stored),
    );
    help(
        &mut out,
        "sluice_cache_evicted_total",
        "counter",
        "Result cache entries evicted.",
    );
    sample(
        &mut out,
        "sluice_cache_evicted_total",
        &[],
        count(&stats.evicted),
    );
    let (entries, bytes) = app.cache.usage();
    help(
        &mut out,
        "sluice_cache_bytes",
        "gauge",
        "Memory the kept results take.",
    );
    sample(&mut out, "sluice_cache_bytes", &[], bytes);
    help(
        &mut out,
        "sluice_cache_entries",
        "gauge",
        "Results kept in memory.",
    );
    sample(&mut out, "sluice_cache_entries", &[], entries);
    let (hs2_sessions, hs2_operations) = app.hs2.counts();
    help(
        &mut out,
        "sluice_open_connections",
        "gauge",
        "Open client connections (pg, flight) and sessions (hs2) by protocol.",
    );
    sample(
        &mut out,
        "sluice_open_connections",
        &[("protocol", "pg")],
        metrics
            .pg_connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    sample(
        &mut out,
        "sluice_open_connections",
        &[("protocol", "flight")],
        metrics
            .flight_connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    sample(
        &mut out,
        "sluice_open_connections",
        &[("protocol", "hs2")],
        hs2_sessions,
    );
    help(
        &mut out,
        "sluice_hs2_operations",
        "gauge",
        "Open HS2 operations.",
    );
    sample(&mut out, "sluice_hs2_operations", &[], hs2_operations);
    help(
        &mut out,
        "sluice_statements_running",
        "gauge",
        "Statements between arrival and last row.",
    );
    sample(
        &mut out,
        "sluice_statements_running",
        &[],
        app.activity.running(),
    );
    if let Some(history) = &app.activity.history {
        help(
            &mut out,
            "sluice_history_written_total",
            "counter",
            "History records written to the metadata store.",
        );
        sample(
            &mut out,
            "sluice_history_written_total",
            &[],
            count(&history.written),
        );
        help(
            &mut out,
            "sluice_history_dropped_total",
            "counter",
            "History records lost while the store was unavailable.",
        );
        sample(
            &mut out,
            "sluice_history_dropped_total",
            &[],
            count(&history.dropped),
        );
        help(
            &mut out,
            "sluice_history_batches_total",
            "counter",
            "Commits of history records to the metadata store.",
        );
        sample(
            &mut out,
            "sluice_history_batches_total",
            &[],
            count(&history.batches),
        );
    }
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

/// `application/x-www-form-urlencoded` text (a form body or a query string) as pairs. A
/// part that does not decode (a bad `%` escape, not UTF-8) is kept as it was sent.
pub fn form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |t: &str| percent_decode(t).unwrap_or_else(|| t.to_string());
            (decode(k), decode(v))
        })
        .collect()
}

/// `%XX` escapes and `+` decoded; None when an escape is malformed or the result is not
/// UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Scheme and host the client reached us by (its `Host`, if it is a plain host name), for
/// links it is to follow back (CloudFetch, EXTERNAL_LINKS).
pub fn base_url(headers: &HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// Why a bearer token was refused: the HTTP status, a message for the client, and the
/// `WWW-Authenticate` challenge to send with a 401.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub challenge: Option<String>,
}

/// The session of the request's bearer token, or why it was refused (401; 503 when the
/// issuer is out of reach).
pub async fn bearer_login(
    handler: &dyn Handler,
    headers: &HeaderMap,
    database: &str,
) -> Result<Session, Refusal> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = presented else {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "send Authorization: Bearer <token>".into(),
            challenge: Some("Bearer realm=\"sluice\"".into()),
        });
    };
    handler.login(token, "", database).await.map_err(|reason| {
        tracing::warn!(token = %auth::fingerprint(token), reason = reason.code(), "http request refused: {reason}");
        if crate::error::login_http_status(&reason) == StatusCode::SERVICE_UNAVAILABLE {
            return Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: reason.to_string(),
                challenge: None,
            };
        }
        let description = reason.to_string().replace(['"', '\\'], "'");
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: reason.to_string(),
            challenge: Some(format!(
                "Bearer realm=\"sluice\", error=\"invalid_token\", error_description=\"{description}\""
            )),
        }
    })
}

/// The session of the request's bearer token, or the JSON 401/503 response to answer with.
pub async fn bearer_session(
    handler: &dyn Handler,
    headers: &HeaderMap,
    database: &str,
) -> Result<Session, Response> {
    bearer_login(handler, headers, database)
        .await
        .map_err(|refused| {
            if refused.status == StatusCode::SERVICE_UNAVAILABLE {
                return (
                    refused.status,
                    Json(json!({ "error": "temporarily_unavailable", "message": refused.message })),
                )
                    .into_response();
            }
            unauthorized(
                refused.challenge.as_deref().unwrap_or("Bearer"),
                &refused.message,
            )
        })
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

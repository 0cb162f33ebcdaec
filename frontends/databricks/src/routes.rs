//! HTTP routes of the HiveServer2 front-end: the Thrift endpoint, result downloads, and
//! the side endpoints the Databricks clients call on the same host (feature flags, the
//! token exchange of their token federation).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::hs2::{Reply, ERROR_HEADER};
use crate::AppState;

/// `POST /sql/1.0/warehouses/<warehouse>`: one Thrift call.
pub async fn thrift(
    State(app): State<AppState>,
    Path(warehouse): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    call(&app, &warehouse, &headers, body).await
}

/// Hive's `/cliservice` and Databricks clusters' `/sql/protocolv1/o/…`: the default
/// warehouse.
pub async fn thrift_default(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    call(&app, "default", &headers, body).await
}

async fn call(app: &AppState, warehouse: &str, headers: &HeaderMap, body: Body) -> Response {
    // The token first: nothing of the body is read (or kept) for a caller who is not
    // signed in.
    let login = match gateway::http::bearer_login(app.handler.as_ref(), headers, warehouse).await {
        Ok(session) => session,
        Err(refused) => {
            let mut reply = crate::hs2::http_error(refused.status, &refused.message);
            if let Some(challenge) = refused.challenge {
                reply.headers.push(("www-authenticate", challenge));
            }
            return reply.into_response();
        }
    };
    let limit = app.hs2.max_request_bytes();
    let too_large = || {
        Reply {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            body: Vec::new(),
            headers: vec![(
                ERROR_HEADER,
                format!("the request is larger than the {limit} bytes a Thrift call may have"),
            )],
        }
        .into_response()
    };
    // Refuse an announced oversized body before reading any of it.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return too_large();
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => return too_large(),
    };
    app.hs2
        .call(warehouse, headers, login, &body)
        .await
        .into_response()
}

/// `GET /results/<operation>/<chunk>?expires=…&sig=…`: a download link (no Authorization
/// header: the signature is the credential).
pub async fn download(
    State(app): State<AppState>,
    Path((operation, chunk)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    app.hs2
        .download(&operation, &chunk, uri.query().unwrap_or_default())
        .await
}

/// `GET /api/2.0/connector-service/feature-flags/<driver>/<version>`: the Databricks
/// clients ask for remote feature flags on every connect; sluice sets none.
pub async fn feature_flags(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = gateway::http::bearer_session(app.handler.as_ref(), &headers, "").await {
        return refused;
    }
    Json(json!({ "flags": [], "ttl_seconds": 900 })).into_response()
}

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `POST /oidc/v1/token`: RFC 8693 token exchange. The Databricks clients exchange an
/// IdP token whose issuer is another host (every Entra token) for one of the warehouse's;
/// sluice accepts the IdP's tokens themselves, so a valid subject token is answered with
/// itself, and anything else gets a clear 400.
pub async fn token_exchange(State(app): State<AppState>, body: Bytes) -> Response {
    let form = gateway::http::form(&String::from_utf8_lossy(&body));
    let refuse = |status: StatusCode, error: &str, description: String| {
        (
            status,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some(TOKEN_EXCHANGE) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type must be {TOKEN_EXCHANGE}"),
        );
    }
    let Some(token) = form.get("subject_token").filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token is missing".into(),
        );
    };
    match app.handler.login(token, "", "").await {
        Ok(_) => Json(json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
        }))
        .into_response(),
        Err(reason) => {
            tracing::warn!(token = %gateway::auth::fingerprint(token), reason = reason.code(), "token exchange refused: {reason}");
            if gateway::error::login_http_status(&reason) == StatusCode::SERVICE_UNAVAILABLE {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    reason.to_string(),
                )
            } else {
                refuse(StatusCode::BAD_REQUEST, "invalid_grant", reason.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::http::{form, percent_decode};

    #[test]
    fn forms_decode() {
        let f = form("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c&scope=sql+x");
        assert_eq!(f["grant_type"], TOKEN_EXCHANGE);
        assert_eq!(f["subject_token"], "a.b.c");
        assert_eq!(f["scope"], "sql x");
        assert!(percent_decode("%zz").is_none());
    }
}

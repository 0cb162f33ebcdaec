//! What the HTTP front-ends (the Databricks routes, the operations routes and the admin
//! page) share: sign-in by bearer token, the base URL links point back to, form decoding.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::handler::Handler;
use crate::session::Session;

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

/// Text for a query string: every byte but the unreserved ones (RFC 3986) as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

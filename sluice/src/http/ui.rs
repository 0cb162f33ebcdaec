//! The admin page at `/ui`: server-rendered HTML (no scripts fetched from anywhere; one
//! small inline script refreshes the running list). Sign-in takes a token (the dev token,
//! an Entra access token), keeps it in the gateway and gives the browser a random session
//! id in an HttpOnly, SameSite=Strict cookie scoped to `/ui` (the token itself never goes
//! back to the browser); every request checks the token again and needs the `MONITOR`
//! privilege. A sign-in lasts [`UI_SESSION_TTL`] at most. Forms post back to `/ui/…`; a
//! post whose `Origin` is another site is refused.
//!
//! ```text
//!  /ui                 warehouses (workers, queue), running statements (cancel), cache
//!  /ui/history         query history with filters (principal, state, protocol, text)
//!  /ui/running         the running list alone (what the page refreshes)
//!  /ui/login /ui/logout /ui/queries/{id}/cancel     forms
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use gateway::http::form;
use gateway::session::Session;

const COOKIE: &str = "sluice_ui";

/// Longest an admin page sign-in lasts.
pub const UI_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// Admin page sign-ins kept at once (the oldest goes first).
const MAX_UI_SESSIONS: usize = 1024;

/// The admin page's sign-ins: session id (the cookie) → the token it signed in with.
#[derive(Default)]
pub struct UiSessions(std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>);

impl UiSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new sign-in: its session id.
    fn open(&self, token: String) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut sessions = self.lock();
        sessions.retain(|_, (_, at)| at.elapsed() < UI_SESSION_TTL);
        if sessions.len() >= MAX_UI_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), (token, std::time::Instant::now()));
        id
    }

    /// The token a live session id signed in with.
    fn token(&self, id: &str) -> Option<String> {
        let sessions = self.lock();
        let (token, at) = sessions.get(id)?;
        (at.elapsed() < UI_SESSION_TTL).then(|| token.clone())
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{background:#0b3954;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;opacity:.8}
main{padding:16px 20px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:8px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.sql{font-family:ui-monospace,monospace;max-width:640px;overflow-wrap:anywhere}
.FAILED{color:#b42318}.CANCELED{color:#9a6700}.FINISHED{color:#1a7f37}
form.inline{display:inline}button{cursor:pointer}.err{color:#b42318}
.filters input,.filters select{margin-right:8px}
";

/// Text made safe for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A form field's value ("" when absent).
fn field<'a>(pairs: &'a HashMap<String, String>, name: &str) -> &'a str {
    pairs.get(name).map(String::as_str).unwrap_or("")
}

fn page(title: &str, who: Option<&str>, body: &str) -> String {
    let nav = match who {
        Some(who) => format!(
            "<a href=\"/ui\">Overview</a><a href=\"/ui/history\">Query history</a>\
             <span class=\"who\">{}</span><form class=\"inline\" method=\"post\" action=\"/ui/logout\">\
             <button id=\"logout\">Sign out</button></form>",
            esc(who)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · sluice</title>\
         <style>{STYLE}</style></head><body><header><strong>sluice</strong>{nav}</header>\
         <main>{body}</main></body></html>",
        esc(title)
    )
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let error = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"err\" id=\"error\">{}</p>", esc(message))
    };
    let body = format!(
        "<h2>Sign in</h2>{error}<form method=\"post\" action=\"/ui/login\">\
         <label>Access token <input type=\"password\" name=\"token\" id=\"token\" size=\"60\" autocomplete=\"off\"></label> \
         <button id=\"signin\">Sign in</button></form>\
         <p>Use an access token of a principal with the <code>MONITOR</code> privilege \
         (the dev token has it).</p>"
    );
    (status, Html(page("Sign in", None, &body))).into_response()
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
}

/// The signed-in operator, or the page to answer with instead.
async fn operator(app: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(token) = cookie_session(headers).and_then(|id| app.ui_sessions.token(&id)) else {
        return Err(login_page(StatusCode::OK, ""));
    };
    let session = app
        .handler
        .login(&token, "", "")
        .await
        .map_err(|e| login_page(StatusCode::UNAUTHORIZED, &format!("Sign in again: {e}")))?;
    if !session.access.monitors() {
        return Err(login_page(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not use the admin page: it needs the MONITOR privilege",
                session.principal.name
            ),
        ));
    }
    Ok(session)
}

/// A form post from another site (a cross-site request) is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn ago(t: SystemTime) -> String {
    let secs = t.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    format!("{secs:.1} s")
}

fn when(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `POST /ui/login`.
pub(super) async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(&headers) {
        return login_page(StatusCode::FORBIDDEN, "The sign-in came from another site.");
    }
    let pairs = form(&String::from_utf8_lossy(&body));
    let token = field(&pairs, "token").trim().to_string();
    if token.is_empty() {
        return login_page(StatusCode::BAD_REQUEST, "Enter an access token.");
    }
    let session = match app.handler.login(&token, "", "").await {
        Ok(s) => s,
        Err(e) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                &format!("The token was refused: {e}"),
            )
        }
    };
    if !session.access.monitors() {
        return login_page(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not use the admin page: it needs the MONITOR privilege",
                session.principal.name
            ),
        );
    }
    tracing::info!(principal = %session.principal.name, "admin page sign-in");
    let secure = if app.tls { "; Secure" } else { "" };
    let id = app.ui_sessions.open(token);
    let max_age = UI_SESSION_TTL.as_secs();
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui".to_string()),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
                ),
            ),
        ],
    )
        .into_response()
}

/// `POST /ui/logout`.
pub(super) async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_session(&headers) {
        app.ui_sessions.close(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

/// `POST /ui/queries/{id}/cancel`.
pub(super) async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    let session = match operator(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let found = app.activity.cancel(&id, &session.principal.name);
    tracing::info!(query_id = %id, principal = %session.principal.name, found, "statement cancelled from the admin page");
    see_other(if found {
        "/ui?cancelled=1"
    } else {
        "/ui?gone=1"
    })
}

fn running_table(app: &AppState) -> String {
    // Where each statement is in its warehouse (queued, on which worker).
    let mut placement = std::collections::HashMap::new();
    for warehouse in app.warehouses.all() {
        for q in warehouse.queries() {
            placement.insert(q.meta.id.clone(), (q.state, q.worker));
        }
    }
    let running = app.activity.snapshot();
    let mut out = String::from(
        "<table id=\"running\"><tr><th>Statement</th><th>Principal</th><th>Protocol</th>\
         <th>Warehouse</th><th>State</th><th>Worker</th><th>For</th><th>SQL</th><th></th></tr>",
    );
    for r in &running {
        let started = r.started;
        let r = &r.info;
        let (state, worker) = placement
            .get(&r.id)
            .map(|(s, w)| (*s, w.map(|w| w.to_string()).unwrap_or_default()))
            .unwrap_or(("planning", String::new()));
        let _ = write!(
            out,
            "<tr data-id=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td>{worker}</td>\
             <td>{}</td><td class=\"sql\">{}</td><td><form class=\"inline\" method=\"post\" \
             action=\"/ui/queries/{id}/cancel\"><button class=\"cancel\">Cancel</button></form></td></tr>",
            esc(&r.principal),
            esc(r.protocol),
            esc(r.warehouse.as_deref().unwrap_or("")),
            ago(started),
            esc(&r.text),
            id = esc(&r.id),
        );
    }
    if running.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"none\">Nothing is running.</td></tr>");
    }
    out.push_str("</table>");
    out
}

/// `GET /ui/running`: the running list alone.
pub(super) async fn running(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(page) = operator(&app, &headers).await {
        return page;
    }
    Html(running_table(&app)).into_response()
}

/// `GET /ui`.
pub(super) async fn overview(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = match operator(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let query = form(uri.query().unwrap_or_default());
    let mut body = String::new();
    if field(&query, "cancelled") == "1" {
        body.push_str("<p id=\"notice\">Cancel requested.</p>");
    } else if field(&query, "gone") == "1" {
        body.push_str("<p id=\"notice\">That statement had already ended.</p>");
    }
    body.push_str(
        "<h2>Warehouses</h2><table id=\"warehouses\"><tr><th>Name</th><th>State</th><th>Workers</th>\
         <th>Min / max</th><th>Starting</th><th>Queued</th><th>Running</th><th>Scale events</th></tr>",
    );
    let mut workers = String::from(
        "<h2>Workers</h2><table id=\"workers\"><tr><th>Warehouse</th><th>Id</th><th>Pid</th>\
         <th>Address</th><th>State</th><th>Running</th><th>RSS</th><th>Executed</th><th>Up</th></tr>",
    );
    for w in app.warehouses.all() {
        let s = w.status();
        let events: Vec<String> = s
            .scale_events
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            s.state,
            s.workers.iter().filter(|w| w.state == "ready").count(),
            s.config.min_workers,
            s.config.max_workers,
            s.starting,
            s.queued,
            s.running,
            esc(&events.join(", ")),
        );
        for x in &s.workers {
            let _ = write!(
                workers,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                x.id,
                x.pid.map(|p| p.to_string()).unwrap_or_default(),
                esc(&x.addr),
                x.state,
                x.running,
                x.report
                    .as_ref()
                    .map(|r| format!("{:.1} MiB", r.rss_bytes as f64 / 1048576.0))
                    .unwrap_or_default(),
                x.report.as_ref().map(|r| r.executed.to_string()).unwrap_or_default(),
                ago(x.started),
            );
        }
    }
    body.push_str("</table>");
    workers.push_str("</table>");
    body.push_str(&workers);
    body.push_str("<h2>Running statements</h2><div id=\"running-list\">");
    body.push_str(&running_table(&app));
    body.push_str("</div>");
    let (entries, bytes) = app.cache.usage();
    let stats = &app.cache.stats;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let _ = write!(
        body,
        "<h2>Result cache</h2><table id=\"cache\"><tr><th>Entries</th><th>Bytes</th><th>Budget</th>\
         <th>Hits</th><th>Shared</th><th>Restored</th><th>Misses</th><th>Stored</th><th>Evicted</th></tr>\
         <tr><td>{entries}</td><td>{bytes}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        app.cache.config().memory_budget,
        n(&stats.hits),
        n(&stats.shared),
        n(&stats.restored),
        n(&stats.misses),
        n(&stats.stored),
        n(&stats.evicted),
    );
    // The running list refreshes itself (a fragment from this server, every 2 s).
    body.push_str(
        "<script>setInterval(async()=>{try{const r=await fetch('/ui/running',{credentials:'same-origin'});\
         if(r.ok){document.getElementById('running-list').innerHTML=await r.text();}}catch(e){}},2000);</script>",
    );
    Html(page("Overview", Some(&session.principal.name), &body)).into_response()
}

/// `GET /ui/history?principal=&state=&protocol=&text=&limit=`.
pub(super) async fn history(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match operator(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let query = form(uri.query().unwrap_or_default());
    let principal = field(&query, "principal").trim().to_string();
    let state = field(&query, "state").trim().to_ascii_uppercase();
    let protocol = field(&query, "protocol").trim().to_ascii_lowercase();
    let text = field(&query, "text").trim().to_ascii_lowercase();
    let limit: usize = field(&query, "limit").parse().unwrap_or(100).clamp(1, 1000);
    let mut body = String::from("<h2>Query history</h2>");
    let option = |value: &str, current: &str, label: &str| {
        format!(
            "<option value=\"{value}\"{}>{label}</option>",
            if value == current { " selected" } else { "" }
        )
    };
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/ui/history\">\
         Principal <input name=\"principal\" id=\"f-principal\" value=\"{}\">\
         State <select name=\"state\" id=\"f-state\">{}{}{}{}</select>\
         Protocol <select name=\"protocol\" id=\"f-protocol\">{}{}{}{}{}</select>\
         SQL contains <input name=\"text\" id=\"f-text\" value=\"{}\">\
         Rows <input name=\"limit\" size=\"4\" value=\"{limit}\">\
         <button id=\"filter\">Filter</button></form>",
        esc(&principal),
        option("", &state, "any"),
        option("FINISHED", &state, "finished"),
        option("FAILED", &state, "failed"),
        option("CANCELED", &state, "canceled"),
        option("", &protocol, "any"),
        option("pg", &protocol, "pg"),
        option("flight", &protocol, "flight"),
        option("hs2", &protocol, "hs2"),
        option("rest", &protocol, "rest"),
        esc(&text),
    );
    let Some(history) = &app.activity.history else {
        body.push_str(
            "<p>Query history is turned off (<code>[history] enabled = false</code>).</p>",
        );
        return Html(page("Query history", Some(&session.principal.name), &body)).into_response();
    };
    let records = match history
        .read(gateway::metadata::HistoryFilter {
            principal_id: None,
            limit: 0,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"err\">The history cannot be read: {}</p>",
                esc(&e.to_string())
            );
            return Html(page("Query history", Some(&session.principal.name), &body))
                .into_response();
        }
    };
    body.push_str(
        "<table id=\"history\"><tr><th>Ended</th><th>Statement</th><th>Principal</th><th>Protocol</th>\
         <th>Warehouse</th><th>Worker</th><th>State</th><th>Rows</th><th>Queued</th><th>Total</th>\
         <th>Cache</th><th>SQL</th><th>Error</th></tr>",
    );
    let mut shown = 0;
    for r in records.iter().filter(|r| {
        (principal.is_empty()
            || r.principal.eq_ignore_ascii_case(&principal)
            || r.principal_id == principal)
            && (state.is_empty() || r.state == state)
            && (protocol.is_empty() || r.protocol == protocol)
            && (text.is_empty() || r.statement_text.to_ascii_lowercase().contains(&text))
    }) {
        if shown >= limit {
            break;
        }
        shown += 1;
        let _ = write!(
            body,
            "<tr class=\"record\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"{state}\">{state}</td><td>{}</td><td>{:.3} s</td><td>{:.3} s</td><td>{}</td>\
             <td class=\"sql\">{}</td><td>{}</td></tr>",
            when(r.end_us),
            esc(&r.statement_id),
            esc(&r.principal),
            esc(&r.protocol),
            esc(r.warehouse.as_deref().unwrap_or("")),
            r.worker_id.map(|w| w.to_string()).unwrap_or_default(),
            r.rows,
            r.queued_us as f64 / 1e6,
            (r.end_us - r.start_us) as f64 / 1e6,
            esc(&r.from_cache),
            esc(&r.statement_text),
            esc(&match (&r.sqlstate, &r.error_message) {
                (Some(code), Some(m)) => format!("{code}: {m}"),
                _ => String::new(),
            }),
            state = esc(&r.state),
        );
    }
    body.push_str("</table>");
    let _ = write!(body, "<p id=\"shown\">{shown} statements shown.</p>");
    Html(page("Query history", Some(&session.principal.name), &body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_html_escapes() {
        let pairs = form("token=a%2Bb%3D&text=select+1&x");
        assert_eq!(field(&pairs, "token"), "a+b=");
        assert_eq!(field(&pairs, "text"), "select 1");
        assert_eq!(field(&pairs, "x"), "");
        assert_eq!(field(&pairs, "missing"), "");
        assert_eq!(form("bad=%zz%")["bad"], "%zz%");
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }
}

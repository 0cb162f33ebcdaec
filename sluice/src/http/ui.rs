//! The admin page at `/ui`: server-rendered HTML (no scripts fetched from anywhere; one
//! small inline script refreshes the running list). Sign-in takes a token (the dev token,
//! an Entra access token), keeps it in the gateway and gives the browser a random session
//! id in an HttpOnly, SameSite=Strict cookie scoped to `/ui` (the token itself never goes
//! back to the browser); every request checks the token again and needs the `MONITOR`
//! privilege. A sign-in lasts [`UI_SESSION_TTL`] at most. Forms post back to `/ui/…`; a
//! post whose `Origin` is another site is refused.
//!
//! ```text
//!  /ui                 charts over time (per warehouse, window), warehouses (workers,
//!                      queue), running statements (cancel), cache
//!  /ui/charts          the charts alone (what the page refreshes)
//!  /ui/history         query history with filters (principal, state, protocol, text)
//!  /ui/queries/{id}    a statement's profile: the plan that ran, with operator metrics
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

use super::charts::{self, esc};
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
main{max-width:1400px}td.num,th.num{text-align:right;white-space:nowrap}
.pick a{display:inline-block;padding:2px 10px;margin-right:4px;border:1px solid #d0d7de;border-radius:12px;
background:#fff;color:#0b3954;text-decoration:none}.pick a.on{background:#0b3954;color:#fff}.pick{margin:6px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
figure.chart{margin:0;background:#fff;border:1px solid #d0d7de;padding:6px 8px}
figure.chart figcaption{font-weight:600;font-size:13px}figure.chart svg{width:100%;height:auto}
svg .grid{stroke:#eaeef2}svg .axis{font-size:10px;fill:#57606a}
svg g.series{fill:none;stroke-width:1.6}svg .scale-event{stroke-width:2;stroke-opacity:.7}
svg .scale-event.up{stroke:#1a7f37}svg .scale-event.down{stroke:#9a6700;stroke-dasharray:3 3}
.legend{font-size:12px;color:#57606a}.legend span{margin-right:12px}
.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
table.plan td.op{font-family:ui-monospace,monospace;white-space:nowrap}
table.plan tr.slowest{background:#fff1e5}table.plan tr.slowest td.op{font-weight:700}
.bar{display:inline-block;height:8px;background:#cf222e;vertical-align:middle;margin-right:6px}
.detail{font-family:ui-monospace,monospace;font-size:12px;color:#57606a;max-width:560px;overflow-wrap:anywhere}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;background:#fff;padding:8px;border:1px solid #d0d7de}
dl.facts dt{color:#57606a}dl.facts dd{margin:0}pre.sql{background:#fff;border:1px solid #d0d7de;padding:8px;white-space:pre-wrap}
";

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

/// How long something has been going: `12 s`, `3 min 5 s`.
fn running_for(t: SystemTime) -> String {
    charts::duration(t.elapsed().unwrap_or_default())
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
            running_for(started),
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

/// The warehouse and window the charts show (from the page's query string; the default
/// warehouse and the last hour unless chosen).
fn chart_choice(app: &AppState, query: &HashMap<String, String>) -> (String, &'static str) {
    let window = gateway::series::WINDOWS
        .iter()
        .map(|(w, _, _)| *w)
        .find(|w| *w == field(query, "window"))
        .unwrap_or("1h");
    let warehouse = match query.get("warehouse") {
        Some(w) => w.clone(),
        None => app
            .warehouses
            .default_warehouse()
            .map(|w| w.name().to_string())
            .unwrap_or_default(),
    };
    (warehouse, window)
}

/// The charts of one warehouse over one window (what `/ui/charts` answers).
fn charts_fragment(app: &AppState, warehouse: &str, window: &str) -> String {
    let Some(series) = &app.activity.series else {
        return "<p>Series are turned off (<code>[metrics] series = false</code>).</p>".into();
    };
    let (_, span, _) = gateway::series::WINDOWS
        .iter()
        .find(|(w, _, _)| *w == window)
        .copied()
        .unwrap_or(("1h", 3600, 10));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (resolution, buckets) = series.window(warehouse, window).unwrap_or((10, Vec::new()));
    let mut out = format!(
        "<div id=\"charts\" data-window=\"{}\" data-warehouse=\"{}\" data-resolution=\"{resolution}\">",
        esc(window),
        esc(warehouse)
    );
    if buckets
        .iter()
        .all(|(_, b)| *b == gateway::series::Bucket::default())
    {
        out.push_str(
            "<p class=\"none\">Nothing recorded for this warehouse in this window yet.</p>",
        );
    }
    out.push_str(&charts::warehouse_charts(
        resolution,
        &buckets,
        (now - span as i64, now),
    ));
    let _ = write!(
        out,
        "<p class=\"legend\">Each point is {} of activity; updated {}.</p></div>",
        charts::duration(std::time::Duration::from_secs(resolution as u64)),
        charts::ago(std::time::SystemTime::now())
    );
    out
}

/// The overview's charts: warehouse and window pickers, the charts, and (for the short
/// windows) a refresh every 10 s.
fn charts_section(app: &AppState, query: &HashMap<String, String>) -> String {
    let (warehouse, window) = chart_choice(app, query);
    let mut names: Vec<String> = app
        .warehouses
        .all()
        .iter()
        .map(|w| w.name().to_string())
        .collect();
    if let Some(series) = &app.activity.series {
        for name in series.names() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let link = |w: &str, win: &str| {
        format!(
            "/ui?warehouse={}&window={}",
            gateway::http::percent_encode(w),
            win
        )
    };
    let mut out = String::from("<h2>Over time</h2><div class=\"pick\" id=\"pick-warehouse\">");
    for name in &names {
        let label = if name.is_empty() {
            "(gateway)"
        } else {
            name.as_str()
        };
        let _ = write!(
            out,
            "<a href=\"{}\" class=\"{}\" data-warehouse=\"{}\">{}</a>",
            esc(&link(name, window)),
            if *name == warehouse { "on" } else { "" },
            esc(name),
            esc(label)
        );
    }
    out.push_str("</div><div class=\"pick\" id=\"pick-window\">");
    for (w, _, _) in gateway::series::WINDOWS {
        let _ = write!(
            out,
            "<a id=\"window-{w}\" href=\"{}\" class=\"{}\">last {w}</a>",
            esc(&link(&warehouse, w)),
            if w == window { "on" } else { "" }
        );
    }
    out.push_str("</div>");
    out.push_str(&charts_fragment(app, &warehouse, window));
    if matches!(window, "15m" | "1h") {
        let _ = write!(
            out,
            "<script>setInterval(async()=>{{try{{const r=await fetch('{}',{{credentials:'same-origin'}});\
             if(r.ok){{document.getElementById('charts').outerHTML=await r.text();}}}}catch(e){{}}}},10000);</script>",
            esc(&format!(
                "/ui/charts?warehouse={}&window={window}",
                gateway::http::percent_encode(&warehouse)
            ))
        );
    }
    out
}

/// `GET /ui/charts?warehouse=&window=`: the charts alone.
pub(super) async fn charts_only(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(page) = operator(&app, &headers).await {
        return page;
    }
    let query = form(uri.query().unwrap_or_default());
    let (warehouse, window) = chart_choice(&app, &query);
    Html(charts_fragment(&app, &warehouse, window)).into_response()
}

/// `GET /ui/queries/{id}`: a statement's profile.
pub(super) async fn profile(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match operator(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let who = session.principal.name.clone();
    let missing = |message: &str| {
        let body = format!(
            "<h2>Statement {}</h2><p class=\"err\" id=\"no-profile\">{}</p>",
            esc(&id),
            esc(message)
        );
        (
            StatusCode::NOT_FOUND,
            Html(page("Query profile", Some(&who), &body)),
        )
            .into_response()
    };
    let Some(history) = &app.activity.history else {
        return missing(
            "Query history is turned off ([history] enabled = false): no profiles are kept.",
        );
    };
    if id.len() > 128 {
        return missing("No statement has an id that long.");
    }
    let profile = match history.profile(&id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return missing(
                "No profile is kept for this statement: it was answered by the result cache \
                 or without a plan (catalog queries), failed before it ran, or has aged out.",
            )
        }
        Err(e) => return missing(&format!("The profile cannot be read: {e}")),
    };
    Html(page("Query profile", Some(&who), &profile_body(&profile))).into_response()
}

fn profile_body(p: &gateway::metadata::QueryProfile) -> String {
    let r = &p.record;
    let total = p.profile.total_time_ns();
    let slowest = p
        .profile
        .slowest()
        .map(|o| o as *const planner::profile::Operator);
    let mut out = format!(
        "<h2>Statement <span id=\"statement-id\">{}</span></h2><dl class=\"facts\">\
         <dt>State</dt><dd class=\"{state}\">{state}</dd><dt>Principal</dt><dd>{}</dd>\
         <dt>Protocol</dt><dd>{}</dd><dt>Warehouse</dt><dd>{}</dd><dt>Ran on</dt><dd id=\"ran-on\">{}</dd>\
         <dt>Ended</dt><dd>{}</dd><dt>Duration</dt><dd>{} (queued {}, planning {}, executing {})</dd>\
         <dt>Rows</dt><dd>{} ({})</dd><dt>Operators' time</dt><dd>{}</dd></dl>\
         <h2>SQL</h2><pre class=\"sql\">{}</pre><h2>Plan</h2>",
        esc(&r.statement_id),
        esc(&r.principal),
        esc(&r.protocol),
        esc(r.warehouse.as_deref().unwrap_or("")),
        esc(&p.ran_on()),
        charts::ago_us(r.end_us),
        charts::micros((r.end_us - r.start_us).max(0) as u64),
        charts::micros(r.queued_us),
        charts::micros(r.planning_us),
        charts::micros(r.executing_us),
        charts::count(r.rows),
        charts::bytes(r.bytes),
        charts::duration(std::time::Duration::from_nanos(total)),
        esc(&r.statement_text),
        state = esc(&r.state),
    );
    if p.profile.truncated {
        out.push_str(
            "<p class=\"err\">The plan is larger than a profile keeps: part of it is left out.</p>",
        );
    }
    out.push_str(
        "<table class=\"plan\" id=\"plan\"><tr><th>Operator</th><th class=\"num\">Rows</th>\
         <th class=\"num\">Batches</th><th class=\"num\">Time</th><th>Share of time</th>\
         <th class=\"num\">Memory</th><th>Details</th></tr>",
    );
    let mut stack = vec![(&p.profile.root, 0usize)];
    while let Some((op, depth)) = stack.pop() {
        let share = op
            .time_ns
            .filter(|_| total > 0)
            .map(|t| t as f64 / total as f64);
        let is_slowest = slowest == Some(op as *const _);
        let extra: Vec<String> = op
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(
                op.spilled_bytes
                    .map(|b| format!("spilled {}", charts::bytes(b))),
            )
            .collect();
        let _ = write!(
            out,
            "<tr class=\"op{}\" data-time-ns=\"{}\"><td class=\"op\" style=\"padding-left:{}px\">{}{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td><div class=\"detail\">{}</div>{}</td></tr>",
            if is_slowest { " slowest" } else { "" },
            op.time_ns.unwrap_or(0),
            8 + depth * 18,
            if depth > 0 { "└ " } else { "" },
            esc(&op.name),
            match (op.rows, op.output_bytes) {
                (Some(rows), Some(b)) => format!("{}<br><small>{}</small>", charts::count(rows), charts::bytes(b)),
                (Some(rows), None) => charts::count(rows),
                _ => String::new(),
            },
            op.batches.map(charts::count).unwrap_or_default(),
            op.time_ns
                .map(|t| charts::duration(std::time::Duration::from_nanos(t)))
                .unwrap_or_default(),
            share
                .map(|s| format!(
                    "<span class=\"bar\" style=\"width:{:.0}px\"></span>{:.1} %{}",
                    (s * 120.0).max(1.0),
                    s * 100.0,
                    if is_slowest { " <b>slowest</b>" } else { "" }
                ))
                .unwrap_or_default(),
            op.memory_bytes.map(charts::bytes).unwrap_or_else(|| "–".into()),
            esc(&op.detail),
            if extra.is_empty() {
                String::new()
            } else {
                format!(
                    "<details><summary>{} more metrics</summary><div class=\"detail\">{}</div></details>",
                    extra.len(),
                    esc(&extra.join(", "))
                )
            },
        );
        for child in op.children.iter().rev() {
            stack.push((child, depth + 1));
        }
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
    body.push_str(&charts_section(&app, &query));
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
                    .map(|r| charts::bytes(r.rss_bytes))
                    .unwrap_or_default(),
                x.report.as_ref().map(|r| charts::count(r.executed)).unwrap_or_default(),
                running_for(x.started),
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
         <tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></table>",
        charts::count(entries as u64),
        charts::bytes(bytes),
        charts::bytes(app.cache.config().memory_budget),
        charts::count(n(&stats.hits)),
        charts::count(n(&stats.shared)),
        charts::count(n(&stats.restored)),
        charts::count(n(&stats.misses)),
        charts::count(n(&stats.stored)),
        charts::count(n(&stats.evicted)),
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
    // Unfiltered, the newest `limit` records are all the page needs; a filter looks
    // through the history's scan limit (newest first).
    let unfiltered =
        principal.is_empty() && state.is_empty() && protocol.is_empty() && text.is_empty();
    let records = match history
        .read(gateway::metadata::HistoryFilter {
            principal_id: None,
            limit: if unfiltered { limit } else { 0 },
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
             <td class=\"{state}\">{state}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"sql\">{}</td><td>{}</td></tr>",
            charts::ago_us(r.end_us),
            if r.has_profile {
                format!(
                    "<a class=\"profile\" href=\"/ui/queries/{id}\">{id}</a>",
                    id = esc(&r.statement_id)
                )
            } else {
                esc(&r.statement_id)
            },
            esc(&r.principal),
            esc(&r.protocol),
            esc(r.warehouse.as_deref().unwrap_or("")),
            r.worker_id.map(|w| w.to_string()).unwrap_or_default(),
            charts::count(r.rows),
            charts::micros(r.queued_us),
            charts::micros((r.end_us - r.start_us).max(0) as u64),
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

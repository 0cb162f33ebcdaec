//! The HS2 front-end alone: a fake handler behind it (no planner, no workers), HTTP POSTs
//! of strict binary Thrift messages in front, over a real socket on port 0. Requests are
//! encoded here by hand from Hive's TCLIService field ids; answers are read with the
//! crate's Thrift reader.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use databricks::hs2::thrift::{Reader, Struct, Value};
use databricks::hs2::{Hs2, Hs2Config};
use databricks::statements::Statements;
use databricks::AppState;
use testkit::{until, FakeHandler, TOKEN};

// ---------------------------------------------------------------------------------------
// A minimal strict-binary Thrift encoder for requests.

#[derive(Debug, Clone)]
enum T {
    Bool(bool),
    I32(i32),
    I64(i64),
    Str(String),
    Bin(Vec<u8>),
    Struct(Vec<(i16, T)>),
    List(u8, Vec<T>),
}

impl T {
    fn kind(&self) -> u8 {
        match self {
            T::Bool(_) => 2,
            T::I32(_) => 8,
            T::I64(_) => 10,
            T::Str(_) | T::Bin(_) => 11,
            T::Struct(_) => 12,
            T::List(..) => 15,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            T::Bool(b) => out.push(*b as u8),
            T::I32(v) => out.extend(v.to_be_bytes()),
            T::I64(v) => out.extend(v.to_be_bytes()),
            T::Str(s) => {
                out.extend((s.len() as i32).to_be_bytes());
                out.extend(s.as_bytes());
            }
            T::Bin(b) => {
                out.extend((b.len() as i32).to_be_bytes());
                out.extend(b);
            }
            T::Struct(fields) => {
                for (id, value) in fields {
                    out.push(value.kind());
                    out.extend(id.to_be_bytes());
                    value.write(out);
                }
                out.push(0);
            }
            T::List(kind, items) => {
                out.push(*kind);
                out.extend((items.len() as i32).to_be_bytes());
                for item in items {
                    item.write(out);
                }
            }
        }
    }
}

fn message(name: &str, args: Vec<(i16, T)>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0x8001_0001u32.to_be_bytes()); // strict, CALL
    out.extend((name.len() as i32).to_be_bytes());
    out.extend(name.as_bytes());
    out.extend(7i32.to_be_bytes()); // seqid
    T::Struct(vec![(1, T::Struct(args))]).write(&mut out);
    out
}

// ---------------------------------------------------------------------------------------

struct Server {
    url: String,
    http: reqwest::Client,
}

async fn start(handler: Arc<FakeHandler>, dir: &std::path::Path) -> Server {
    let hs2 = Hs2::new(handler.clone(), Hs2Config::default(), dir, false);
    let state = AppState {
        handler,
        hs2,
        statements: Statements::new(dir, false, &Default::default()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, databricks::router(state)).await });
    Server {
        url: format!("http://{addr}/sql/1.0/warehouses/default"),
        http: reqwest::Client::new(),
    }
}

impl Server {
    /// POST one call; the HTTP status, headers and the response struct (`success`).
    async fn post(
        &self,
        token: &str,
        name: &str,
        args: Vec<(i16, T)>,
    ) -> (u16, reqwest::header::HeaderMap, Option<Struct>) {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header("content-type", "application/x-thrift")
            .body(message(name, args))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        if status != 200 {
            return (status, headers, None);
        }
        let mut reader = Reader::new(&body);
        let header = reader.message_header().unwrap();
        assert_eq!(header.name, name);
        let result = reader.read_struct().unwrap();
        (status, headers, result.strukt(0).cloned())
    }

    async fn call(&self, name: &str, args: Vec<(i16, T)>) -> Struct {
        let (status, _, body) = self.post(TOKEN, name, args).await;
        assert_eq!(status, 200, "{name}");
        body.expect("a response struct")
    }

    async fn open(&self) -> Vec<(i16, T)> {
        let resp = self.call("OpenSession", vec![(1, T::I32(9))]).await;
        assert_eq!(status_code(&resp), 0, "{resp:?}");
        handle_of(resp.strukt(3).expect("session handle"))
    }
}

fn status_code(resp: &Struct) -> i64 {
    resp.strukt(1).and_then(|s| s.int(1)).expect("a status")
}

fn sqlstate(resp: &Struct) -> Option<String> {
    resp.strukt(1).and_then(|s| s.string(3))
}

/// A handle struct (`{1: THandleIdentifier{1: guid, 2: secret}, …}`) to send back.
fn handle_of(handle: &Struct) -> Vec<(i16, T)> {
    let id = handle.strukt(1).expect("identifier");
    let mut fields = vec![(
        1,
        T::Struct(vec![
            (1, T::Bin(id.binary(1).unwrap().to_vec())),
            (2, T::Bin(id.binary(2).unwrap().to_vec())),
        ]),
    )];
    if let Some(kind) = handle.int(2) {
        fields.push((2, T::I32(kind as i32)));
    }
    if let Some(has) = handle.bool(3) {
        fields.push((3, T::Bool(has)));
    }
    fields
}

fn clone_handle(h: &[(i16, T)]) -> Vec<(i16, T)> {
    h.to_vec()
}

/// `(positional parameter ordinal, type, value)` as `TSparkParameter`s.
fn parameters(values: &[(&str, &str)]) -> T {
    T::List(
        12,
        values
            .iter()
            .enumerate()
            .map(|(i, (kind, value))| {
                T::Struct(vec![
                    (1, T::I32(i as i32 + 1)),
                    (3, T::Str(kind.to_string())),
                    (4, T::Struct(vec![(1, T::Str(value.to_string()))])),
                ])
            })
            .collect(),
    )
}

impl Server {
    /// ExecuteStatement (async), then poll until it ends: the operation handle, or the
    /// SQLSTATE of its failure.
    async fn run(
        &self,
        session: &[(i16, T)],
        sql: &str,
        params: Option<T>,
    ) -> Result<Vec<(i16, T)>, String> {
        let op = self.submit(session, sql, params).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resp = self
                .call(
                    "GetOperationStatus",
                    vec![(1, T::Struct(clone_handle(&op)))],
                )
                .await;
            match resp.int(2) {
                Some(2) => return Ok(op),                                  // FINISHED
                Some(5) => return Err(resp.string(3).unwrap_or_default()), // ERROR
                Some(s) if s > 2 => panic!("operation state {s}: {resp:?}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{sql} did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn submit(
        &self,
        session: &[(i16, T)],
        sql: &str,
        params: Option<T>,
    ) -> Result<Vec<(i16, T)>, String> {
        let mut args = vec![
            (1, T::Struct(clone_handle(session))),
            (2, T::Str(sql.to_string())),
            (4, T::Bool(true)),
        ];
        if let Some(p) = params {
            args.push((1288, p));
        }
        let resp = self.call("ExecuteStatement", args).await;
        // ERROR_STATUS (3) or INVALID_HANDLE_STATUS (4).
        if status_code(&resp) >= 3 {
            return Err(sqlstate(&resp).unwrap_or_default());
        }
        Ok(handle_of(resp.strukt(2).expect("operation handle")))
    }

    /// One FetchResults page: (values of column 0 as text, more rows?).
    async fn fetch(&self, op: &[(i16, T)], max_rows: i64) -> Result<(Vec<String>, bool), String> {
        let resp = self
            .call(
                "FetchResults",
                vec![
                    (1, T::Struct(clone_handle(op))),
                    (2, T::I32(0)),
                    (3, T::I64(max_rows)),
                ],
            )
            .await;
        if status_code(&resp) == 3 {
            return Err(sqlstate(&resp).unwrap_or_default());
        }
        let rowset = resp.strukt(3).expect("a row set");
        let columns = rowset.list(3).expect("columns (Hive V10 is columnar)");
        let Value::Struct(column) = &columns[0] else {
            panic!("column")
        };
        let (_, typed) = column.0.iter().next().expect("a typed column");
        let Value::Struct(typed) = typed else {
            panic!("typed column")
        };
        let values = typed
            .list(1)
            .unwrap()
            .iter()
            .map(|v| match v {
                Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                Value::I64(n) => n.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        Ok((values, resp.bool(2).unwrap_or(false)))
    }
}

#[tokio::test]
async fn sessions_sign_in_and_keep_settings() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(FakeHandler::new(), dir.path()).await;
    let (status, headers, _) = server
        .post("not-the-token", "OpenSession", vec![(1, T::I32(9))])
        .await;
    assert_eq!(status, 401);
    assert!(headers.get("www-authenticate").is_some());

    let session = server.open().await;
    let op = server
        .run(&session, "set search_path = sales", None)
        .await
        .unwrap();
    let _ = op;
    let op = server
        .run(&session, "show search_path", None)
        .await
        .unwrap();
    assert_eq!(server.fetch(&op, 10).await.unwrap().0, ["sales"]);
    let resp = server
        .call("CloseSession", vec![(1, T::Struct(clone_handle(&session)))])
        .await;
    assert_eq!(status_code(&resp), 0);
    // A closed session's handle is refused as invalid (INVALID_HANDLE_STATUS, 08003).
    let err = server.submit(&session, "rows 1", None).await.unwrap_err();
    assert_eq!(err, "08003");
}

#[tokio::test]
async fn native_parameters_bind() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(FakeHandler::new(), dir.path()).await;
    let session = server.open().await;
    let op = server
        .run(&session, "echo ?", Some(parameters(&[("STRING", "héllo")])))
        .await
        .unwrap();
    assert_eq!(server.fetch(&op, 10).await.unwrap().0, ["héllo"]);
    let op = server
        .run(
            &session,
            "add ? ?",
            Some(parameters(&[("BIGINT", "40"), ("BIGINT", "2")])),
        )
        .await
        .unwrap();
    assert_eq!(server.fetch(&op, 10).await.unwrap().0, ["42"]);
    let err = server
        .run(
            &session,
            "add ? ?",
            Some(parameters(&[("BIGINT", "x"), ("BIGINT", "2")])),
        )
        .await
        .unwrap_err();
    assert!(err.starts_with("22"), "{err}");
}

#[tokio::test]
async fn errors_carry_the_error_tables_sqlstate_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(FakeHandler::new(), dir.path()).await;
    let session = server.open().await;
    for (kind, state) in [
        ("syntax", "42601"),
        ("undefined_table", "42P01"),
        ("permission_denied", "42501"),
        ("too_complex", "54001"),
    ] {
        let err = server
            .run(&session, &format!("fail {kind}"), None)
            .await
            .unwrap_err();
        assert_eq!(err, state, "{kind}");
    }
    // An error after rows: the page before it, then the error on the next fetch.
    let op = server.run(&session, "fail late", None).await.unwrap();
    let mut seen = Vec::new();
    let err = loop {
        match server.fetch(&op, 2).await {
            Ok((rows, more)) => {
                seen.extend(rows);
                assert!(more || seen.len() < 3, "the error was lost");
            }
            Err(state) => break state,
        }
    };
    assert_eq!(err, "22012");
    // A full queue is HTTP 503 with Retry-After, as the error table says.
    let (status, headers, _) = server
        .post(
            TOKEN,
            "ExecuteStatement",
            vec![
                (1, T::Struct(clone_handle(&session))),
                (2, T::Str("busy".into())),
                (4, T::Bool(false)),
            ],
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    let op = server.run(&session, "rows 2", None).await.unwrap();
    assert_eq!(server.fetch(&op, 10).await.unwrap().0, ["0", "1"]);
}

#[tokio::test]
async fn cancel_operation_stops_a_running_statement() {
    let dir = tempfile::tempdir().unwrap();
    let handler = FakeHandler::new();
    let counters = handler.counters.clone();
    let server = start(handler, dir.path()).await;
    let session = server.open().await;
    let op = server.submit(&session, "wait", None).await.unwrap();
    until("the statement to start", || {
        counters.waits_started.load(Ordering::SeqCst) == 1
    })
    .await;
    let dropped = counters.streams_dropped.load(Ordering::SeqCst);
    let resp = server
        .call("CancelOperation", vec![(1, T::Struct(clone_handle(&op)))])
        .await;
    assert_eq!(status_code(&resp), 0);
    let state = server
        .call(
            "GetOperationStatus",
            vec![(1, T::Struct(clone_handle(&op)))],
        )
        .await;
    assert_eq!(state.int(2), Some(3), "CANCELED_STATE: {state:?}");
    until("the stream to be dropped", || {
        counters.streams_dropped.load(Ordering::SeqCst) > dropped
    })
    .await;
    let op = server.run(&session, "rows 1", None).await.unwrap();
    assert_eq!(server.fetch(&op, 10).await.unwrap().0, ["0"]);
}

#[tokio::test]
async fn large_results_page_with_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let handler = FakeHandler::new();
    let counters = handler.counters.clone();
    let server = start(handler, dir.path()).await;
    let session = server.open().await;

    // Pages arrive whole and in order until hasMoreRows is false.
    let op = server.run(&session, "rows 50000", None).await.unwrap();
    let mut all = Vec::new();
    loop {
        let (rows, more) = server.fetch(&op, 7000).await.unwrap();
        assert!(rows.len() <= 7000);
        all.extend(rows);
        if !more {
            break;
        }
    }
    assert_eq!(all.len(), 50_000);
    assert!(all.iter().enumerate().all(|(i, v)| *v == i.to_string()));

    // A client that fetched one page holds the producer near that page.
    let total: u64 = 100_000_000;
    let before = counters.rows_produced.load(Ordering::SeqCst);
    let op = server
        .run(&session, &format!("rows {total}"), None)
        .await
        .unwrap();
    let (page, more) = server.fetch(&op, 1000).await.unwrap();
    assert_eq!(page.len(), 1000);
    assert!(more);
    let later = counters.rows_when_stalled(before).await;
    assert!(
        later < total / 10,
        "{later} of {total} rows produced for one page"
    );
    let dropped = counters.streams_dropped.load(Ordering::SeqCst);
    let resp = server
        .call("CloseOperation", vec![(1, T::Struct(clone_handle(&op)))])
        .await;
    assert_eq!(status_code(&resp), 0);
    until("the closed operation's stream to be dropped", || {
        counters.streams_dropped.load(Ordering::SeqCst) > dropped
    })
    .await;
}

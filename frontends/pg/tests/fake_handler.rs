//! The pg front-end alone: a fake handler behind it (no planner, no workers), tokio-postgres
//! in front, over a real socket on port 0.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pg::connection::{serve, MessageLimits};
use pg::PgFrontend;
use testkit::{until, FakeHandler, TOKEN};
use tokio::net::TcpListener;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn start(handler: Arc<FakeHandler>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frontend = Arc::new(PgFrontend::new(handler, false));
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let frontend = frontend.clone();
            tokio::spawn(async move {
                let _ = serve(socket, None, frontend, MessageLimits::new(1 << 20)).await;
            });
        }
    });
    port
}

async fn connect(port: u16, token: &str) -> Result<Client, tokio_postgres::Error> {
    Ok(connect_with_socket(port, token).await?.0)
}

/// A client and the task that owns its socket (aborting it hangs up).
async fn connect_with_socket(
    port: u16,
    token: &str,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let config = format!("host=127.0.0.1 port={port} user=tester dbname=sluice password={token}");
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    let socket = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, socket))
}

fn values(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn login_and_session_settings() {
    let port = start(FakeHandler::new()).await;
    let refused = connect(port, "not-the-token").await.err().expect("refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "{refused}"
    );

    let client = connect(port, TOKEN).await.unwrap();
    client
        .simple_query("set search_path = sales")
        .await
        .unwrap();
    let shown = client.simple_query("show search_path").await.unwrap();
    assert_eq!(values(&shown), ["sales"]);
    // A transaction block round-trips (the handler answers BEGIN/COMMIT).
    client.batch_execute("begin; commit").await.unwrap();
}

#[tokio::test]
async fn parameters_in_text_and_binary() {
    let port = start(FakeHandler::new()).await;
    let client = connect(port, TOKEN).await.unwrap();
    // A text parameter, described and bound by the extended protocol.
    let statement = client.prepare("echo $1").await.unwrap();
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::TEXT]);
    let row = client
        .query_one(&statement, &[&"héllo, 'world'"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "héllo, 'world'");
    let none: Option<&str> = None;
    let row = client.query_one(&statement, &[&none]).await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    // int8 parameters go binary; the result comes back binary too.
    let row = client
        .query_one("add $1 $2", &[&40i64, &2i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    // An overflow is the handler's error, with its SQLSTATE; the session goes on.
    let err = client
        .query_one("add $1 $2", &[&i64::MAX, &1i64])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    let row = client
        .query_one("add $1 $2", &[&1i64, &1i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
}

#[tokio::test]
async fn errors_carry_the_error_tables_sqlstate_and_lose_nothing() {
    let port = start(FakeHandler::new()).await;
    let client = connect(port, TOKEN).await.unwrap();
    for (kind, state) in [
        ("syntax", SqlState::SYNTAX_ERROR),
        ("undefined_table", SqlState::UNDEFINED_TABLE),
        ("permission_denied", SqlState::INSUFFICIENT_PRIVILEGE),
        ("too_complex", SqlState::STATEMENT_TOO_COMPLEX),
        ("queue_full", SqlState::TOO_MANY_CONNECTIONS),
    ] {
        let err = client
            .simple_query(&format!("fail {kind}"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&state), "{kind}: {err}");
        let err = client
            .query(&format!("fail {kind}"), &[])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&state), "{kind} (extended): {err}");
    }
    // An error after rows ends the statement with that error, not with a broken connection.
    let err = client.simple_query("fail late").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err}");
    let err = client.query("fail late", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err}");
    assert_eq!(
        values(&client.simple_query("rows 3").await.unwrap()),
        ["0", "1", "2"]
    );
}

#[tokio::test]
async fn cancel_stops_a_running_statement() {
    let handler = FakeHandler::new();
    let counters = handler.counters.clone();
    let port = start(handler).await;
    let client = Arc::new(connect(port, TOKEN).await.unwrap());
    let cancel = client.cancel_token();
    let running = {
        let client = client.clone();
        tokio::spawn(async move { client.simple_query("wait").await })
    };
    until("the statement to start", || {
        counters.waits_started.load(Ordering::SeqCst) == 1
    })
    .await;
    let dropped = counters.streams_dropped.load(Ordering::SeqCst);
    cancel.cancel_query(NoTls).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the cancel ends the statement")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    // The handler's stream was dropped: nothing keeps running behind the client's back.
    until("the stream to be dropped", || {
        counters.streams_dropped.load(Ordering::SeqCst) > dropped
    })
    .await;
    assert_eq!(
        values(&client.simple_query("rows 2").await.unwrap()),
        ["0", "1"]
    );
}

#[tokio::test]
async fn large_results_stream_with_backpressure() {
    let handler = FakeHandler::new();
    let counters = handler.counters.clone();
    let port = start(handler).await;

    // A large result arrives whole and in order.
    let client = connect(port, TOKEN).await.unwrap();
    let rows = client.query("rows 100000", &[]).await.unwrap();
    assert_eq!(rows.len(), 100_000);
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| r.get::<_, i64>(0) == i as i64));

    // A client that stops reading stops the producer: what was made stays bounded.
    let total: u64 = 50_000_000;
    let (reader, socket) = connect_with_socket(port, TOKEN).await.unwrap();
    let before = counters.rows_produced.load(Ordering::SeqCst);
    let dropped = counters.streams_dropped.load(Ordering::SeqCst);
    let stream = reader
        .query_raw(&format!("rows {total}"), Vec::<i64>::new())
        .await
        .unwrap();
    let mut stream = Box::pin(stream);
    use futures::StreamExt;
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    // Let the producer run into the full socket, then check it stays there.
    let later = counters.rows_when_stalled(before).await;
    assert!(
        later < total / 10,
        "{later} of {total} rows produced for a client that read 10"
    );
    // The client hanging up ends the statement (tokio-postgres itself would read the
    // rest of the result before closing; the socket goes instead).
    socket.abort();
    drop(stream);
    drop(reader);
    until("the abandoned stream to be dropped", || {
        counters.streams_dropped.load(Ordering::SeqCst) > dropped
    })
    .await;
}

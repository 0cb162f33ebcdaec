//! The Flight SQL front-end alone: a fake handler behind it (no planner, no workers),
//! arrow-flight's Flight SQL client in front, over a real socket on port 0.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, CancelFlightInfoRequest, FlightInfo};
use flight::FlightSqlFrontend;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use testkit::{until, FakeHandler, TOKEN};
use tonic::transport::Channel;
use tonic::Code;

async fn start(handler: Arc<FakeHandler>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = FlightServiceServer::new(FlightSqlFrontend::new(handler, false, 100));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn client(url: &str, token: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_token(token.to_string());
    client
}

fn code(err: &FlightError) -> Code {
    match err {
        FlightError::Tonic(status) => status.code(),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

async fn run(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    fetch(client, &info).await
}

/// Every batch of a FlightInfo's (one) endpoint.
async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    client.do_get(ticket).await?.try_collect().await
}

fn ints(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int8")
                .clone();
            column.values().to_vec()
        })
        .collect()
}

#[tokio::test]
async fn login_handshake_and_statements() {
    let url = start(FakeHandler::new()).await;
    let mut stranger = client(&url, "not-the-token").await;
    let err = run(&mut stranger, "rows 1").await.unwrap_err();
    assert_eq!(code(&err), Code::Unauthenticated, "{err}");

    // The Basic handshake answers with the bearer token the client then sends.
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut basic = FlightSqlServiceClient::new(channel);
    basic.handshake("tester", TOKEN).await.unwrap();
    assert_eq!(basic.token().map(String::as_str), Some(TOKEN));
    assert_eq!(ints(&run(&mut basic, "rows 3").await.unwrap()), [0, 1, 2]);

    // Flight SQL sessions hold no settings: a session command is refused clearly.
    let err = run(&mut basic, "set search_path = x").await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn prepared_statements_take_parameters() {
    let url = start(FakeHandler::new()).await;
    let mut c = client(&url, TOKEN).await;
    let mut echo = c.prepare("echo $1".to_string(), None).await.unwrap();
    assert_eq!(
        echo.parameter_schema().unwrap().field(0).data_type(),
        &DataType::Utf8
    );
    let params = Schema::new(vec![Field::new("$1", DataType::Utf8, true)]);
    echo.set_parameters(
        RecordBatch::try_new(
            Arc::new(params),
            vec![Arc::new(StringArray::from(vec!["héllo"]))],
        )
        .unwrap(),
    )
    .unwrap();
    let info = echo.execute().await.unwrap();
    let batches = fetch(&mut c, &info).await.unwrap();
    let v = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(v.value(0), "héllo");
    echo.close().await.unwrap();

    let mut add = c.prepare("add $1 $2".to_string(), None).await.unwrap();
    let params = Schema::new(vec![
        Field::new("$1", DataType::Int64, true),
        Field::new("$2", DataType::Int64, true),
    ]);
    add.set_parameters(
        RecordBatch::try_new(
            Arc::new(params),
            vec![
                Arc::new(Int64Array::from(vec![40])),
                Arc::new(Int64Array::from(vec![2])),
            ],
        )
        .unwrap(),
    )
    .unwrap();
    let info = add.execute().await.unwrap();
    let batches = fetch(&mut c, &info).await.unwrap();
    assert_eq!(ints(&batches), [42]);
}

#[tokio::test]
async fn errors_carry_the_error_tables_code_and_lose_nothing() {
    let url = start(FakeHandler::new()).await;
    let mut c = client(&url, TOKEN).await;
    for (kind, expected) in [
        ("syntax", Code::InvalidArgument),
        ("undefined_table", Code::NotFound),
        ("permission_denied", Code::PermissionDenied),
        ("queue_full", Code::ResourceExhausted),
        ("statement_timeout", Code::DeadlineExceeded),
        ("worker_lost", Code::Unavailable),
    ] {
        let err = run(&mut c, &format!("fail {kind}")).await.unwrap_err();
        assert_eq!(code(&err), expected, "{kind}: {err}");
    }
    // An error after rows ends the stream with that error.
    let info = c.execute("fail late".to_string(), None).await.unwrap();
    let mut stream = c
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 3);
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert_eq!(ints(&run(&mut c, "rows 2").await.unwrap()), [0, 1]);
}

#[tokio::test]
async fn cancel_flight_info_stops_a_running_statement() {
    let handler = FakeHandler::new();
    let counters = handler.counters.clone();
    let url = start(handler).await;
    let mut c = client(&url, TOKEN).await;
    let info: FlightInfo = c.execute("wait".to_string(), None).await.unwrap();
    let mut stream = c
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let reading = tokio::spawn(async move { stream.next().await });
    until("the statement to start", || {
        counters.waits_started.load(Ordering::SeqCst) == 1
    })
    .await;
    let dropped = counters.streams_dropped.load(Ordering::SeqCst);
    let body = CancelFlightInfoRequest::new(info).encode_to_vec();
    let answers: Vec<_> = c
        .do_action(Action::new("CancelFlightInfo", body))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(answers.len(), 1);
    let end = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the cancel ends the stream")
        .unwrap();
    match end {
        Some(Err(err)) => assert_eq!(code(&err), Code::Cancelled, "{err}"),
        None => {}
        Some(Ok(batch)) => panic!("rows from a cancelled statement: {batch:?}"),
    }
    until("the stream to be dropped", || {
        counters.streams_dropped.load(Ordering::SeqCst) > dropped
    })
    .await;
    assert_eq!(ints(&run(&mut c, "rows 1").await.unwrap()), [0]);
}

#[tokio::test]
async fn large_results_stream_with_backpressure() {
    let handler = FakeHandler::new();
    let counters = handler.counters.clone();
    let url = start(handler).await;
    let mut c = client(&url, TOKEN).await;
    let all = ints(&run(&mut c, "rows 300000").await.unwrap());
    assert_eq!(all.len(), 300_000);
    assert!(all.iter().enumerate().all(|(i, v)| *v == i as i64));

    let total: u64 = 100_000_000;
    let before = counters.rows_produced.load(Ordering::SeqCst);
    let dropped = counters.streams_dropped.load(Ordering::SeqCst);
    let info = c.execute(format!("rows {total}"), None).await.unwrap();
    let mut stream = c
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    for _ in 0..2 {
        stream.next().await.unwrap().unwrap();
    }
    let later = counters.rows_when_stalled(before).await;
    assert!(
        later < total / 10,
        "{later} of {total} rows produced for a client that read 2 batches"
    );
    drop(stream);
    until("the abandoned stream to be dropped", || {
        counters.streams_dropped.load(Ordering::SeqCst) > dropped
    })
    .await;
}

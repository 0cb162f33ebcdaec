//! The worker process (`sluice worker`): an internal Arrow Flight service that executes
//! the physical plans the gateway sends and streams the record batches back.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{Stream, StreamExt, TryStreamExt};
use planner::{ErrorKind, QueryError};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::protocol::{ExecuteRequest, ERROR_KIND_HEADER, MAX_MESSAGE_BYTES, READY_PREFIX};

/// How a worker process is started.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Address of the internal Flight endpoint (port 0 picks one; it is printed).
    pub listen: SocketAddr,
    /// The secret every call must present.
    pub secret: String,
    /// Memory the worker's queries may use together (DataFusion memory pool), in bytes.
    pub memory_limit: Option<usize>,
    /// Exit when standard input closes: a spawned worker's stdin is a pipe from its
    /// gateway, so the worker goes away with the gateway, even after `kill -9`.
    pub exit_with_parent: bool,
    /// Parallelism inside one query.
    pub target_partitions: usize,
}

/// Run a worker until it is told to stop (or its gateway goes away).
pub async fn run(options: WorkerOptions) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = options.memory_limit {
        runtime = runtime.with_memory_limit(limit, 1.0);
    }
    let runtime = runtime.build_arc()?;
    let config = SessionConfig::new().with_target_partitions(options.target_partitions.max(1));
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    // The PostgreSQL functions a data query may call (format_type, …), as in the gateway.
    for function in planner::pg_catalog::functions::builtin().await? {
        ctx.register_udf(function);
    }

    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    // The gateway reads this line to learn where to connect.
    println!("{READY_PREFIX}{addr}");
    tracing::info!(%addr, pid = std::process::id(), "worker listening");

    let secret = Arc::new(format!("Bearer {}", options.secret));
    let service = FlightServiceServer::new(WorkerService { ctx })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        move |request: Request<()>| check_secret(&secret, request),
    );

    let stop = async move {
        if options.exit_with_parent {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            tracing::info!("gateway went away; worker exiting");
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    // The builder's `tcp_nodelay` applies only to listeners tonic binds itself: set it on
    // each accepted connection, or small responses wait out the peer's delayed ACK (~40 ms).
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|socket| {
        socket.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    Ok(())
}

#[allow(clippy::result_large_err)]
fn check_secret(expected: &str, request: Request<()>) -> Result<Request<()>, Status> {
    let presented = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if bool::from(presented.ct_eq(expected.as_bytes())) {
        Ok(request)
    } else {
        Err(Status::unauthenticated("bad or missing worker secret"))
    }
}

struct WorkerService {
    ctx: SessionContext,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A gRPC status carrying the error's kind, so the gateway maps it without guessing.
pub fn error_status(err: &QueryError) -> Status {
    let code = match err.kind {
        ErrorKind::Cancelled => tonic::Code::Cancelled,
        ErrorKind::ResourcesExhausted => tonic::Code::ResourceExhausted,
        ErrorKind::Internal => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    };
    let mut status = Status::new(code, err.message.clone());
    status.metadata_mut().insert(
        ERROR_KIND_HEADER,
        MetadataValue::from_static(err.kind.as_str()),
    );
    status
}

#[tonic::async_trait]
impl FlightService for WorkerService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let request = ExecuteRequest::decode(request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad execute request: {e}")))?;
        let task_ctx = self.ctx.task_ctx();
        let plan =
            planner::codec::decode_plan(&request.plan, &task_ctx).map_err(|e| error_status(&e))?;
        let query_id = request.query_id;
        tracing::debug!(%query_id, "executing");
        let stream =
            execute_stream(plan, task_ctx).map_err(|e| error_status(&QueryError::from(e)))?;
        let schema = transfer_schema(&stream.schema());
        let batch_schema = schema.clone();
        let batches = stream.map(move |result| {
            result
                .map_err(|e| {
                    let err = QueryError::from(e);
                    tracing::debug!(%query_id, error = %err, "query failed");
                    FlightError::Tonic(Box::new(error_status(&err)))
                })
                .and_then(|batch| for_transfer(batch, &batch_schema).map_err(FlightError::Arrow))
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => error_status(&QueryError::internal(other.to_string())),
            });
        Ok(Response::new(Box::pin(flight)))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        match request.into_inner().r#type.as_str() {
            // A cheap liveness probe for the pool.
            "ping" => Ok(Response::new(Box::pin(futures::stream::once(async {
                Ok(arrow_flight::Result {
                    body: "pong".into(),
                })
            })))),
            other => Err(Status::unimplemented(format!("unknown action {other:?}"))),
        }
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
}

/// The schema batches travel with: view types become their plain forms.
///
/// DataFusion reads Parquet strings as `Utf8View`. A view array that was sliced (by a
/// LIMIT, a filter or batch coalescing) still references its parent's whole data buffers,
/// and Arrow IPC writes those buffers in full: a 1 GB scan turned into tens of GB on the
/// wire. Casting to `Utf8` copies exactly the bytes the rows use, and every client reads
/// plain strings.
pub fn transfer_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                Arc::new(
                    Field::new(f.name(), transfer_type(f.data_type()), f.is_nullable())
                        .with_metadata(f.metadata().clone()),
                )
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

fn transfer_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(field) => DataType::List(Arc::new(Field::new(
            field.name(),
            transfer_type(field.data_type()),
            field.is_nullable(),
        ))),
        other => other.clone(),
    }
}

/// Cast a batch's columns to `schema` (see [`transfer_schema`]); untouched columns are
/// passed through without copying.
pub fn for_transfer(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray, StringViewArray};

    #[test]
    fn calls_without_the_secret_are_refused() {
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(v) = value {
                request
                    .metadata_mut()
                    .insert("authorization", v.parse().expect("ascii"));
            }
            check_secret("Bearer s3cret", request)
        };
        assert!(with(Some("Bearer s3cret")).is_ok());
        let refused = with(Some("Bearer wrong")).expect_err("wrong secret");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!refused.message().contains("s3cret"));
        assert!(with(None).is_err());
        assert!(with(Some("Bearer s3cre")).is_err());
    }

    #[test]
    fn sliced_views_are_compacted() {
        let long: Vec<String> = (0..10_000)
            .map(|i| format!("a fairly long string value number {i}"))
            .collect();
        let array = StringViewArray::from_iter_values(long.iter());
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).expect("batch");
        let sliced = batch.slice(0, 2);
        let out = for_transfer(sliced, &transfer_schema(&schema)).expect("cast");
        let strings = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8");
        assert_eq!(strings.len(), 2);
        assert_eq!(strings.value(1), "a fairly long string value number 1");
        // Only the two strings' bytes remain, not the parent's ~400 KB of data.
        assert!(
            out.get_array_memory_size() < 4096,
            "{}",
            out.get_array_memory_size()
        );
    }
}

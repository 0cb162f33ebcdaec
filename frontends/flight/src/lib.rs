//! The Arrow Flight SQL front-end: Flight SQL commands in, [`Handler`] calls, Arrow record
//! batches out. It translates only: planning, grants and execution are the handler's.
//!
//! ```text
//!  GetFlightInfo(CommandStatementQuery) ── prepare ──► handle ─► FlightInfo{schema, ticket}
//!  DoGet(TicketStatementQuery)          ── execute ──► batches ─► FlightData (streamed)
//!  CreatePreparedStatement / DoPut(params) / GetFlightInfo / DoGet / ClosePreparedStatement
//!  GetCatalogs · GetDbSchemas · GetTables · GetTableTypes · GetSqlInfo · GetXdbcTypeInfo ·
//!  keys (empty) ── answered from the session's (grant-filtered) information_schema
//! ```
//!
//! `service` decodes each RPC; `handles` plans, runs, binds and cancels statement handles;
//! `metadata` answers the catalog commands; `ipc` decodes DoPut's Arrow within bounds.
//!
//! Every call carries `authorization: Bearer <token>` (or Basic with the token as the
//! password); the Basic handshake answers with the bearer token to use. Statement handles
//! belong to the principal that made them: another principal replaying a ticket is refused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest,
    Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, Nullable, ProstMessageExt, Searchable, SqlInfo,
    TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine as _;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use gateway::planner::{ErrorKind, QueryError};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use gateway::transfer::{for_transfer, transfer_schema};

use gateway::handler::{ArrowRows, Handler, Outcome, Prepared, SessionCommand};
use gateway::session::Session;

mod handles;
mod ipc;
mod metadata;
mod service;

use handles::Statements;

/// Bytes of parameters one DoPut may bind.
pub const MAX_PUT_BYTES: usize = ipc::MAX_BYTES;

/// Open statement handles kept at most, all principals together (each has its own quota
/// below this); idle ones go first.
const MAX_STATEMENTS: usize = 100_000;
/// A handle nobody used for this long is dropped.
const STATEMENT_IDLE: Duration = Duration::from_secs(3600);
/// gRPC metadata naming the warehouse (database) a call runs in.
pub const WAREHOUSE_HEADER: &str = "x-sluice-warehouse";
/// gRPC metadata that turns the result cache off for a call: `x-sluice-use-cached-result: false`.
pub const CACHE_HEADER: &str = "x-sluice-use-cached-result";

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// The Flight SQL service of one gateway.
pub struct FlightSqlFrontend {
    handler: Arc<dyn Handler>,
    statements: Statements,
    next: AtomicU64,
    /// Tokens over plain TCP are refused (a non-loopback listener without TLS).
    refuse_plain: bool,
    /// Statement handles one principal may hold open (`[limits] max_prepared_statements`).
    per_principal: usize,
}

impl FlightSqlFrontend {
    pub fn new(handler: Arc<dyn Handler>, refuse_plain: bool, per_principal: usize) -> Self {
        Self {
            handler,
            statements: Statements::default(),
            next: AtomicU64::new(1),
            refuse_plain,
            per_principal,
        }
    }

    /// The session of a call, from its `authorization` metadata.
    async fn session(&self, metadata: &MetadataMap) -> Result<Session, Status> {
        if self.refuse_plain {
            return Err(Status::unauthenticated(
                "this server accepts tokens only over TLS (grpc+tls)",
            ));
        }
        let token = token_from(metadata)?;
        let database = metadata
            .get(WAREHOUSE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("default");
        let mut session = self.handler.login(&token, "", database).await.map_err(|reason| {
            tracing::warn!(token = %gateway::auth::fingerprint(&token), reason = reason.code(), "flight call refused: {reason}");
            Status::new(gateway::error::login_grpc_code(&reason), reason.to_string())
        })?;
        session.protocol = "flight";
        if let Some(value) = metadata.get(CACHE_HEADER).and_then(|v| v.to_str().ok()) {
            session
                .settings
                .set(gateway::cache::BYPASS_SETTING, value.to_string());
        }
        Ok(session)
    }
}

fn owner(session: &Session) -> (String, String) {
    (
        session.principal.id.clone(),
        session.principal.issuer.clone(),
    )
}

/// The token of a call: `Bearer <token>`, or `Basic base64(user:token)` (padding optional,
/// as the Go ADBC driver leaves it off).
fn token_from(metadata: &MetadataMap) -> Result<String, Status> {
    let value = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated(
                "send authorization: Bearer <token> (or Basic with the token as password)",
            )
        })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = rest.trim().trim_end_matches('=');
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(raw)
            .map_err(|_| Status::unauthenticated("Basic credentials are not base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| Status::unauthenticated("Basic credentials are not UTF-8"))?;
        let (_, password) = text
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("Basic credentials need user:password"))?;
        return Ok(password.to_string());
    }
    Err(Status::unauthenticated(format!(
        "authorization scheme {scheme:?} is not supported: use Bearer or Basic"
    )))
}

/// A handler error as a gRPC status, by the one error table.
fn status(err: &QueryError) -> Status {
    Status::new(gateway::error::grpc_code(err.kind), err.message.clone())
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// A FlightInfo with one endpoint and no location: clients fetch on the connection they
/// already have.
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn one_batch<E: Into<FlightError> + Send + 'static>(
    schema: SchemaRef,
    batch: Result<RecordBatch, E>,
) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::once(async move { batch.map_err(Into::into) }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn read_only() -> Status {
    status(&QueryError::new(
        ErrorKind::ReadOnly,
        "this warehouse is read-only: updates, ingestion and transactions are not available",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii"));
        m
    }

    #[test]
    fn tokens_from_bearer_and_basic_with_or_without_padding() {
        assert_eq!(token_from(&metadata("Bearer abc")).expect("ok"), "abc");
        // "user:tok1" in base64 is "dXNlcjp0b2sx" (no padding needed); "u:tok" needs one '='.
        assert_eq!(
            token_from(&metadata("Basic dXNlcjp0b2sx")).expect("ok"),
            "tok1"
        );
        assert_eq!(token_from(&metadata("Basic dTp0b2s=")).expect("ok"), "tok");
        assert_eq!(token_from(&metadata("Basic dTp0b2s")).expect("ok"), "tok");
        assert!(token_from(&metadata("Digest x")).is_err());
        assert!(token_from(&MetadataMap::new()).is_err());
    }

    #[test]
    fn one_parameter_row_cast_to_the_expected_type() {
        let batch = RecordBatch::try_from_iter([(
            "p",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![7])) as _,
        )])
        .expect("batch");
        let params =
            params_from(std::slice::from_ref(&batch), &[Some(DataType::Int32)]).expect("ok");
        assert_eq!(params, vec![ScalarValue::Int32(Some(7))]);
        assert!(params_from(&[batch], &[]).is_err());
    }

    /// What Flight SQL clients put in tickets, descriptors and action bodies, decoded as the
    /// service decodes them.
    #[test]
    fn fuzz_flight_commands() {
        use arrow_flight::sql::Command;
        let seeds: Vec<Vec<u8>> = vec![
            CommandStatementQuery {
                query: "select 1".into(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec(),
            CommandPreparedStatementQuery {
                prepared_statement_handle: b"s1-sluice_x".to_vec().into(),
            }
            .as_any()
            .encode_to_vec(),
            TicketStatementQuery {
                statement_handle: b"s2".to_vec().into(),
            }
            .as_any()
            .encode_to_vec(),
            CommandGetTables {
                catalog: Some("sluice".into()),
                db_schema_filter_pattern: Some("tp%".into()),
                table_name_filter_pattern: None,
                table_types: vec!["TABLE".into()],
                include_schema: true,
            }
            .as_any()
            .encode_to_vec(),
            CommandGetSqlInfo {
                info: vec![0, 1, 500],
            }
            .as_any()
            .encode_to_vec(),
            CancelFlightInfoRequest {
                info: Some(
                    FlightInfo::default().with_endpoint(
                        FlightEndpoint::new().with_ticket(Ticket::new(
                            CommandPreparedStatementQuery {
                                prepared_statement_handle: b"h".to_vec().into(),
                            }
                            .as_any()
                            .encode_to_vec(),
                        )),
                    ),
                ),
            }
            .encode_to_vec(),
        ];
        fuzz::bytes("flight_commands", &seeds, |input| {
            if let Ok(any) = Any::decode(input) {
                let _ = Command::try_from(any.clone());
                let _ = any.unpack::<CommandStatementQuery>();
                let _ = any.unpack::<CommandGetTables>();
                let _ = any.unpack::<CommandGetDbSchemas>();
                let _ = any.unpack::<CommandGetXdbcTypeInfo>();
            }
            let _ = handle_of_ticket(input);
            let _ = FlightInfo::decode(input);
            let _ = CancelFlightInfoRequest::decode(input);
            let _ = FlightDescriptor::decode(input);
            let _ = ActionCreatePreparedStatementRequest::decode(input);
            let _ = ActionClosePreparedStatementRequest::decode(input);
            let _ = numbered_placeholders(&String::from_utf8_lossy(input));
            if let Ok(text) = std::str::from_utf8(input) {
                if let Ok(value) = format!("Basic {text}").parse() {
                    let mut m = MetadataMap::new();
                    m.insert("authorization", value);
                    let _ = token_from(&m);
                }
            }
        });
    }

    /// A DoPut's messages, framed as (header length, header, body length, body) in the
    /// input, through the bounded decoder and the parameter binding.
    #[test]
    fn fuzz_flight_doput_ipc() {
        use arrow_flight::FlightData;
        use datafusion::arrow::ipc::writer::IpcWriteOptions;
        fn frame(messages: &[FlightData]) -> Vec<u8> {
            let mut out = Vec::new();
            for m in messages {
                out.extend((m.data_header.len() as u32).to_le_bytes());
                out.extend_from_slice(&m.data_header);
                out.extend((m.data_body.len() as u32).to_le_bytes());
                out.extend_from_slice(&m.data_body);
            }
            out
        }
        fn unframe(mut input: &[u8]) -> Vec<FlightData> {
            let mut out = Vec::new();
            let take = |input: &mut &[u8]| -> Option<bytes::Bytes> {
                let n = u32::from_le_bytes(input.get(..4)?.try_into().ok()?) as usize;
                let part = input.get(4..4 + n.min(input.len().saturating_sub(4)))?;
                let bytes = bytes::Bytes::copy_from_slice(part);
                *input = &input[4 + part.len()..];
                Some(bytes)
            };
            while let (Some(header), Some(body)) = (take(&mut input), take(&mut input)) {
                out.push(FlightData {
                    data_header: header,
                    data_body: body,
                    ..FlightData::default()
                });
            }
            out
        }
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![Some(7)])) as _,
            ),
            ("b", Arc::new(StringArray::from(vec![Some("x")])) as _),
            (
                "c",
                Arc::new(datafusion::arrow::array::ListArray::from_iter_primitive::<
                    datafusion::arrow::datatypes::Int32Type,
                    _,
                    _,
                >(vec![Some(vec![Some(1), None])])) as _,
            ),
        ])
        .expect("batch");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let encode = |options: IpcWriteOptions| -> Vec<FlightData> {
            runtime
                .block_on(
                    arrow_flight::encode::FlightDataEncoderBuilder::new()
                        .with_options(options)
                        .build(stream::iter([Ok(batch.clone())]))
                        .try_collect::<Vec<_>>(),
                )
                .expect("encodes")
        };
        let seeds = vec![
            frame(&encode(IpcWriteOptions::default())),
            frame(&encode(
                IpcWriteOptions::default()
                    .try_with_compression(Some(datafusion::arrow::ipc::CompressionType::LZ4_FRAME))
                    .expect("lz4"),
            )),
        ];
        let expected = [Some(DataType::Int32), Some(DataType::Utf8), None];
        fuzz::bytes("flight_doput_ipc", &seeds, |input| {
            let messages = unframe(input);
            let decoded = runtime.block_on(ipc::decode_bounded(stream::iter(
                messages.into_iter().map(Ok),
            )));
            if let Ok(batches) = decoded {
                let _ = params_from(&batches, &expected);
            }
        });
    }
}

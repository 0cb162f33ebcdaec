//! A result as it travels to an HS2 client: its [`Shape`] (wire types, row format) and its
//! [`Items`] (batches, or a worker's messages passed on undecoded), read by the pages of
//! an operation and by the spool of download links alike.

use std::pin::Pin;

use arrow_flight::FlightData;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt};
use gateway::handler::ArrowRows;
use gateway::planner::{ErrorKind, QueryError};

use super::protocol::row_set;
use super::results::{self, IpcEncoder, WireOptions};

/// How an operation's result travels.
#[derive(Debug)]
pub struct Shape {
    /// Columns as the statement names and types them (TTableSchema comes from these).
    pub logical: SchemaRef,
    /// The Arrow types on the wire (Arrow path), or what Thrift columns are made from.
    pub wire: SchemaRef,
    /// `TSparkRowSetType`.
    pub format: i32,
    pub lz4: bool,
    /// `arrowSchema`: the encapsulated IPC schema message of `wire`.
    pub schema_message: Vec<u8>,
}

impl Shape {
    pub fn new(
        logical: SchemaRef,
        options: &WireOptions,
        columnar: bool,
    ) -> Result<Self, QueryError> {
        let wire = results::wire_schema(&logical, options);
        let schema_message = IpcEncoder::new(&wire)
            .map_err(|e| QueryError::internal(format!("encoding a result schema: {e}")))?
            .schema_message;
        let format = if options.arrow {
            row_set::ARROW
        } else if columnar {
            row_set::COLUMN
        } else {
            row_set::ROW
        };
        Ok(Self {
            logical,
            wire,
            format,
            lz4: options.arrow && options.lz4,
            schema_message,
        })
    }
}

/// A piece of a result.
pub enum Item {
    Batch(RecordBatch),
    /// A worker's record-batch message, already in the wire types: sent on undecoded.
    Flight(FlightData, usize),
}

impl Item {
    pub fn rows(&self) -> usize {
        match self {
            Item::Batch(b) => b.num_rows(),
            Item::Flight(_, rows) => *rows,
        }
    }
    pub fn bytes(&self) -> usize {
        match self {
            Item::Batch(b) => b.get_array_memory_size(),
            Item::Flight(d, _) => d.data_header.len() + d.data_body.len(),
        }
    }
}

pub type Items = Pin<Box<dyn Stream<Item = Result<Item, QueryError>> + Send>>;

/// The items of a result, from what the handler returned. A worker's IPC messages pass
/// through when its schema's types are the wire types (Arrow path); otherwise they are
/// decoded into batches.
pub async fn items(rows: ArrowRows, shape: &Shape) -> Result<Items, QueryError> {
    match rows {
        ArrowRows::Batches(batches) => Ok(Box::pin(batches.map_ok(Item::Batch))),
        ArrowRows::Ipc(mut messages) => {
            let first = messages.next().await.ok_or_else(|| {
                QueryError::new(ErrorKind::WorkerLost, "the worker sent no schema")
            })??;
            let same = shape.format == row_set::ARROW
                && Schema::try_from(&first).is_ok_and(|worker| {
                    worker.fields().len() == shape.wire.fields().len()
                        && worker
                            .fields()
                            .iter()
                            .zip(shape.wire.fields())
                            .all(|(w, p)| {
                                w.data_type() == p.data_type()
                                    && !matches!(w.data_type(), DataType::Dictionary(..))
                            })
                });
            tracing::debug!(pass_through = same, "hs2 result from a worker");
            if same {
                return Ok(Box::pin(messages.and_then(|data| async move {
                    let rows = gateway::transfer::message_rows(&data).ok_or_else(|| {
                        QueryError::new(
                            ErrorKind::WorkerLost,
                            "the worker sent a message that is not a record batch",
                        )
                    })?;
                    Ok(Item::Flight(data, rows))
                })));
            }
            let all = futures::stream::once(async move { Ok(first) }).chain(messages);
            let decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                all.map_err(|e| arrow_flight::error::FlightError::ExternalError(Box::new(e))),
            )
            .map_err(|e| match e {
                arrow_flight::error::FlightError::ExternalError(inner) => {
                    match inner.downcast::<QueryError>() {
                        Ok(q) => *q,
                        Err(other) => QueryError::new(ErrorKind::WorkerLost, other.to_string()),
                    }
                }
                other => QueryError::new(ErrorKind::WorkerLost, other.to_string()),
            });
            Ok(Box::pin(decoded.map_ok(Item::Batch)))
        }
    }
}

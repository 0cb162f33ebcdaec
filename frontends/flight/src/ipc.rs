//! Arrow IPC from a client (the parameters a DoPut binds), decoded within bounds.
//!
//! A message header is a flatbuffer that says how large the body's buffers are and, when
//! compressed, how large they become: trusted as it is, 32 bytes of LZ4 that claim 2^44
//! uncompressed bytes abort the process on the allocation. So before anything is decoded:
//! the messages are few and small in total; each header is verified as a flatbuffer; a
//! record batch is uncompressed, has at most [`MAX_ROWS`] rows and buffers that lie inside
//! its body; a schema has at most [`MAX_COLUMNS`] fields, of the plain types parameters
//! have (arrow's schema conversion panics on types it does not know, found by
//! `fuzz_flight_doput_ipc`), little-endian; dictionaries are refused. Only then does arrow
//! decode it, and a panic it may still have ends the call, never the process.

use arrow_flight::FlightData;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::{root_as_message, Endianness, MessageHeader};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

/// Bytes (headers and bodies) of all the messages of one DoPut.
pub const MAX_BYTES: usize = 16 << 20;
/// Messages in one DoPut.
const MAX_MESSAGES: usize = 64;
/// Rows in one parameter batch: parameters are bound one row at a time.
const MAX_ROWS: i64 = 1;
/// Parameters of one statement.
const MAX_COLUMNS: usize = 65_535;

fn refused(why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("parameters: {why}"))
}

/// The record batches of a client's Arrow IPC stream, each message checked first.
pub async fn decode_bounded<S>(messages: S) -> Result<Vec<RecordBatch>, Status>
where
    S: Stream<Item = Result<FlightData, Status>> + Send + Unpin,
{
    let mut kept = Vec::new();
    let mut bytes = 0usize;
    let mut messages = messages;
    while let Some(message) = messages.next().await {
        let message = message?;
        bytes = bytes.saturating_add(message.data_header.len() + message.data_body.len());
        if bytes > MAX_BYTES {
            return Err(refused(format!("more than {MAX_BYTES} bytes")));
        }
        if kept.len() >= MAX_MESSAGES {
            return Err(refused(format!("more than {MAX_MESSAGES} messages")));
        }
        check(&message)?;
        kept.push(message);
    }
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    // Every message is in memory: a panic of the decoder is caught as a refusal.
    let decode = std::panic::AssertUnwindSafe(
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(futures::stream::iter(
            kept.into_iter().map(Ok),
        ))
        .try_collect::<Vec<_>>(),
    );
    match futures::FutureExt::catch_unwind(decode).await {
        Ok(decoded) => decoded.map_err(refused),
        Err(_) => Err(refused("the Arrow IPC stream does not decode")),
    }
}

/// One message's header, checked against what decoding it would do.
fn check(message: &FlightData) -> Result<(), Status> {
    if message.data_header.is_empty() {
        // Application metadata only: nothing to decode.
        return Ok(());
    }
    let header = root_as_message(&message.data_header)
        .map_err(|e| refused(format!("not an Arrow IPC message header ({e})")))?;
    match header.header_type() {
        MessageHeader::Schema => {
            let schema = header
                .header_as_schema()
                .ok_or_else(|| refused("a schema message without its schema"))?;
            let Some(fields) = schema.fields().map(|f| f.len()) else {
                return Err(refused("a schema without fields"));
            };
            if fields > MAX_COLUMNS {
                return Err(refused(format!("more than {MAX_COLUMNS} columns")));
            }
            if schema.endianness() != Endianness::Little {
                return Err(refused("big-endian data is not accepted"));
            }
            check_metadata(schema.custom_metadata().into_iter().flat_map(|m| m.iter()))?;
            for field in schema.fields().into_iter().flat_map(|f| f.iter()) {
                check_field(field, 0)?;
            }
            Ok(())
        }
        MessageHeader::RecordBatch => {
            let batch = header
                .header_as_record_batch()
                .ok_or_else(|| refused("a record batch message without its batch"))?;
            if batch.compression().is_some() {
                return Err(refused(
                    "compressed record batches are not accepted: send parameters uncompressed",
                ));
            }
            if !(0..=MAX_ROWS).contains(&batch.length()) {
                return Err(refused(format!(
                    "a batch of {} rows: bind one row at a time",
                    batch.length()
                )));
            }
            if let Some(nodes) = batch.nodes() {
                if nodes
                    .iter()
                    .any(|n| !(0..=MAX_ROWS).contains(&n.length()) || n.null_count() < 0)
                {
                    return Err(refused("a column longer than its batch"));
                }
            }
            let body = message.data_body.len() as i64;
            if let Some(buffers) = batch.buffers() {
                for buffer in buffers {
                    let end = buffer.offset().checked_add(buffer.length());
                    if buffer.offset() < 0 || buffer.length() < 0 || end.is_none_or(|e| e > body) {
                        return Err(refused("a buffer outside the message body"));
                    }
                }
            }
            if batch.variadicBufferCounts().is_some_and(|counts| {
                counts
                    .iter()
                    .any(|c| !(0..=MAX_COLUMNS as i64).contains(&c))
            }) {
                return Err(refused("too many variadic buffers"));
            }
            Ok(())
        }
        MessageHeader::DictionaryBatch => Err(refused(
            "dictionary-encoded parameters are not accepted: send plain values",
        )),
        other => Err(refused(format!("unexpected Arrow IPC message {other:?}"))),
    }
}

fn check_metadata<'a>(
    entries: impl Iterator<Item = datafusion::arrow::ipc::KeyValue<'a>>,
) -> Result<(), Status> {
    for kv in entries {
        if kv.key().is_none() || kv.value().is_none() {
            return Err(refused("schema metadata without a key or a value"));
        }
    }
    Ok(())
}

/// A parameter column: a plain type, or a list of one (no deeper).
fn check_field(field: datafusion::arrow::ipc::Field<'_>, depth: usize) -> Result<(), Status> {
    use datafusion::arrow::ipc::{DateUnit, IntervalUnit, Precision, TimeUnit, Type};
    let bad = |what: &str| refused(format!("a parameter of {what}"));
    if field.dictionary().is_some() {
        return Err(refused(
            "dictionary-encoded parameters are not accepted: send plain values",
        ));
    }
    check_metadata(field.custom_metadata().into_iter().flat_map(|m| m.iter()))?;
    let time_unit = |u: TimeUnit| {
        matches!(
            u,
            TimeUnit::SECOND | TimeUnit::MILLISECOND | TimeUnit::MICROSECOND | TimeUnit::NANOSECOND
        )
    };
    let ok = match field.type_type() {
        Type::Null
        | Type::Bool
        | Type::Binary
        | Type::Utf8
        | Type::LargeBinary
        | Type::LargeUtf8 => true,
        Type::Int => field
            .type_as_int()
            .is_some_and(|t| matches!(t.bitWidth(), 8 | 16 | 32 | 64)),
        Type::FloatingPoint => field.type_as_floating_point().is_some_and(|t| {
            matches!(
                t.precision(),
                Precision::HALF | Precision::SINGLE | Precision::DOUBLE
            )
        }),
        Type::Decimal => field.type_as_decimal().is_some_and(|t| {
            (1..=76).contains(&t.precision())
                && (-128..=127).contains(&t.scale())
                && matches!(t.bitWidth(), 32 | 64 | 128 | 256)
        }),
        Type::Date => field
            .type_as_date()
            .is_some_and(|t| matches!(t.unit(), DateUnit::DAY | DateUnit::MILLISECOND)),
        Type::Time => field.type_as_time().is_some_and(|t| {
            matches!(
                (t.unit(), t.bitWidth()),
                (TimeUnit::SECOND | TimeUnit::MILLISECOND, 32)
                    | (TimeUnit::MICROSECOND | TimeUnit::NANOSECOND, 64)
            )
        }),
        Type::Timestamp => field
            .type_as_timestamp()
            .is_some_and(|t| time_unit(t.unit())),
        Type::Duration => field
            .type_as_duration()
            .is_some_and(|t| time_unit(t.unit())),
        Type::Interval => field.type_as_interval().is_some_and(|t| {
            matches!(
                t.unit(),
                IntervalUnit::YEAR_MONTH | IntervalUnit::DAY_TIME | IntervalUnit::MONTH_DAY_NANO
            )
        }),
        Type::List | Type::LargeList => {
            if depth > 0 {
                return Err(bad("lists nested in lists"));
            }
            let children: Vec<_> = field
                .children()
                .into_iter()
                .flat_map(|c| c.iter())
                .collect();
            let [child] = children.as_slice() else {
                return Err(bad("a list without exactly one item type"));
            };
            return check_field(*child, depth + 1);
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(&format!("type {:?}", field.type_type())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::ipc::writer::IpcWriteOptions;
    use datafusion::arrow::ipc::CompressionType;
    use std::sync::Arc;

    fn row(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("v{i}")),
                )),
            ],
        )
        .expect("batch")
    }

    async fn encode(batch: RecordBatch, options: IpcWriteOptions) -> Vec<FlightData> {
        FlightDataEncoderBuilder::new()
            .with_options(options)
            .build(futures::stream::iter([Ok(batch)]))
            .try_collect()
            .await
            .expect("encoded")
    }

    async fn decode(messages: Vec<FlightData>) -> Result<Vec<RecordBatch>, Status> {
        decode_bounded(futures::stream::iter(messages.into_iter().map(Ok))).await
    }

    /// A schema message with one field of `type_type` (or no field list at all): what
    /// `fuzz_flight_doput_ipc` found arrow's schema conversion panicking on.
    fn schema_message(type_type: Option<datafusion::arrow::ipc::Type>) -> FlightData {
        use datafusion::arrow::ipc::{
            FieldBuilder, MessageBuilder, MetadataVersion, SchemaBuilder,
        };
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let fields = type_type.map(|t| {
            let name = fbb.create_string("p");
            let mut field = FieldBuilder::new(&mut fbb);
            field.add_name(name);
            field.add_type_type(t);
            let field = field.finish();
            fbb.create_vector(&[field])
        });
        let mut schema = SchemaBuilder::new(&mut fbb);
        if let Some(fields) = fields {
            schema.add_fields(fields);
        }
        let schema = schema.finish();
        let mut message = MessageBuilder::new(&mut fbb);
        message.add_version(MetadataVersion::V5);
        message.add_header_type(MessageHeader::Schema);
        message.add_header(schema.as_union_value());
        let message = message.finish();
        fbb.finish(message, None);
        FlightData {
            data_header: fbb.finished_data().to_vec().into(),
            ..FlightData::default()
        }
    }

    #[tokio::test]
    async fn schemas_arrow_would_panic_on_are_refused() {
        use datafusion::arrow::ipc::Type;
        for (message, why) in [
            (schema_message(Some(Type::NONE)), "type"),
            (schema_message(None), "without fields"),
            (schema_message(Some(Type::Union)), "type"),
        ] {
            let e = decode(vec![message]).await.expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(why), "{e}");
        }
        // The builder makes what arrow reads, for a type it knows.
        let e = decode(vec![schema_message(Some(Type::Int))]).await;
        assert!(e.is_err(), "an Int without its bit width is refused too");
    }

    #[tokio::test]
    async fn one_plain_row_decodes() {
        let batches = decode(encode(row(1), IpcWriteOptions::default()).await)
            .await
            .expect("decodes");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn compressed_large_and_lying_batches_are_refused() {
        let lz4 = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .expect("lz4");
        let e = decode(encode(row(1), lz4).await).await.expect_err("lz4");
        assert!(e.message().contains("compressed"), "{e}");
        let e = decode(encode(row(3), IpcWriteOptions::default()).await)
            .await
            .expect_err("rows");
        assert!(e.message().contains("one row"), "{e}");
        // A body cut short: the header's buffers point past it.
        let mut messages = encode(row(1), IpcWriteOptions::default()).await;
        let last = messages.last_mut().expect("batch");
        last.data_body = last.data_body.slice(..last.data_body.len() / 2);
        let e = decode(messages).await.expect_err("short body");
        assert!(e.message().contains("outside"), "{e}");
        // Garbage where a header should be.
        let junk = FlightData {
            data_header: vec![0xff; 64].into(),
            ..FlightData::default()
        };
        assert!(decode(vec![junk]).await.is_err());
        let big = FlightData {
            data_body: vec![0; MAX_BYTES + 1].into(),
            ..FlightData::default()
        };
        assert!(decode(vec![big]).await.is_err());
    }
}

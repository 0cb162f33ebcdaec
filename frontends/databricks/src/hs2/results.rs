//! Result sets as HiveServer2 clients read them.
//!
//! - `TTableSchema` (mandatory: the DB-API `description` comes from it) with Hive type ids;
//!   DECIMAL carries precision and scale, or the Python client refuses the result.
//! - `ARROW_BASED_SET`: encapsulated Arrow IPC messages. The client concatenates the
//!   schema message (`arrowSchema`) and every batch message and reads them as one stream,
//!   so batches need no names, only the promised types; a worker's IPC messages pass
//!   through unchanged when their types already are the wire types.
//! - `COLUMN_BASED_SET` (impyla, PyHive, metadata calls): one `TColumn` per result column,
//!   values plus an LSB-first null bitmap; types the Thrift columns lack travel as Hive's
//!   text forms (dates `2024-01-31`, timestamps `2024-01-31 12:00:00.5`, decimals).
//!
//! Clients that ask for strings instead of native Arrow decimals, timestamps, nested or
//! interval types (`useArrowNativeTypes`) get those columns as text in the Arrow path too.

use std::sync::Arc;

use arrow_flight::FlightData;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int16Array, Int32Array,
    Int64Array, Int8Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit, Schema,
    SchemaRef,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::protocol::type_id;
use super::thrift::{ttype, Writer};

/// What a client said it can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireOptions {
    /// Arrow batches (`canReadArrowResult`); otherwise Thrift columns.
    pub arrow: bool,
    /// LZ4-frame-compressed batches and files (`canDecompressLZ4Result`).
    pub lz4: bool,
    /// Links to download large results (`canDownloadResult`).
    pub download: bool,
    /// `useArrowNativeTypes`: which types stay native Arrow (else they travel as text).
    pub native_decimal: bool,
    pub native_timestamp: bool,
    pub native_complex: bool,
    pub native_interval: bool,
}

impl WireOptions {
    /// Thrift columns, as metadata calls and clients without Arrow get them.
    pub fn columns() -> Self {
        Self::default()
    }

    /// Arrow with every type native, as Arrow files of the Statement Execution API carry
    /// them (no string views, which Arrow readers of other languages may not read).
    pub fn native_arrow() -> Self {
        Self {
            arrow: true,
            native_decimal: true,
            native_timestamp: true,
            native_complex: true,
            native_interval: true,
            ..Self::default()
        }
    }
}

/// The column types a result travels with (Arrow path) or is converted to before it is
/// written as Thrift columns.
pub fn wire_schema(schema: &Schema, options: &WireOptions) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), wire_type(f.data_type(), options), f.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

fn wire_type(data_type: &DataType, o: &WireOptions) -> DataType {
    use DataType::*;
    match data_type {
        Boolean | Int8 | Int16 | Int32 | Int64 | Float64 | Utf8 | Binary | Null => {
            data_type.clone()
        }
        Utf8View | LargeUtf8 => Utf8,
        BinaryView | LargeBinary | FixedSizeBinary(_) => Binary,
        UInt8 => Int16,
        UInt16 => Int32,
        UInt32 => Int64,
        UInt64 if o.arrow && o.native_decimal => Decimal128(20, 0),
        Float16 | Float32 if !o.arrow => Float64,
        Float16 => Float32,
        Float32 => Float32,
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..)
            if o.arrow && o.native_decimal =>
        {
            data_type.clone()
        }
        Date32 | Date64 if o.arrow => Date32,
        Timestamp(..) if o.arrow && o.native_timestamp => data_type.clone(),
        // Nested types travel natively with their members in wire types too (the
        // connector's pandas conversion reads no string views inside a list).
        List(f) | LargeList(f) | FixedSizeList(f, _) if o.arrow && o.native_complex => {
            List(Arc::new(wire_field(f, o)))
        }
        Struct(fields) if o.arrow && o.native_complex => {
            Struct(fields.iter().map(|f| wire_field(f, o)).collect())
        }
        Map(entries, sorted) if o.arrow && o.native_complex => {
            Map(Arc::new(wire_field(entries, o)), *sorted)
        }
        Interval(_) | Duration(_) if o.arrow && o.native_interval => data_type.clone(),
        Dictionary(_, value) => wire_type(value, o),
        // Everything else (times, and the types above where the client asked for text)
        // travels in Hive's text form.
        _ => Utf8,
    }
}

fn wire_field(f: &Field, o: &WireOptions) -> Field {
    Field::new(f.name(), wire_type(f.data_type(), o), f.is_nullable())
}

/// Cast a batch to the wire schema (untouched columns are shared, not copied).
pub fn to_wire(batch: &RecordBatch, wire: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(wire.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else if field.data_type() == &DataType::Utf8 && !is_text(column.data_type()) {
                hive_text(column)
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(wire.clone(), columns)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(data_type, DataType::Dictionary(_, v) if is_text(v))
}

/// Values in Hive's text forms.
fn hive_text(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    const FORMAT: FormatOptions<'static> = FormatOptions::new()
        .with_date_format(Some("%Y-%m-%d"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    if let DataType::Interval(IntervalUnit::MonthDayNano) = column.data_type() {
        return Ok(Arc::new(
            column
                .as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .map(|v| v.map(hive_interval))
                .collect::<datafusion::arrow::array::StringArray>(),
        ));
    }
    let formatter = ArrayFormatter::try_new(column.as_ref(), &FORMAT)?;
    let mut out = datafusion::arrow::array::StringBuilder::with_capacity(column.len(), 0);
    for i in 0..column.len() {
        if column.is_null(i) {
            out.append_null();
        } else {
            out.append_value(formatter.value(i).to_string());
        }
    }
    Ok(Arc::new(out.finish()))
}

/// An interval in Hive's text forms, as Databricks sends them: `Y-M` for years and months,
/// `D HH:MM:SS.nnnnnnnnn` for days and time (one of the two kinds; a value with both is
/// written as days and time after whole months of 30 days).
fn hive_interval(v: IntervalMonthDayNano) -> String {
    if v.days == 0 && v.nanoseconds == 0 {
        let sign = if v.months < 0 { "-" } else { "" };
        let months = v.months.unsigned_abs();
        return format!("{sign}{}-{}", months / 12, months % 12);
    }
    let total =
        (v.months as i128 * 30 + v.days as i128) * 86_400_000_000_000 + v.nanoseconds as i128;
    let sign = if total < 0 { "-" } else { "" };
    let total = total.unsigned_abs();
    let nanos = total % 1_000_000_000;
    let seconds = total / 1_000_000_000;
    format!(
        "{sign}{} {:02}:{:02}:{:02}.{nanos:09}",
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60
    )
}

/// A `TTableSchema` field (`id`): names, Hive type ids (from the query's own types, so a
/// decimal sent as text is still DECIMAL), positions.
pub fn write_table_schema(w: &mut Writer, id: i16, schema: &Schema) {
    w.struct_field(id, |w| {
        w.list_begin(1, ttype::STRUCT, schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            // TColumnDesc
            w.string_field(1, field.name());
            w.struct_field(2, |w| {
                // TTypeDesc{types: [TTypeEntry{primitiveEntry}]}
                w.list_begin(1, ttype::STRUCT, 1);
                w.struct_field(1, |w| {
                    w.i32_field(1, type_id(field.data_type()));
                    if let Some((precision, scale)) = decimal_of(field.data_type()) {
                        // typeQualifiers{qualifiers: {precision, scale}}
                        w.struct_field(2, |w| {
                            w.field(ttype::MAP, 1);
                            w.raw_u8(ttype::STRING);
                            w.raw_u8(ttype::STRUCT);
                            w.raw_i32(2);
                            for (name, value) in [("precision", precision), ("scale", scale)] {
                                w.raw_bytes(name.as_bytes());
                                w.i32_field(1, value);
                                w.stop();
                            }
                        });
                    }
                });
                w.stop();
            });
            w.i32_field(3, i as i32 + 1);
            w.stop();
        }
    });
}

/// Precision and scale of a decimal (unsigned 64-bit integers are DECIMAL(20, 0)).
pub fn decimal_of(data_type: &DataType) -> Option<(i32, i32)> {
    match data_type {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => Some((i32::from(*p), i32::from(*s))),
        DataType::UInt64 => Some((20, 0)),
        DataType::Dictionary(_, value) => decimal_of(value),
        _ => None,
    }
}

/// Encodes batches as encapsulated IPC messages of one stream.
pub struct IpcEncoder {
    writer: StreamWriter<Vec<u8>>,
    /// The schema message, as `arrowSchema`.
    pub schema_message: Vec<u8>,
}

impl IpcEncoder {
    pub fn new(schema: &Schema) -> Result<Self, ArrowError> {
        let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
        let schema_message = std::mem::take(writer.get_mut());
        Ok(Self {
            writer,
            schema_message,
        })
    }

    /// One batch as an encapsulated record-batch message.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }
}

/// A worker's Flight message (metadata + body) as an encapsulated IPC message:
/// continuation marker, metadata length, metadata padded to 8 bytes, body.
pub fn encapsulate(data: &FlightData) -> Vec<u8> {
    let header = &data.data_header;
    let padded = header.len().div_ceil(8) * 8;
    let body_padded = data.data_body.len().div_ceil(8) * 8;
    let mut out = Vec::with_capacity(8 + padded + body_padded);
    out.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    out.extend_from_slice(&(padded as i32).to_le_bytes());
    out.extend_from_slice(header);
    out.resize(8 + padded, 0);
    out.extend_from_slice(&data.data_body);
    out.resize(8 + padded + body_padded, 0);
    out
}

/// An Arrow IPC stream's end marker.
pub const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// One LZ4 frame holding `bytes`.
pub fn lz4_frame(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(bytes.len() / 2));
    encoder.write_all(bytes)?;
    encoder.finish().map_err(std::io::Error::other)
}

/// A `TRowSet.columns` field: one TColumn per column of `schema`, holding the rows of all
/// `batches` (already converted with [`to_wire`] for [`WireOptions::columns`]).
pub fn write_columns(w: &mut Writer, id: i16, schema: &Schema, batches: &[RecordBatch]) {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    w.list_begin(id, ttype::STRUCT, schema.fields().len());
    for (c, field) in schema.fields().iter().enumerate() {
        let columns: Vec<&ArrayRef> = batches.iter().map(|b| b.column(c)).collect();
        // TColumn is a union: the member's field id names the value type.
        let (member, elem) = match field.data_type() {
            DataType::Boolean => (1, ttype::BOOL),
            DataType::Int8 => (2, ttype::BYTE),
            DataType::Int16 => (3, ttype::I16),
            DataType::Int32 => (4, ttype::I32),
            DataType::Int64 => (5, ttype::I64),
            DataType::Float64 => (6, ttype::DOUBLE),
            DataType::Binary => (8, ttype::STRING),
            _ => (7, ttype::STRING),
        };
        w.field(ttype::STRUCT, member);
        w.list_begin(1, elem, rows);
        for column in &columns {
            write_values(w, column);
        }
        w.binary_field(2, &null_bitmap(&columns, rows));
        w.stop();
        w.stop();
    }
}

fn write_values(w: &mut Writer, column: &ArrayRef) {
    // Null slots still take a value (zero / empty); the bitmap says which they are.
    match column.data_type() {
        DataType::Boolean => {
            let a: &BooleanArray = column.as_boolean();
            for i in 0..a.len() {
                w.raw_u8(u8::from(a.is_valid(i) && a.value(i)));
            }
        }
        DataType::Int8 => {
            let a: &Int8Array = column.as_primitive();
            a.values().iter().for_each(|v| w.raw_u8(*v as u8));
        }
        DataType::Int16 => {
            let a: &Int16Array = column.as_primitive();
            a.values().iter().for_each(|v| w.raw_i16(*v));
        }
        DataType::Int32 => {
            let a: &Int32Array = column.as_primitive();
            a.values().iter().for_each(|v| w.raw_i32(*v));
        }
        DataType::Int64 => {
            let a: &Int64Array = column.as_primitive();
            a.values().iter().for_each(|v| w.raw_i64(*v));
        }
        DataType::Float64 => {
            let a: &Float64Array = column.as_primitive();
            a.values().iter().for_each(|v| w.raw_double(*v));
        }
        DataType::Binary => {
            let a: &BinaryArray = column.as_binary();
            for i in 0..a.len() {
                w.raw_bytes(if a.is_valid(i) { a.value(i) } else { b"" });
            }
        }
        DataType::Utf8 => {
            let a: &StringArray = column.as_string();
            for i in 0..a.len() {
                w.raw_bytes(if a.is_valid(i) {
                    a.value(i).as_bytes()
                } else {
                    b""
                });
            }
        }
        // Null-typed columns: every value is null.
        _ => (0..column.len()).for_each(|_| w.raw_bytes(b"")),
    }
}

/// A `TRowSet.rows` field (Hive V1–V5 clients): one TRow per row, each value a
/// `TColumnValue` whose member is absent-valued for NULL.
pub fn write_rows(w: &mut Writer, id: i16, batches: &[RecordBatch]) {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    w.list_begin(id, ttype::STRUCT, rows);
    for batch in batches {
        for row in 0..batch.num_rows() {
            w.list_begin(1, ttype::STRUCT, batch.num_columns());
            for column in batch.columns() {
                let valid = column.is_valid(row);
                match column.data_type() {
                    DataType::Boolean => w.struct_field(1, |w| {
                        if valid {
                            w.bool_field(1, column.as_boolean().value(row));
                        }
                    }),
                    DataType::Int8 => w.struct_field(2, |w| {
                        if valid {
                            w.field(ttype::BYTE, 1);
                            w.raw_u8(
                                column
                                    .as_primitive::<datafusion::arrow::datatypes::Int8Type>()
                                    .value(row) as u8,
                            );
                        }
                    }),
                    DataType::Int16 => w.struct_field(3, |w| {
                        if valid {
                            w.i16_field(
                                1,
                                column
                                    .as_primitive::<datafusion::arrow::datatypes::Int16Type>()
                                    .value(row),
                            );
                        }
                    }),
                    DataType::Int32 => w.struct_field(4, |w| {
                        if valid {
                            w.i32_field(
                                1,
                                column
                                    .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                                    .value(row),
                            );
                        }
                    }),
                    DataType::Int64 => w.struct_field(5, |w| {
                        if valid {
                            w.i64_field(
                                1,
                                column
                                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                                    .value(row),
                            );
                        }
                    }),
                    DataType::Float64 => w.struct_field(6, |w| {
                        if valid {
                            w.double_field(
                                1,
                                column
                                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                                    .value(row),
                            );
                        }
                    }),
                    DataType::Utf8 => w.struct_field(7, |w| {
                        if valid {
                            w.string_field(1, column.as_string::<i32>().value(row));
                        }
                    }),
                    DataType::Binary => w.struct_field(7, |w| {
                        if valid {
                            w.binary_field(1, column.as_binary::<i32>().value(row));
                        }
                    }),
                    _ => w.struct_field(7, |_| {}),
                }
                // End of this TColumnValue (a union: one member set).
                w.stop();
            }
            // End of the TRow.
            w.stop();
        }
    }
}

/// Bit i (LSB first) set when row i is null; always the full length, which the Python
/// client indexes without checking.
fn null_bitmap(columns: &[&ArrayRef], rows: usize) -> Vec<u8> {
    let mut bits = vec![0u8; rows.div_ceil(8)];
    let mut row = 0;
    for column in columns {
        let all_null = column.data_type() == &DataType::Null;
        for i in 0..column.len() {
            if all_null || column.is_null(i) {
                bits[row >> 3] |= 1 << (row & 7);
            }
            row += 1;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::thrift::{Reader, Value};
    use datafusion::arrow::array::{Date32Array, Decimal128Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::TimeUnit;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("d", DataType::Decimal128(15, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("s", DataType::Utf8View, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), Some(-5), None])
                        .with_precision_and_scale(15, 2)
                        .expect("decimal"),
                ),
                Arc::new(Date32Array::from(vec![Some(19_000), None, Some(0)])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_500_000),
                    None,
                    Some(0),
                ])),
                Arc::new(datafusion::arrow::array::StringViewArray::from(vec![
                    Some("a"),
                    Some(""),
                    None,
                ])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn columns_carry_hive_text_forms_and_null_bitmaps() {
        let b = batch();
        let wire = wire_schema(&b.schema(), &WireOptions::columns());
        assert_eq!(wire.field(1).data_type(), &DataType::Utf8);
        let converted = to_wire(&b, &wire).expect("convert");
        let text: &StringArray = converted.column(1).as_string();
        assert_eq!(text.value(0), "123.45");
        assert_eq!(text.value(1), "-0.05");
        let days: &StringArray = converted.column(2).as_string();
        assert_eq!(days.value(0), "2022-01-08");
        let times: &StringArray = converted.column(3).as_string();
        assert_eq!(times.value(0), "1970-01-01 00:00:01.500");

        let mut w = Writer::default();
        w.struct_field(3, |w| {
            write_columns(w, 1, &wire, &[converted.clone(), converted])
        });
        w.stop();
        let s = Reader::new(&w.buf).read_struct().expect("decodes");
        let columns = s.strukt(3).and_then(|r| r.list(1)).expect("columns");
        assert_eq!(columns.len(), 5);
        let Value::Struct(first) = &columns[0] else {
            panic!("TColumn")
        };
        let i32s = first.strukt(4).expect("i32Val");
        assert_eq!(i32s.list(1).map(|v| v.len()), Some(6));
        // rows 1 and 4 are null: bits 1 and 4.
        assert_eq!(i32s.binary(2), Some(&[0b0001_0010u8][..]));
    }

    #[test]
    fn rows_are_lists_of_column_values() {
        let b = batch();
        let wire = wire_schema(&b.schema(), &WireOptions::columns());
        let converted = to_wire(&b, &wire).expect("convert");
        let mut w = Writer::default();
        w.struct_field(3, |w| write_rows(w, 2, &[converted]));
        w.stop();
        let s = Reader::new(&w.buf).read_struct().expect("decodes");
        let rows = s.strukt(3).and_then(|r| r.list(2)).expect("rows");
        assert_eq!(rows.len(), 3);
        let Value::Struct(row) = &rows[1] else {
            panic!("TRow")
        };
        let values = row.list(1).expect("colVals");
        assert_eq!(values.len(), 5);
        // Row 1's int is NULL: the i32Val member is there, without a value.
        let Value::Struct(int) = &values[0] else {
            panic!("TColumnValue")
        };
        assert_eq!(int.strukt(4).map(|v| v.get(1).is_none()), Some(true));
        let Value::Struct(text) = &values[1] else {
            panic!("TColumnValue")
        };
        assert_eq!(
            text.strukt(7).and_then(|v| v.string(1)).as_deref(),
            Some("-0.05")
        );
    }

    #[test]
    fn arrow_path_keeps_native_types_unless_asked_for_text() {
        let b = batch();
        let native = WireOptions {
            arrow: true,
            native_decimal: true,
            native_timestamp: true,
            ..Default::default()
        };
        let wire = wire_schema(&b.schema(), &native);
        assert_eq!(wire.field(1).data_type(), &DataType::Decimal128(15, 2));
        assert_eq!(wire.field(4).data_type(), &DataType::Utf8);
        let text = wire_schema(
            &b.schema(),
            &WireOptions {
                arrow: true,
                ..Default::default()
            },
        );
        assert_eq!(text.field(1).data_type(), &DataType::Utf8);
        assert_eq!(text.field(3).data_type(), &DataType::Utf8);
        assert_eq!(decimal_of(b.schema().field(1).data_type()), Some((15, 2)));
    }

    #[test]
    fn encapsulated_messages_read_back_as_a_stream() {
        let b = batch();
        let wire = wire_schema(
            &b.schema(),
            &WireOptions {
                arrow: true,
                native_decimal: true,
                native_timestamp: true,
                ..Default::default()
            },
        );
        let converted = to_wire(&b, &wire).expect("convert");
        let mut encoder = IpcEncoder::new(&wire).expect("encoder");
        let mut stream = encoder.schema_message.clone();
        stream.extend(encoder.encode(&converted).expect("encode"));
        // The same batch through Flight's encoder, then encapsulated.
        let flight = arrow_flight::utils::batches_to_flight_data(&wire, vec![converted.clone()])
            .expect("flight");
        assert_eq!(gateway::transfer::message_rows(&flight[1]), Some(3));
        stream.extend(encapsulate(&flight[1]));
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(
            std::io::Cursor::new(stream),
            None,
        )
        .expect("reader");
        let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], converted);
        // LZ4 frames decompress to the same bytes.
        let raw = encoder.encode(&converted).expect("encode");
        let framed = lz4_frame(&raw).expect("lz4");
        let mut back = Vec::new();
        std::io::Read::read_to_end(
            &mut lz4_flex::frame::FrameDecoder::new(&framed[..]),
            &mut back,
        )
        .expect("decompress");
        assert_eq!(back, raw);
    }
}

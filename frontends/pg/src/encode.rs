//! Arrow → PostgreSQL wire values: column types for RowDescription, and DataRows in text
//! or binary format, a whole batch at a time.
//!
//! Encoding is hand-written rather than routed through `ToSql` per value: it runs for every
//! cell of every result, and the formats (numeric's base-10000 digits, dates since
//! 2000-01-01) are simple to state exactly here.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::*;
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use gateway::planner::pg_catalog::types;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use gateway::handler::CopyFormat;

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i64 = 10_957;
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// The PostgreSQL type a column is sent as (one mapping, shared with pg_catalog).
pub fn pg_type(field: &Field) -> Type {
    Type::from_oid(types::field_type_oid(field)).unwrap_or(Type::TEXT)
}

/// The PostgreSQL type of a value of this Arrow type.
pub fn pg_type_of(data_type: &DataType) -> Type {
    Type::from_oid(types::type_oid(data_type)).unwrap_or(Type::TEXT)
}

/// RowDescription fields for a schema, with the requested result formats.
pub fn fields(schema: &SchemaRef, format: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let t = pg_type(field);
            let size = types::type_len(t.oid());
            let origin = |key: &str| field.metadata().get(key).and_then(|v| v.parse().ok());
            let table = origin(types::TABLE_OID_KEY).map(|n: i64| n as i32);
            let column = origin(types::ATTNUM_KEY).map(|n: i64| n as i16);
            FieldInfo::new(field.name().clone(), table, column, t, format(i))
                .with_type_modifier(types::type_modifier(field.data_type()))
                .with_type_size(size)
        })
        .collect()
}

/// Encode every row of a batch as a DataRow.
pub fn encode_batch(batch: &RecordBatch, formats: &[FieldFormat]) -> Result<Vec<DataRow>, String> {
    let columns = column_writers(batch, |i| {
        formats.get(i).copied().unwrap_or(FieldFormat::Text)
    })?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    // Rows are split off one shared buffer, refilled in large chunks: one allocation per
    // few hundred rows instead of a grow-and-copy per row.
    const CHUNK: usize = 256 * 1024;
    let mut buf = BytesMut::with_capacity(CHUNK);
    for row in 0..batch.num_rows() {
        if buf.capacity() < 4096 {
            buf = BytesMut::with_capacity(CHUNK);
        }
        for column in &columns {
            column.write(row, &mut buf)?;
        }
        rows.push(DataRow::new(buf.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// Writes one column's values, each as a length-prefixed field.
struct ColumnWriter<'a> {
    /// Validity, looked up once per batch instead of a dynamic call per cell (logical, so
    /// that `NULL`-typed and dictionary columns are right too).
    nulls: Option<NullBuffer>,
    binary: bool,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Bool(&'a BooleanArray),
    I8(&'a Int8Array),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    U8(&'a UInt8Array),
    U16(&'a UInt16Array),
    U32(&'a UInt32Array),
    U64(&'a UInt64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Dec128(&'a Decimal128Array, i8),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Binary(&'a BinaryArray),
    BinaryView(&'a BinaryViewArray),
    Date32(&'a Date32Array),
    TsMicros(&'a TimestampMicrosecondArray, bool),
    /// Other timestamp units, normalised to microseconds on the fly.
    Ts(&'a dyn Array, TimeUnit, bool),
    Time64Micros(&'a Time64MicrosecondArray),
    IntervalMdn(&'a IntervalMonthDayNanoArray),
    /// 16-byte values (Parquet's UUID): `uuid`, text `8-4-4-4-12` hex or 16 raw bytes.
    Uuid(&'a FixedSizeBinaryArray),
    /// A one-dimensional array: `{a,b}` in text, PostgreSQL's array format in binary.
    List {
        offsets: &'a [i32],
        elements: Box<ColumnWriter<'a>>,
        element_oid: u32,
        quote: bool,
        /// int2vector / oidvector: text `1 2`, binary lower bound 0.
        vector: bool,
    },
    /// An OID-alias value (`regclass`, `regproc`, …): the object's name in text, its OID
    /// in binary, as PostgreSQL sends them.
    Reg(&'a UInt32Array, &'a StringArray),
    /// Everything else: Arrow's own text rendering. Sent as `text` (whose binary form is
    /// the same bytes), except numeric-typed columns (flag set), which a binary-format
    /// client gets as binary numeric.
    Display(ArrayFormatter<'a>, bool),
}

impl<'a> ColumnWriter<'a> {
    fn new(array: &'a ArrayRef, format: FieldFormat) -> Result<Self, String> {
        let binary = format == FieldFormat::Binary;
        let any = array.as_any();
        macro_rules! get {
            ($t:ty) => {
                any.downcast_ref::<$t>()
                    .ok_or_else(|| format!("column is not {}", stringify!($t)))?
            };
        }
        let kind = match array.data_type() {
            DataType::Boolean => Kind::Bool(get!(BooleanArray)),
            DataType::Int8 => Kind::I8(get!(Int8Array)),
            DataType::Int16 => Kind::I16(get!(Int16Array)),
            DataType::Int32 => Kind::I32(get!(Int32Array)),
            DataType::Int64 => Kind::I64(get!(Int64Array)),
            DataType::UInt8 => Kind::U8(get!(UInt8Array)),
            DataType::UInt16 => Kind::U16(get!(UInt16Array)),
            DataType::UInt32 => Kind::U32(get!(UInt32Array)),
            DataType::UInt64 => Kind::U64(get!(UInt64Array)),
            DataType::Float32 => Kind::F32(get!(Float32Array)),
            DataType::Float64 => Kind::F64(get!(Float64Array)),
            DataType::Decimal128(_, s) => Kind::Dec128(get!(Decimal128Array), *s),
            DataType::Utf8 => Kind::Utf8(get!(StringArray)),
            DataType::LargeUtf8 => Kind::LargeUtf8(get!(LargeStringArray)),
            DataType::Utf8View => Kind::Utf8View(get!(StringViewArray)),
            DataType::Binary => Kind::Binary(get!(BinaryArray)),
            DataType::FixedSizeBinary(16) => Kind::Uuid(get!(FixedSizeBinaryArray)),
            DataType::BinaryView => Kind::BinaryView(get!(BinaryViewArray)),
            DataType::Date32 => Kind::Date32(get!(Date32Array)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Kind::TsMicros(get!(TimestampMicrosecondArray), tz.is_some())
            }
            DataType::Timestamp(unit, tz) => Kind::Ts(array.as_ref(), *unit, tz.is_some()),
            DataType::Time64(TimeUnit::Microsecond) => {
                Kind::Time64Micros(get!(Time64MicrosecondArray))
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Kind::IntervalMdn(get!(IntervalMonthDayNanoArray))
            }
            DataType::List(item) => {
                let list = get!(ListArray);
                Kind::List {
                    offsets: list.value_offsets(),
                    elements: Box::new(ColumnWriter::new(list.values(), format)?),
                    element_oid: types::field_type_oid(item),
                    quote: matches!(
                        item.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ),
                    vector: false,
                }
            }
            DataType::Struct(fields)
                if fields.len() == 2
                    && fields[0].name() == types::REG_OID_FIELD
                    && fields[1].name() == types::REG_NAME_FIELD =>
            {
                let pair = get!(StructArray);
                let oids = pair.column(0).as_any().downcast_ref::<UInt32Array>();
                let names = pair.column(1).as_any().downcast_ref::<StringArray>();
                match (oids, names) {
                    (Some(oids), Some(names)) => Kind::Reg(oids, names),
                    _ => return Err("an OID-alias column of unexpected types".into()),
                }
            }
            other => {
                let options = FormatOptions::default().with_null("");
                let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
                    .map_err(|e| format!("cannot send a column of type {other}: {e}"))?;
                Kind::Display(
                    formatter,
                    matches!(
                        other,
                        DataType::Decimal256(..)
                            | DataType::Decimal32(..)
                            | DataType::Decimal64(..)
                    ),
                )
            }
        };
        // A pair is null where its OID is (`named_struct` itself never is).
        let nulls = match &kind {
            Kind::Reg(oids, _) => oids.logical_nulls(),
            _ => array.logical_nulls(),
        };
        Ok(Self {
            nulls,
            binary,
            kind,
        })
    }

    fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }

    fn write(&self, row: usize, buf: &mut BytesMut) -> Result<(), String> {
        if self.is_null(row) {
            buf.put_i32(-1);
            return Ok(());
        }
        let at = buf.len();
        buf.put_i32(0);
        self.write_value(row, buf)?;
        let len = (buf.len() - at - 4) as i32;
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn write_value(&self, row: usize, buf: &mut BytesMut) -> Result<(), String> {
        let binary = self.binary;
        match &self.kind {
            Kind::Bool(a) => {
                let v = a.value(row);
                if binary {
                    buf.put_u8(v as u8)
                } else {
                    buf.put_u8(if v { b't' } else { b'f' })
                }
            }
            Kind::I8(a) => int(buf, binary, a.value(row) as i64, 2),
            Kind::I16(a) => int(buf, binary, a.value(row) as i64, 2),
            Kind::I32(a) => int(buf, binary, a.value(row) as i64, 4),
            Kind::I64(a) => int(buf, binary, a.value(row), 8),
            Kind::U8(a) => int(buf, binary, a.value(row) as i64, 2),
            Kind::U16(a) => int(buf, binary, a.value(row) as i64, 4),
            // Unsigned 32-bit columns are OIDs: four bytes unsigned.
            Kind::U32(a) => {
                if binary {
                    buf.put_u32(a.value(row))
                } else {
                    put_digits(buf, a.value(row) as u64, 1)
                }
            }
            // Unsigned 64-bit columns (row_number(), rank(), …) are bigint, as PostgreSQL
            // types those functions.
            Kind::U64(a) => {
                let v = i64::try_from(a.value(row))
                    .map_err(|_| format!("value {} out of range for type bigint", a.value(row)))?;
                int(buf, binary, v, 8)
            }
            Kind::F32(a) => {
                let v = a.value(row);
                if binary {
                    buf.put_f32(v)
                } else {
                    float_text(buf, v as f64, true)
                }
            }
            Kind::F64(a) => {
                let v = a.value(row);
                if binary {
                    buf.put_f64(v)
                } else {
                    float_text(buf, v, false)
                }
            }
            Kind::Dec128(a, scale) => {
                if binary {
                    numeric_binary_i128(buf, a.value(row), *scale)
                } else {
                    decimal_write(buf, a.value(row), *scale)
                }
            }
            Kind::Utf8(a) => buf.put_slice(a.value(row).as_bytes()),
            Kind::LargeUtf8(a) => buf.put_slice(a.value(row).as_bytes()),
            Kind::Utf8View(a) => buf.put_slice(a.value(row).as_bytes()),
            Kind::Binary(a) => bytea(buf, binary, a.value(row)),
            Kind::BinaryView(a) => bytea(buf, binary, a.value(row)),
            Kind::Date32(a) => {
                let days = a.value(row) as i64;
                if binary {
                    buf.put_i32((days - PG_EPOCH_DAYS) as i32)
                } else {
                    date_text(buf, days)?
                }
            }
            Kind::TsMicros(a, tz) => timestamp(buf, binary, a.value(row), *tz)?,
            Kind::Ts(a, unit, tz) => {
                let micros = match unit {
                    TimeUnit::Second => {
                        a.as_primitive::<datafusion::arrow::datatypes::TimestampSecondType>()
                            .value(row)
                            * 1_000_000
                    }
                    TimeUnit::Millisecond => {
                        a.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                            .value(row)
                            * 1_000
                    }
                    TimeUnit::Microsecond => a
                        .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                        .value(row),
                    TimeUnit::Nanosecond => a
                        .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
                        .value(row)
                        .div_euclid(1_000),
                };
                timestamp(buf, binary, micros, *tz)?
            }
            Kind::Time64Micros(a) => {
                let micros = a.value(row);
                if binary {
                    buf.put_i64(micros)
                } else if (0..86_400_000_000).contains(&micros) {
                    time_text(buf, micros)
                } else {
                    return Err(format!("time of day out of range: {micros} µs"));
                }
            }
            Kind::IntervalMdn(a) => {
                let v = a.value(row);
                let micros = v.nanoseconds / 1000;
                if binary {
                    buf.put_i64(micros);
                    buf.put_i32(v.days);
                    buf.put_i32(v.months);
                } else {
                    buf.put_slice(interval_text(v.months, v.days, micros).as_bytes())
                }
            }
            Kind::Uuid(a) => {
                let v = a.value(row);
                if binary {
                    buf.put_slice(v)
                } else {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    for (i, byte) in v.iter().enumerate() {
                        if matches!(i, 4 | 6 | 8 | 10) {
                            buf.put_u8(b'-');
                        }
                        buf.put_u8(HEX[(byte >> 4) as usize]);
                        buf.put_u8(HEX[(byte & 15) as usize]);
                    }
                }
            }
            Kind::List {
                offsets,
                elements,
                element_oid,
                quote,
                vector,
            } => {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                if binary {
                    let has_null = (start..end).any(|i| elements.is_null(i));
                    buf.put_i32(1);
                    buf.put_i32(has_null as i32);
                    buf.put_u32(*element_oid);
                    buf.put_i32((end - start) as i32);
                    buf.put_i32(if *vector { 0 } else { 1 });
                    for i in start..end {
                        elements.write(i, buf)?;
                    }
                } else if *vector {
                    for i in start..end {
                        if i > start {
                            buf.put_u8(b' ');
                        }
                        elements.write_value(i, buf)?;
                    }
                } else {
                    buf.put_u8(b'{');
                    for i in start..end {
                        if i > start {
                            buf.put_u8(b',');
                        }
                        if elements.is_null(i) {
                            buf.put_slice(b"NULL");
                            continue;
                        }
                        let mut item = BytesMut::new();
                        elements.write_value(i, &mut item)?;
                        if *quote && needs_quotes(&item) {
                            buf.put_u8(b'"');
                            for &c in item.iter() {
                                if c == b'"' || c == b'\\' {
                                    buf.put_u8(b'\\');
                                }
                                buf.put_u8(c);
                            }
                            buf.put_u8(b'"');
                        } else {
                            buf.put_slice(&item);
                        }
                    }
                    buf.put_u8(b'}');
                }
            }
            Kind::Reg(oids, names) => {
                if binary {
                    buf.put_u32(oids.value(row))
                } else {
                    buf.put_slice(names.value(row).as_bytes())
                }
            }
            Kind::Display(formatter, numeric) => {
                use std::fmt::Write;
                let mut s = String::new();
                write!(s, "{}", formatter.value(row)).map_err(|e| e.to_string())?;
                if binary && *numeric {
                    numeric_binary(buf, &s)
                } else {
                    buf.put_slice(s.as_bytes())
                }
            }
        }
        Ok(())
    }
}

/// A writer for each column of a batch, in the format `format_of(column)`.
fn column_writers(
    batch: &RecordBatch,
    format_of: impl Fn(usize) -> FieldFormat,
) -> Result<Vec<ColumnWriter<'_>>, String> {
    let schema = batch.schema();
    batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let mut writer = ColumnWriter::new(column, format_of(i))?;
            if let Kind::List { vector, .. } = &mut writer.kind {
                *vector = matches!(types::field_type_oid(schema.field(i)), 22 | 30);
            }
            Ok(writer)
        })
        .collect()
}

/// `COPY … TO STDOUT (FORMAT binary)` rows of a batch: each a field count, then each
/// value as its length and binary form (-1 for NULL), as in a DataRow.
fn copy_batch_binary(batch: &RecordBatch) -> Result<Vec<BytesMut>, String> {
    let columns = column_writers(batch, |_| FieldFormat::Binary)?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut data = BytesMut::with_capacity(64);
        data.put_i16(columns.len() as i16);
        for column in &columns {
            column.write(row, &mut data)?;
        }
        rows.push(data);
    }
    Ok(rows)
}

/// `COPY … TO STDOUT` rows of a batch, each a complete line (a tuple, in binary).
pub fn copy_batch(batch: &RecordBatch, format: &CopyFormat) -> Result<Vec<BytesMut>, String> {
    if format.binary {
        return copy_batch_binary(batch);
    }
    let columns: Vec<ColumnWriter> = batch
        .columns()
        .iter()
        .map(|c| ColumnWriter::new(c, FieldFormat::Text))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut value = BytesMut::new();
    for row in 0..batch.num_rows() {
        let mut line = BytesMut::with_capacity(64);
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                line.put_u8(format.delimiter);
            }
            if column.is_null(row) {
                line.put_slice(format.null.as_bytes());
                continue;
            }
            value.clear();
            column.write_value(row, &mut value)?;
            copy_value(&mut line, &value, format);
        }
        line.put_u8(b'\n');
        rows.push(line);
    }
    Ok(rows)
}

/// What comes before the rows: the binary format's signature and header, or the CSV
/// header line (the column names); nothing otherwise.
pub fn copy_header(schema: &SchemaRef, format: &CopyFormat) -> Option<BytesMut> {
    if format.binary {
        let mut header = BytesMut::with_capacity(19);
        header.put_slice(b"PGCOPY\n\xff\r\n\0");
        header.put_i32(0); // flags: no OIDs
        header.put_i32(0); // no header extension
        return Some(header);
    }
    if !format.header {
        return None;
    }
    let mut line = BytesMut::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            line.put_u8(format.delimiter);
        }
        copy_value(&mut line, field.name().as_bytes(), format);
    }
    line.put_u8(b'\n');
    Some(line)
}

fn copy_value(line: &mut BytesMut, value: &[u8], format: &CopyFormat) {
    if format.csv {
        let quote = value.is_empty() && format.null.is_empty()
            || value == format.null.as_bytes()
            || value
                .iter()
                .any(|&c| c == format.delimiter || matches!(c, b'"' | b'\n' | b'\r'));
        if quote {
            line.put_u8(b'"');
            for &c in value {
                if c == b'"' {
                    line.put_u8(b'"');
                }
                line.put_u8(c);
            }
            line.put_u8(b'"');
        } else {
            line.put_slice(value);
        }
    } else {
        for &c in value {
            match c {
                b'\\' => line.put_slice(b"\\\\"),
                b'\n' => line.put_slice(b"\\n"),
                b'\r' => line.put_slice(b"\\r"),
                b'\t' => line.put_slice(b"\\t"),
                c if c == format.delimiter => {
                    line.put_u8(b'\\');
                    line.put_u8(c);
                }
                c => line.put_u8(c),
            }
        }
    }
}

/// Whether an array element must be double-quoted in an array's text form.
fn needs_quotes(item: &[u8]) -> bool {
    item.is_empty()
        || item.eq_ignore_ascii_case(b"null")
        || item.iter().any(|c| {
            matches!(
                c,
                b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r'
            )
        })
}

fn int(buf: &mut BytesMut, binary: bool, v: i64, width: usize) {
    if binary {
        match width {
            2 => buf.put_i16(v as i16),
            4 => buf.put_i32(v as i32),
            _ => buf.put_i64(v),
        }
    } else {
        buf.put_slice(itoa::Buffer::new().format(v).as_bytes())
    }
}

fn bytea(buf: &mut BytesMut, binary: bool, v: &[u8]) {
    if binary {
        buf.put_slice(v)
    } else {
        buf.put_slice(b"\\x");
        buf.put_slice(hex::encode(v).as_bytes())
    }
}

fn timestamp(buf: &mut BytesMut, binary: bool, micros: i64, tz: bool) -> Result<(), String> {
    if binary {
        buf.put_i64(micros - PG_EPOCH_MICROS);
        return Ok(());
    }
    let days = micros.div_euclid(86_400_000_000);
    if (1..=9999).contains(&civil_from_days(days).0) {
        date_text(buf, days)?;
        buf.put_u8(b' ');
        time_text(buf, micros.rem_euclid(86_400_000_000));
    } else {
        let ts = DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| "timestamp out of range".to_string())?;
        buf.put_slice(
            ts.naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.f")
                .to_string()
                .as_bytes(),
        );
    }
    if tz {
        buf.put_slice(b"+00");
    }
    Ok(())
}

/// PostgreSQL's float output with `extra_float_digits >= 1`: the shortest text that reads
/// back to the same value, in exponent form outside 1e-4 ≤ |v| < 1e15 (1e6 for float4).
pub fn float_text(buf: &mut BytesMut, v: f64, single: bool) {
    if v.is_nan() {
        return buf.put_slice(b"NaN");
    }
    if v.is_infinite() {
        return buf.put_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    }
    let sci = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let max_exp = if single { 6 } else { 15 };
    if v == 0.0 || (-4..max_exp).contains(&exp) {
        let s = if single {
            format!("{}", v as f32)
        } else {
            format!("{v}")
        };
        buf.put_slice(s.as_bytes());
    } else {
        buf.put_slice(mantissa.as_bytes());
        buf.put_slice(format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()).as_bytes());
    }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `value` in decimal, left-padded with zeros to at least `width` digits.
fn put_digits(buf: &mut BytesMut, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = value;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = (digits.len() - i).max(width);
    buf.put_slice(&digits[digits.len() - len..]);
}

/// `YYYY-MM-DD` (ISO, as PostgreSQL's default DateStyle prints it).
fn date_text(buf: &mut BytesMut, days: i64) -> Result<(), String> {
    let (year, month, day) = civil_from_days(days);
    if (1..=9999).contains(&year) {
        put_digits(buf, year as u64, 4);
        buf.put_u8(b'-');
        put_digits(buf, month as u64, 2);
        buf.put_u8(b'-');
        put_digits(buf, day as u64, 2);
    } else {
        let date = NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32)
            .ok_or_else(|| format!("date out of range: {days} days"))?;
        buf.put_slice(date.format("%Y-%m-%d").to_string().as_bytes());
    }
    Ok(())
}

/// `HH:MM:SS[.ffffff]`, trailing zeros of the fraction dropped, as PostgreSQL prints.
fn time_text(buf: &mut BytesMut, micros_in_day: i64) {
    let m = micros_in_day as u64;
    put_digits(buf, m / 3_600_000_000, 2);
    buf.put_u8(b':');
    put_digits(buf, m / 60_000_000 % 60, 2);
    buf.put_u8(b':');
    put_digits(buf, m / 1_000_000 % 60, 2);
    let mut frac = m % 1_000_000;
    if frac > 0 {
        let mut width = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        buf.put_u8(b'.');
        put_digits(buf, frac, width);
    }
}

/// A Decimal128's text, written straight into the row buffer.
fn decimal_write(buf: &mut BytesMut, value: i128, scale: i8) {
    if scale <= 0 {
        return buf.put_slice(decimal_text(value, scale).as_bytes());
    }
    let abs = value.unsigned_abs();
    if value < 0 {
        buf.put_u8(b'-');
    }
    let mut int = itoa::Buffer::new();
    let mut frac = itoa::Buffer::new();
    // 64-bit arithmetic for the usual case (it is much cheaper than 128-bit).
    let (int, frac) = match (u64::try_from(abs), 10u64.checked_pow(scale as u32)) {
        (Ok(abs), Some(pow)) => (int.format(abs / pow), frac.format(abs % pow)),
        _ => {
            let pow = 10u128.pow(scale as u32);
            (int.format(abs / pow), frac.format(abs % pow))
        }
    };
    buf.put_slice(int.as_bytes());
    buf.put_u8(b'.');
    for _ in frac.len()..scale as usize {
        buf.put_u8(b'0');
    }
    buf.put_slice(frac.as_bytes());
}

/// Binary numeric of a Decimal128, by arithmetic on base-10000 groups.
fn numeric_binary_i128(buf: &mut BytesMut, value: i128, scale: i8) {
    if !(0..=34).contains(&scale) {
        return numeric_binary(buf, &decimal_text(value, scale));
    }
    let scale = scale as u32;
    let abs = value.unsigned_abs();
    let pow = 10u128.pow(scale);
    let (mut int, frac) = (abs / pow, abs % pow);
    let mut digits: Vec<i16> = Vec::with_capacity(12);
    while int > 0 {
        digits.push((int % 10_000) as i16);
        int /= 10_000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    let pad = (4 - scale % 4) % 4;
    let groups = (scale + pad) / 4;
    let frac = frac * 10u128.pow(pad);
    for i in (0..groups).rev() {
        digits.push((frac / 10_000u128.pow(i) % 10_000) as i16);
    }
    put_numeric(buf, digits, weight, value < 0, scale as u16);
}

/// Write a binary numeric from base-10000 digits (most significant first) whose first
/// digit has weight `weight`: leading and trailing zero digits are dropped, as PostgreSQL
/// does, and zero has no digits and no sign.
fn put_numeric(
    buf: &mut BytesMut,
    mut digits: Vec<i16>,
    mut weight: i16,
    negative: bool,
    dscale: u16,
) {
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    buf.put_i16(digits.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    buf.put_u16(dscale);
    for d in digits {
        buf.put_i16(d);
    }
}

/// A decimal's text: `value × 10^-scale`.
pub fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = value.to_string();
        s.extend(std::iter::repeat_n('0', (-scale) as usize));
        return s;
    }
    let scale = scale as usize;
    let digits = value.unsigned_abs().to_string();
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{}.{}", if value < 0 { "-" } else { "" }, int, frac)
}

/// PostgreSQL's binary `numeric`: base-10000 digits with a weight, sign and display scale.
pub fn numeric_binary(buf: &mut BytesMut, text: &str) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int = int.trim_start_matches('0');
    let int_padded = format!("{}{}", "0".repeat((4 - int.len() % 4) % 4), int);
    let frac_padded = format!("{}{}", frac, "0".repeat((4 - frac.len() % 4) % 4));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| {
                std::str::from_utf8(c)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    };
    let int_groups = group(&int_padded);
    let digits: Vec<i16> = int_groups
        .iter()
        .copied()
        .chain(group(&frac_padded))
        .collect();
    let weight = int_groups.len() as i16 - 1;
    put_numeric(buf, digits, weight, negative, frac.len() as u16);
}

fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        parts.push(format!(
            "{years} year{}",
            if years.abs() == 1 { "" } else { "s" }
        ));
    }
    if months != 0 {
        parts.push(format!(
            "{months} mon{}",
            if months.abs() == 1 { "" } else { "s" }
        ));
    }
    if days != 0 {
        parts.push(format!(
            "{days} day{}",
            if days.abs() == 1 { "" } else { "s" }
        ));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        let (h, rem) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rem) = (rem / 60_000_000, rem % 60_000_000);
        let (s, us) = (rem / 1_000_000, rem % 1_000_000);
        let frac = if us > 0 {
            format!(".{us:06}").trim_end_matches('0').to_string()
        } else {
            String::new()
        };
        parts.push(format!("{sign}{h:02}:{min:02}:{s:02}{frac}"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(text: &str) -> Vec<u8> {
        let mut buf = BytesMut::new();
        numeric_binary(&mut buf, text);
        buf.to_vec()
    }

    #[test]
    fn decimals_as_text() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(0, 2), "0.00");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(decimal_text(7, -2), "700");
    }

    #[test]
    fn numeric_binary_matches_postgres() {
        // SELECT '123.45'::numeric sent in binary by PostgreSQL:
        // ndigits 2, weight 0, sign 0, dscale 2, digits [123, 4500]
        assert_eq!(
            numeric("123.45"),
            vec![0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94]
        );
        // 0.05: ndigits 1, weight -1, dscale 2, digits [500]
        assert_eq!(
            numeric("-0.05"),
            vec![0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4]
        );
        // 10000: ndigits 1, weight 1, digits [1]
        assert_eq!(numeric("10000"), vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
        // zero with scale 2
        assert_eq!(numeric("0.00"), vec![0, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn fast_paths_match_the_reference_forms() {
        for (value, scale) in [
            (12345i128, 2i8),
            (-5, 2),
            (0, 2),
            (1, 4),
            (-98765432109876543, 4),
            (7, 0),
            (10000, 0),
            (123, 3),
            (i64::MAX as i128, 2),
        ] {
            let mut fast = BytesMut::new();
            decimal_write(&mut fast, value, scale);
            assert_eq!(
                std::str::from_utf8(&fast).expect("utf8"),
                decimal_text(value, scale)
            );
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            numeric_binary_i128(&mut a, value, scale);
            numeric_binary(&mut b, &decimal_text(value, scale));
            assert_eq!(a, b, "{value} scale {scale}");
        }
        for days in [-719_162i64, -1, 0, 10_957, 9_000, 2_932_896] {
            let mut fast = BytesMut::new();
            date_text(&mut fast, days).expect("date");
            let chrono =
                NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32).expect("in range");
            assert_eq!(
                std::str::from_utf8(&fast).expect("utf8"),
                chrono.format("%Y-%m-%d").to_string()
            );
        }
        let mut t = BytesMut::new();
        time_text(&mut t, 3_723_500_000);
        assert_eq!(&t[..], b"01:02:03.5");
        let mut ts = BytesMut::new();
        timestamp(&mut ts, false, 1_700_000_000_123_456, true).expect("ts");
        assert_eq!(&ts[..], b"2023-11-14 22:13:20.123456+00");
    }

    #[test]
    fn floats_like_postgres() {
        let f = |v: f64| {
            let mut b = BytesMut::new();
            float_text(&mut b, v, false);
            String::from_utf8(b.to_vec()).expect("utf8")
        };
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(1e20), "1e+20");
        assert_eq!(f(1.5e-7), "1.5e-07");
        assert_eq!(f(123456.789), "123456.789");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn intervals_like_postgres() {
        assert_eq!(
            interval_text(14, 3, 3_723_000_000),
            "1 year 2 mons 3 days 01:02:03"
        );
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
    }

    fn text_cells(batch: &RecordBatch) -> Vec<String> {
        let rows = encode_batch(batch, &[FieldFormat::Text]).expect("encodes");
        let columns = batch.columns().to_vec();
        let writer = ColumnWriter::new(&columns[0], FieldFormat::Text).expect("writer");
        (0..rows.len())
            .map(|row| {
                let mut b = BytesMut::new();
                writer.write_value(row, &mut b).expect("value");
                String::from_utf8(b.to_vec()).expect("utf8")
            })
            .collect()
    }

    #[test]
    fn arrays_and_uuids_like_postgres() {
        use datafusion::arrow::datatypes::{Field, Int32Type, Schema};
        use std::sync::Arc;
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            Some(vec![]),
        ]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "a",
            list.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(list)]).expect("batch");
        assert_eq!(text_cells(&batch), ["{1,NULL,3}", "{}"]);
        let texts = ListArray::new(
            Arc::new(Field::new("item", DataType::Utf8, true)),
            datafusion::arrow::buffer::OffsetBuffer::new(vec![0, 3].into()),
            Arc::new(StringArray::from(vec!["a b", "", "x"])),
            None,
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            texts.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(texts)]).expect("batch");
        assert_eq!(text_cells(&batch), [r#"{"a b","",x}"#]);
        let uuid = FixedSizeBinaryArray::try_from_iter(
            vec![[
                0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
            ]]
            .into_iter(),
        )
        .expect("uuid");
        let schema = Arc::new(Schema::new(vec![Field::new(
            "u",
            uuid.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(uuid)]).expect("batch");
        assert_eq!(text_cells(&batch), ["12345678-9abc-def0-0102-030405060708"]);
    }

    #[test]
    fn copy_lines_escape_like_postgres() {
        use datafusion::arrow::datatypes::{Field, Schema};
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("x\ty,\"z\""), None])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            ],
        )
        .expect("batch");
        let text = CopyFormat {
            binary: false,
            csv: false,
            header: false,
            delimiter: b'\t',
            null: "\\N".into(),
        };
        let lines: Vec<_> = copy_batch(&batch, &text)
            .expect("copy")
            .into_iter()
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(lines, [b"x\\ty,\"z\"\t1\n".to_vec(), b"\\N\t2\n".to_vec()]);
        let csv = CopyFormat {
            binary: false,
            csv: true,
            header: true,
            delimiter: b',',
            null: String::new(),
        };
        let lines: Vec<_> = copy_batch(&batch, &csv)
            .expect("copy")
            .into_iter()
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(
            lines,
            [b"\"x\ty,\"\"z\"\"\",1\n".to_vec(), b",2\n".to_vec()]
        );
        assert_eq!(&copy_header(&schema, &csv).expect("header")[..], b"a,b\n");
        // PGCOPY: signature, flags, extension length; then per tuple the field count and
        // each value's length and binary form (-1: NULL).
        let binary = CopyFormat {
            binary: true,
            csv: false,
            header: false,
            delimiter: b'\t',
            null: String::new(),
        };
        assert_eq!(
            &copy_header(&schema, &binary).expect("header")[..],
            b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"
        );
        let tuples: Vec<_> = copy_batch(&batch, &binary)
            .expect("copy")
            .into_iter()
            .map(|l| l.to_vec())
            .collect();
        let mut first = vec![0, 2, 0, 0, 0, 7];
        first.extend_from_slice(b"x\ty,\"z\"");
        first.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        let second = vec![
            0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2,
        ];
        assert_eq!(tuples, [first, second]);
    }
}

//! Thrift's strict binary protocol (TBinaryProtocol), the subset HiveServer2 over HTTP uses:
//! one message per HTTP body, unframed.
//!
//! Requests are small, so they are decoded into a generic [`Value`] tree (unknown fields are
//! kept, never an error) and read through typed accessors. Responses are written straight
//! into a byte buffer with [`Writer`]: result pages can be large and are never built as
//! trees.
//!
//! Decoding never trusts a length: a string or container may not claim more bytes than
//! are left in the body, and nesting is bounded, so a hostile body costs at most its size.

use std::collections::BTreeMap;

/// Thrift type codes (TType).
pub mod ttype {
    pub const STOP: u8 = 0;
    pub const BOOL: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const DOUBLE: u8 = 4;
    pub const I16: u8 = 6;
    pub const I32: u8 = 8;
    pub const I64: u8 = 10;
    pub const STRING: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const MAP: u8 = 13;
    pub const SET: u8 = 14;
    pub const LIST: u8 = 15;
}

/// Message types.
pub const CALL: u8 = 1;
pub const REPLY: u8 = 2;
pub const EXCEPTION: u8 = 3;
pub const ONEWAY: u8 = 4;

/// The strict binary protocol's version word (high half of the first i32).
const VERSION_1: u32 = 0x8001_0000;
const VERSION_MASK: u32 = 0xffff_0000;

/// Deepest struct/container nesting a request may have (TCLIService needs about 6).
const MAX_DEPTH: usize = 32;

/// Most values one request may decode into. A value takes tens of bytes in memory but may
/// take one on the wire (a list of booleans), so the count, not the body's size, bounds
/// what a request costs.
const MAX_VALUES: usize = 100_000;

/// `TApplicationException` types.
pub mod app_error {
    pub const UNKNOWN_METHOD: i32 = 1;
    pub const INVALID_MESSAGE_TYPE: i32 = 2;
    pub const PROTOCOL_ERROR: i32 = 7;
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the request body ends in the middle of a Thrift message ({0})")]
    Truncated(&'static str),
    #[error("not a strict TBinaryProtocol message (first word 0x{0:08x}): send Thrift binary protocol, version 1, unframed")]
    BadVersion(u32),
    #[error("unknown Thrift type code {0}")]
    BadType(u8),
    #[error("a Thrift {0} claims more bytes than the request holds")]
    TooLong(&'static str),
    #[error("the Thrift message nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a Thrift string is not UTF-8")]
    NotUtf8,
    #[error("the Thrift message holds more than {MAX_VALUES} values")]
    TooMany,
}

/// A decoded Thrift value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    /// Strings and binaries look alike on the wire.
    Binary(Vec<u8>),
    Struct(Struct),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

/// A struct's fields by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Struct(pub BTreeMap<i16, Value>);

impl Struct {
    pub fn get(&self, id: i16) -> Option<&Value> {
        self.0.get(&id)
    }
    pub fn bool(&self, id: i16) -> Option<bool> {
        match self.get(id)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// An integer field of any width (enums are i32, counts i64, fetchType i16).
    pub fn int(&self, id: i16) -> Option<i64> {
        match self.get(id)? {
            Value::Byte(v) => Some(i64::from(*v)),
            Value::I16(v) => Some(i64::from(*v)),
            Value::I32(v) => Some(i64::from(*v)),
            Value::I64(v) => Some(*v),
            _ => None,
        }
    }
    pub fn double(&self, id: i16) -> Option<f64> {
        match self.get(id)? {
            Value::Double(v) => Some(*v),
            _ => None,
        }
    }
    pub fn binary(&self, id: i16) -> Option<&[u8]> {
        match self.get(id)? {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }
    /// A string field; invalid UTF-8 is replaced rather than refused (it is the client's
    /// text, and the planner will say what is wrong with it).
    pub fn string(&self, id: i16) -> Option<String> {
        self.binary(id)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    pub fn strukt(&self, id: i16) -> Option<&Struct> {
        match self.get(id)? {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }
    pub fn list(&self, id: i16) -> Option<&[Value]> {
        match self.get(id)? {
            Value::List(items) => Some(items),
            _ => None,
        }
    }
    /// A `map<string, string>` field.
    pub fn string_map(&self, id: i16) -> Vec<(String, String)> {
        match self.get(id) {
            Some(Value::Map(entries)) => entries
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Value::Binary(k), Value::Binary(v)) => Some((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The header of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageHeader {
    pub name: String,
    pub kind: u8,
    pub seqid: i32,
}

/// Reads one message from a request body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Values decoded so far (at most [`MAX_VALUES`]).
    values: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            values: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1, "byte")?[0])
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2, "i16")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4, "i32")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8, "i64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A length prefix, checked against what is left (`unit` bytes per element at least).
    fn len(&mut self, what: &'static str, unit: usize) -> Result<usize, DecodeError> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::TooLong(what))?;
        if n.saturating_mul(unit) > self.remaining() {
            return Err(DecodeError::TooLong(what));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len("string", 1)?;
        self.take(n, "string")
    }

    /// The message header (strict form only: the version word comes first).
    pub fn message_header(&mut self) -> Result<MessageHeader, DecodeError> {
        let word = self.i32()? as u32;
        if word & VERSION_MASK != VERSION_1 {
            return Err(DecodeError::BadVersion(word));
        }
        let name = std::str::from_utf8(self.bytes()?)
            .map_err(|_| DecodeError::NotUtf8)?
            .to_string();
        let seqid = self.i32()?;
        Ok(MessageHeader {
            name,
            kind: (word & 0xff) as u8,
            seqid,
        })
    }

    /// A struct (the arguments of a call are one).
    pub fn read_struct(&mut self) -> Result<Struct, DecodeError> {
        self.struct_at(0)
    }

    fn struct_at(&mut self, depth: usize) -> Result<Struct, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let mut fields = BTreeMap::new();
        loop {
            let kind = self.u8()?;
            if kind == ttype::STOP {
                return Ok(Struct(fields));
            }
            let id = self.i16()?;
            let value = self.value(kind, depth + 1)?;
            fields.insert(id, value);
        }
    }

    fn value(&mut self, kind: u8, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(DecodeError::TooMany);
        }
        Ok(match kind {
            ttype::BOOL => Value::Bool(self.u8()? != 0),
            ttype::BYTE => Value::Byte(self.u8()? as i8),
            ttype::I16 => Value::I16(self.i16()?),
            ttype::I32 => Value::I32(self.i32()?),
            ttype::I64 => Value::I64(self.i64()?),
            ttype::DOUBLE => Value::Double(f64::from_bits(self.i64()? as u64)),
            ttype::STRING => Value::Binary(self.bytes()?.to_vec()),
            ttype::STRUCT => Value::Struct(self.struct_at(depth)?),
            ttype::LIST | ttype::SET => {
                let elem = self.u8()?;
                let n = self.len("list", 1)?;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::List(items)
            }
            ttype::MAP => {
                let (k, v) = (self.u8()?, self.u8()?);
                let n = self.len("map", 2)?;
                let mut entries = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let key = self.value(k, depth + 1)?;
                    let value = self.value(v, depth + 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            other => return Err(DecodeError::BadType(other)),
        })
    }
}

/// Writes one message. Structs are opened with a field header and closed with
/// [`Writer::stop`]; helpers write one field each.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn message_begin(&mut self, name: &str, kind: u8, seqid: i32) {
        self.raw_i32((VERSION_1 | u32::from(kind)) as i32);
        self.raw_bytes(name.as_bytes());
        self.raw_i32(seqid);
    }

    pub fn raw_u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn raw_i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn raw_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn raw_i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn raw_double(&mut self, v: f64) {
        self.raw_i64(v.to_bits() as i64);
    }
    /// A length-prefixed string or binary.
    pub fn raw_bytes(&mut self, v: &[u8]) {
        self.raw_i32(v.len() as i32);
        self.buf.extend_from_slice(v);
    }

    pub fn field(&mut self, kind: u8, id: i16) {
        self.buf.push(kind);
        self.raw_i16(id);
    }
    pub fn stop(&mut self) {
        self.buf.push(ttype::STOP);
    }

    pub fn bool_field(&mut self, id: i16, v: bool) {
        self.field(ttype::BOOL, id);
        self.buf.push(u8::from(v));
    }
    pub fn i16_field(&mut self, id: i16, v: i16) {
        self.field(ttype::I16, id);
        self.raw_i16(v);
    }
    pub fn i32_field(&mut self, id: i16, v: i32) {
        self.field(ttype::I32, id);
        self.raw_i32(v);
    }
    pub fn i64_field(&mut self, id: i16, v: i64) {
        self.field(ttype::I64, id);
        self.raw_i64(v);
    }
    pub fn double_field(&mut self, id: i16, v: f64) {
        self.field(ttype::DOUBLE, id);
        self.raw_double(v);
    }
    pub fn string_field(&mut self, id: i16, v: &str) {
        self.binary_field(id, v.as_bytes());
    }
    pub fn binary_field(&mut self, id: i16, v: &[u8]) {
        self.field(ttype::STRING, id);
        self.raw_bytes(v);
    }
    /// A struct field whose body `body` writes (without the closing stop, added here).
    pub fn struct_field(&mut self, id: i16, body: impl FnOnce(&mut Writer)) {
        self.field(ttype::STRUCT, id);
        body(self);
        self.stop();
    }
    /// A list header: element type and count; the caller writes the elements.
    pub fn list_begin(&mut self, id: i16, elem: u8, len: usize) {
        self.field(ttype::LIST, id);
        self.buf.push(elem);
        self.raw_i32(len as i32);
    }
    /// A `map<string, string>` field.
    pub fn string_map_field<'a>(
        &mut self,
        id: i16,
        entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) {
        self.field(ttype::MAP, id);
        self.buf.push(ttype::STRING);
        self.buf.push(ttype::STRING);
        self.raw_i32(entries.len() as i32);
        for (k, v) in entries {
            self.raw_bytes(k.as_bytes());
            self.raw_bytes(v.as_bytes());
        }
    }
}

/// A whole `TApplicationException` reply message.
pub fn application_exception(name: &str, seqid: i32, kind: i32, message: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.message_begin(name, EXCEPTION, seqid);
    w.string_field(1, message);
    w.i32_field(2, kind);
    w.stop();
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        w.message_begin(name, CALL, 7);
        body(&mut w);
        w.stop();
        w.buf
    }

    #[test]
    fn round_trips_a_call() {
        let bytes = call("OpenSession", |w| {
            w.struct_field(1, |w| {
                w.i32_field(1, -7);
                w.i64_field(1282, 42247);
                w.string_map_field(4, [("a", "1"), ("b", "2")].into_iter());
                w.bool_field(1285, true);
                w.double_field(9, 1.5);
                w.list_begin(10, ttype::STRING, 2);
                w.raw_bytes(b"x");
                w.raw_bytes(b"y");
            });
        });
        let mut r = Reader::new(&bytes);
        let header = r.message_header().expect("header");
        assert_eq!(
            header,
            MessageHeader {
                name: "OpenSession".into(),
                kind: CALL,
                seqid: 7
            }
        );
        let args = r.read_struct().expect("args");
        let req = args.strukt(1).expect("req");
        assert_eq!(req.int(1), Some(-7));
        assert_eq!(req.int(1282), Some(42247));
        assert_eq!(req.bool(1285), Some(true));
        assert_eq!(req.double(9), Some(1.5));
        assert_eq!(
            req.string_map(4),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(req.list(10).map(|l| l.len()), Some(2));
        assert_eq!(req.string(99), None);
    }

    #[test]
    fn hostile_bodies_are_refused_cheaply() {
        let good = call("ExecuteStatement", |w| {
            w.struct_field(1, |w| w.string_field(2, "SELECT 1"));
        });
        // Every truncation is an error, never a panic.
        for end in 0..good.len() {
            let mut r = Reader::new(&good[..end]);
            let result = r.message_header().and_then(|_| r.read_struct());
            assert!(result.is_err(), "truncated at {end} decoded");
        }
        // Compact protocol / unframed garbage.
        let mut r = Reader::new(&[0x82, 0x21, 0, 0, 0, 0]);
        assert!(matches!(
            r.message_header(),
            Err(DecodeError::BadVersion(_))
        ));
        // A list claiming two billion elements in a tiny body.
        let mut w = Writer::default();
        w.message_begin("X", CALL, 1);
        w.list_begin(1, ttype::I64, i32::MAX as usize);
        let mut r = Reader::new(&w.buf);
        r.message_header().expect("header");
        assert_eq!(r.read_struct(), Err(DecodeError::TooLong("list")));
        // Deep nesting.
        let mut w = Writer::default();
        w.message_begin("X", CALL, 1);
        for _ in 0..100 {
            w.field(ttype::STRUCT, 1);
        }
        let mut r = Reader::new(&w.buf);
        r.message_header().expect("header");
        assert_eq!(r.read_struct(), Err(DecodeError::TooDeep));
    }

    #[test]
    fn application_exceptions_carry_name_and_seqid() {
        let bytes = application_exception("GetLog", 3, app_error::UNKNOWN_METHOD, "no GetLog");
        let mut r = Reader::new(&bytes);
        let header = r.message_header().expect("header");
        assert_eq!(header.kind, EXCEPTION);
        assert_eq!(header.seqid, 3);
        let body = r.read_struct().expect("body");
        assert_eq!(body.string(1).as_deref(), Some("no GetLog"));
        assert_eq!(body.int(2), Some(1));
    }
}

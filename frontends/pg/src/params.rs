//! Bind parameters: pg text or binary values → DataFusion scalars of the planned type.

use bytes::Buf;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use gateway::planner::{ErrorKind, QueryError};
use pgwire::api::Type;

use crate::encode::pg_type_of;

/// The type a client should bind parameter `i` as: what it declared, else what the
/// planner inferred, else text.
pub fn param_pg_type(declared: Option<&Type>, inferred: Option<&DataType>) -> Type {
    match (declared, inferred) {
        (Some(t), _) if *t != Type::UNKNOWN => t.clone(),
        (_, Some(dt)) => pg_type_of(dt),
        _ => Type::TEXT,
    }
}

/// Decode one parameter value.
pub fn decode(
    index: usize,
    raw: Option<&[u8]>,
    binary: bool,
    wire_type: &Type,
    target: Option<&DataType>,
) -> Result<ScalarValue, QueryError> {
    let bad = |what: String| {
        QueryError::new(
            ErrorKind::InvalidParameter,
            format!("parameter ${}: {what}", index + 1),
        )
    };
    let target = target.cloned().unwrap_or(DataType::Utf8);
    let Some(raw) = raw else {
        return ScalarValue::try_from(&target).map_err(|e| bad(e.to_string()));
    };
    if let DataType::List(item) = &target {
        let list = if binary {
            decode_binary_array(raw, wire_type, item.data_type()).map_err(bad)?
        } else {
            let text = std::str::from_utf8(raw).map_err(|_| bad("not valid UTF-8".into()))?;
            decode_text_array(text, item.data_type()).map_err(bad)?
        };
        return Ok(list);
    }
    let value = if binary {
        decode_binary(raw, wire_type).map_err(bad)?
    } else {
        let text = std::str::from_utf8(raw).map_err(|_| bad("not valid UTF-8".into()))?;
        ScalarValue::Utf8(Some(text.to_string()))
    };
    if value.data_type() == target {
        return Ok(value);
    }
    value
        .cast_to(&target)
        .map_err(|_| bad(format!("cannot read {value} as {target}")))
}

/// A one-dimensional array in PostgreSQL's binary format.
fn decode_binary_array(
    raw: &[u8],
    wire_type: &Type,
    item: &DataType,
) -> Result<ScalarValue, String> {
    let element = gateway::planner::pg_catalog::types::element_of(wire_type.oid())
        .and_then(Type::from_oid)
        .ok_or_else(|| format!("binary parameters of type {wire_type} are not supported"))?;
    let mut b = raw;
    if b.len() < 12 {
        return Err("array too short".into());
    }
    let ndim = b.get_i32();
    let _has_null = b.get_i32();
    let _element_oid = b.get_u32();
    let mut count = 0usize;
    match ndim {
        0 => {}
        1 if b.len() >= 8 => {
            count = usize::try_from(b.get_i32()).map_err(|_| "negative array size".to_string())?;
            let _lower_bound = b.get_i32();
        }
        1 => return Err("array too short".into()),
        n => return Err(format!("arrays of {n} dimensions are not supported")),
    }
    let mut values = Vec::with_capacity(count.min(65_536));
    for _ in 0..count {
        if b.len() < 4 {
            return Err("array element missing".into());
        }
        let len = b.get_i32();
        if len < 0 {
            values.push(ScalarValue::try_from(item).map_err(|e| e.to_string())?);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return Err("array element truncated".into());
        }
        let value = decode_binary(&b[..len], &element)?;
        b = &b[len..];
        values.push(value.cast_to(item).map_err(|e| e.to_string())?);
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values, item,
    )))
}

/// A one-dimensional array in PostgreSQL's text form (`{1,2,NULL}`).
fn decode_text_array(text: &str, item: &DataType) -> Result<ScalarValue, String> {
    let elements =
        gateway::planner::pg_catalog::parse_array_literal(text.trim()).map_err(|e| e.message)?;
    let values = elements
        .into_iter()
        .map(|e| match e {
            None => ScalarValue::try_from(item).map_err(|e| e.to_string()),
            Some(v) => ScalarValue::Utf8(Some(v))
                .cast_to(item)
                .map_err(|_| format!("cannot read array element as {item}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values, item,
    )))
}

fn decode_binary(raw: &[u8], wire_type: &Type) -> Result<ScalarValue, String> {
    let mut b = raw;
    let need = |n: usize, b: &[u8]| {
        if b.len() == n {
            Ok(())
        } else {
            Err(format!("expected {n} bytes, got {}", b.len()))
        }
    };
    Ok(match *wire_type {
        Type::BOOL => {
            need(1, b)?;
            ScalarValue::Boolean(Some(b[0] != 0))
        }
        Type::INT2 => {
            need(2, b)?;
            ScalarValue::Int16(Some(b.get_i16()))
        }
        Type::INT4 => {
            need(4, b)?;
            ScalarValue::Int32(Some(b.get_i32()))
        }
        Type::OID => {
            need(4, b)?;
            ScalarValue::UInt32(Some(b.get_u32()))
        }
        Type::INT8 => {
            need(8, b)?;
            ScalarValue::Int64(Some(b.get_i64()))
        }
        Type::FLOAT4 => {
            need(4, b)?;
            ScalarValue::Float32(Some(b.get_f32()))
        }
        Type::FLOAT8 => {
            need(8, b)?;
            ScalarValue::Float64(Some(b.get_f64()))
        }
        Type::DATE => {
            need(4, b)?;
            ScalarValue::Date32(Some(b.get_i32() + 10_957))
        }
        Type::TIMESTAMP => {
            need(8, b)?;
            ScalarValue::TimestampMicrosecond(Some(b.get_i64() + 946_684_800_000_000), None)
        }
        Type::TIMESTAMPTZ => {
            need(8, b)?;
            ScalarValue::TimestampMicrosecond(
                Some(b.get_i64() + 946_684_800_000_000),
                Some("+00:00".into()),
            )
        }
        Type::BYTEA => ScalarValue::Binary(Some(raw.to_vec())),
        Type::NUMERIC => ScalarValue::Utf8(Some(numeric_from_binary(raw)?)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            ScalarValue::Utf8(Some(
                String::from_utf8(raw.to_vec()).map_err(|_| "not valid UTF-8".to_string())?,
            ))
        }
        ref other => {
            return Err(format!(
                "binary parameters of type {other} are not supported; send it as text"
            ))
        }
    })
}

/// PostgreSQL binary numeric → decimal text.
fn numeric_from_binary(raw: &[u8]) -> Result<String, String> {
    let mut b = raw;
    if b.len() < 8 {
        return Err("numeric too short".into());
    }
    let ndigits = b.get_i16() as usize;
    let weight = b.get_i16() as i64;
    let sign = b.get_u16();
    let dscale = b.get_u16() as usize;
    if b.len() != ndigits * 2 {
        return Err("numeric length does not match its digit count".into());
    }
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let digits: Vec<i64> = (0..ndigits).map(|_| b.get_i16() as i64).collect();
    let mut int = String::new();
    let mut frac = String::new();
    for (i, d) in digits.iter().enumerate() {
        let position = weight - i as i64;
        if position >= 0 {
            int.push_str(&format!("{d:04}"));
        } else {
            frac.push_str(&format!("{d:04}"));
        }
    }
    // Groups between the last digit and the decimal point are zeros.
    let last_position = weight - ndigits as i64 + 1;
    if last_position > 0 {
        for _ in 0..last_position {
            int.push_str("0000");
        }
    }
    if weight < -1 {
        frac = format!("{}{}", "0000".repeat((-weight - 1) as usize), frac);
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    frac.truncate(dscale);
    while frac.len() < dscale {
        frac.push('0');
    }
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if dscale > 0 {
        format!("{sign}{int}.{frac}")
    } else {
        format!("{sign}{int}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::numeric_binary;
    use bytes::BytesMut;

    #[test]
    fn numeric_round_trip() {
        for text in [
            "123.45",
            "-0.05",
            "10000",
            "0.00",
            "1.0001",
            "98765432109876.5432",
        ] {
            let mut buf = BytesMut::new();
            numeric_binary(&mut buf, text);
            assert_eq!(numeric_from_binary(&buf).expect("decodes"), text);
        }
    }

    #[test]
    fn params_take_the_planned_type() {
        let v = decode(
            0,
            Some(&42i32.to_be_bytes()),
            true,
            &Type::INT4,
            Some(&DataType::Int64),
        )
        .expect("int");
        assert_eq!(v, ScalarValue::Int64(Some(42)));
        let v = decode(
            0,
            Some(b"1995-03-15"),
            false,
            &Type::UNKNOWN,
            Some(&DataType::Date32),
        )
        .expect("date");
        assert_eq!(v.data_type(), DataType::Date32);
        let err = decode(
            1,
            Some(b"abc"),
            false,
            &Type::UNKNOWN,
            Some(&DataType::Int64),
        )
        .expect_err("not an integer");
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        assert!(err.message.starts_with("parameter $2"));
        let v = decode(0, None, false, &Type::INT4, Some(&DataType::Int32)).expect("null");
        assert!(v.is_null());
    }
}

//! Arrow types as PostgreSQL types: the one mapping used for RowDescription, for
//! `pg_attribute.atttypid` / `information_schema.columns`, and for `format_type`.

use datafusion::arrow::datatypes::{DataType, Field};

/// Field metadata key that pins a column's PostgreSQL type (e.g. `name` for catalog text
/// columns), overriding the mapping from its Arrow type.
pub const PG_TYPE_KEY: &str = "sluice.pg_type_oid";

/// Field metadata keys for where a result column comes from (RowDescription's table OID
/// and column number).
pub const TABLE_OID_KEY: &str = "sluice.table_oid";
pub const ATTNUM_KEY: &str = "sluice.attnum";

/// OIDs of the built-in types sluice produces (PostgreSQL's fixed values).
pub mod oids {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const UNKNOWN: u32 = 705;
    pub const REGPROC: u32 = 24;
    pub const REGPROCEDURE: u32 = 2202;
    pub const REGCLASS: u32 = 2205;
    pub const REGTYPE: u32 = 2206;
    pub const REGNAMESPACE: u32 = 4089;
}

/// The fields of an OID-alias output column (see [`reg_out_function`]).
pub const REG_OID_FIELD: &str = "sluice_reg_oid";
pub const REG_NAME_FIELD: &str = "sluice_reg_name";

/// The session function that names an object of an OID-alias type (`regclass` → the
/// relation's name), for output: sent as the name in text, the OID in binary.
pub fn reg_out_function(oid: u32) -> Option<&'static str> {
    Some(match oid {
        oids::REGPROC => "sluice_regproc_out",
        oids::REGPROCEDURE => "sluice_regprocedure_out",
        oids::REGCLASS => "sluice_regclass_out",
        oids::REGTYPE => "sluice_regtype_out",
        oids::REGNAMESPACE => "sluice_regnamespace_out",
        _ => return None,
    })
}

/// The array type of a built-in element type (`int4` → `_int4`), if it has one.
pub fn array_of(element: u32) -> Option<u32> {
    Some(match element {
        oids::BOOL => 1000,
        oids::BYTEA => 1001,
        oids::CHAR => 1002,
        oids::NAME => 1003,
        oids::INT2 => 1005,
        oids::INT4 => 1007,
        oids::TEXT => 1009,
        oids::VARCHAR => 1015,
        oids::INT8 => 1016,
        oids::FLOAT4 => 1021,
        oids::FLOAT8 => 1022,
        oids::OID => 1028,
        oids::TIMESTAMP => 1115,
        oids::DATE => 1182,
        oids::TIME => 1183,
        oids::TIMESTAMPTZ => 1185,
        oids::INTERVAL => 1187,
        oids::NUMERIC => 1231,
        oids::UUID => 2951,
        oids::JSON => 199,
        _ => return None,
    })
}

/// The element type of a built-in array type.
pub fn element_of(array: u32) -> Option<u32> {
    [
        oids::BOOL,
        oids::BYTEA,
        oids::CHAR,
        oids::NAME,
        oids::INT2,
        oids::INT4,
        oids::TEXT,
        oids::VARCHAR,
        oids::INT8,
        oids::FLOAT4,
        oids::FLOAT8,
        oids::OID,
        oids::TIMESTAMP,
        oids::DATE,
        oids::TIME,
        oids::TIMESTAMPTZ,
        oids::INTERVAL,
        oids::NUMERIC,
        oids::UUID,
        oids::JSON,
    ]
    .into_iter()
    .find(|e| array_of(*e) == Some(array))
}

/// The PostgreSQL type of a column.
pub fn field_type_oid(field: &Field) -> u32 {
    if let Some(oid) = field
        .metadata()
        .get(PG_TYPE_KEY)
        .and_then(|v| v.parse().ok())
    {
        return oid;
    }
    type_oid(field.data_type())
}

/// The PostgreSQL type an Arrow type is sent as.
pub fn type_oid(data_type: &DataType) -> u32 {
    match data_type {
        DataType::Boolean => oids::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => oids::INT2,
        DataType::Int32 | DataType::UInt16 => oids::INT4,
        DataType::Int64 => oids::INT8,
        // Only the catalog has unsigned 32-bit columns: they are OIDs.
        DataType::UInt32 => oids::OID,
        // row_number(), rank(), ntile(): bigint in PostgreSQL (a value beyond it is an error).
        DataType::UInt64 => oids::INT8,
        DataType::Float16 | DataType::Float32 => oids::FLOAT4,
        DataType::Float64 => oids::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => oids::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => oids::TEXT,
        DataType::FixedSizeBinary(16) => oids::UUID,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => oids::BYTEA,
        DataType::Date32 | DataType::Date64 => oids::DATE,
        DataType::Time32(_) | DataType::Time64(_) => oids::TIME,
        DataType::Timestamp(_, None) => oids::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => oids::TIMESTAMPTZ,
        DataType::Interval(_) => oids::INTERVAL,
        DataType::Dictionary(_, value) => type_oid(value),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            array_of(field_type_oid(item)).unwrap_or(oids::TEXT)
        }
        // Anything else (structs, maps, null) is sent as its text rendering.
        _ => oids::TEXT,
    }
}

/// `atttypmod`: numeric precision and scale, else -1.
pub fn type_modifier(data_type: &DataType) -> i32 {
    match data_type {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s)
            if *s >= 0 =>
        {
            ((*p as i32) << 16 | *s as i32) + 4
        }
        _ => -1,
    }
}

/// `typlen`: the fixed size of a type, -1 for variable length.
pub fn type_len(oid: u32) -> i16 {
    match oid {
        oids::BOOL | oids::CHAR => 1,
        oids::INT2 => 2,
        oids::INT4 | oids::OID | oids::FLOAT4 | oids::DATE => 4,
        oids::REGPROC
        | oids::REGPROCEDURE
        | oids::REGCLASS
        | oids::REGTYPE
        | oids::REGNAMESPACE => 4,
        // xid, cid, regrole; pg_lsn, aclitem, tid: fixed-size system types.
        28 | 29 | 4096 => 4,
        3220 => 8,
        1033 => 12,
        27 => 6,
        oids::INT8 | oids::FLOAT8 | oids::TIMESTAMP | oids::TIMESTAMPTZ | oids::TIME => 8,
        oids::INTERVAL | oids::UUID => 16,
        oids::NAME => 64,
        _ => -1,
    }
}

/// `format_type(oid, typmod)` for the types sluice produces; `None` for others (the caller
/// falls back to the name in pg_type).
pub fn format_type(oid: u32, typmod: i32) -> Option<String> {
    const BPCHAR: u32 = 1042;
    const TIMETZ: u32 = 1266;
    const BIT: u32 = 1560;
    const VARBIT: u32 = 1562;
    let base = match oid {
        oids::BOOL => "boolean",
        oids::BYTEA => "bytea",
        oids::CHAR => "\"char\"",
        oids::NAME => "name",
        oids::INT8 => "bigint",
        oids::INT2 => "smallint",
        oids::INT4 => "integer",
        oids::TEXT => "text",
        oids::OID => "oid",
        oids::JSON => "json",
        oids::FLOAT4 => "real",
        oids::FLOAT8 => "double precision",
        // Lengths and precisions as PostgreSQL prints them: `character varying(3)`,
        // `timestamp(2) with time zone`.
        oids::VARCHAR | BPCHAR | BIT | VARBIT => {
            let base = match oid {
                oids::VARCHAR => "character varying",
                BPCHAR => "character",
                BIT => "bit",
                _ => "bit varying",
            };
            let length = if matches!(oid, BIT | VARBIT) {
                typmod
            } else {
                typmod - 4
            };
            return Some(if typmod >= 0 && length >= 0 {
                format!("{base}({length})")
            } else {
                base.into()
            });
        }
        oids::DATE => "date",
        oids::TIME | TIMETZ | oids::TIMESTAMP | oids::TIMESTAMPTZ => {
            let (base, zone) = match oid {
                oids::TIME => ("time", "without"),
                TIMETZ => ("time", "with"),
                oids::TIMESTAMP => ("timestamp", "without"),
                _ => ("timestamp", "with"),
            };
            return Some(if typmod >= 0 {
                format!("{base}({typmod}) {zone} time zone")
            } else {
                format!("{base} {zone} time zone")
            });
        }
        oids::INTERVAL => "interval",
        oids::UUID => "uuid",
        oids::NUMERIC => {
            return Some(if typmod >= 4 {
                let t = typmod - 4;
                format!("numeric({},{})", (t >> 16) & 0xffff, t & 0xffff)
            } else {
                "numeric".into()
            })
        }
        other => {
            return element_of(other)
                .and_then(|e| format_type(e, typmod))
                .map(|e| e + "[]")
        }
    };
    Some(base.to_string())
}

/// `pg_typeof(x)`: the PostgreSQL name of its argument's type (`integer`, `numeric`,
/// `timestamp with time zone`), from the argument's field.
pub fn pg_typeof() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::common::{Result, ScalarValue};
    use datafusion::logical_expr::{
        ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
    };
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct PgTypeof(Signature);
    impl ScalarUDFImpl for PgTypeof {
        fn name(&self) -> &str {
            "pg_typeof"
        }
        fn signature(&self) -> &Signature {
            &self.0
        }
        fn return_type(&self, _: &[DataType]) -> Result<DataType> {
            Ok(DataType::Utf8)
        }
        fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
            let name = args.arg_fields.first().map(|f| {
                let oid = field_type_oid(f);
                format_type(oid, -1).unwrap_or_else(|| oid.to_string())
            });
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(name)))
        }
    }
    datafusion::logical_expr::ScalarUDF::new_from_impl(PgTypeof(Signature::any(
        1,
        Volatility::Immutable,
    )))
}

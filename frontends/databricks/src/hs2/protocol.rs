//! The TCLIService subset sluice speaks: enum values, field ids, handles, statuses and the
//! protocol-version negotiation. Field ids follow Apache Hive's `TCLIService.thrift`
//! (the Databricks extensions are the 1281+ ids, as the Databricks drivers send them).

use datafusion::arrow::datatypes::{DataType, IntervalUnit};

use super::thrift::{Struct, Writer};

/// `TStatusCode`.
pub mod status {
    pub const SUCCESS: i32 = 0;
    pub const ERROR: i32 = 3;
    pub const INVALID_HANDLE: i32 = 4;
}

/// `TOperationState`.
pub mod state {
    pub const RUNNING: i32 = 1;
    pub const FINISHED: i32 = 2;
    pub const CANCELED: i32 = 3;
    pub const CLOSED: i32 = 4;
    pub const ERROR: i32 = 5;
    pub const PENDING: i32 = 7;
}

/// `TOperationType`.
pub mod op_type {
    pub const EXECUTE_STATEMENT: i32 = 0;
    pub const GET_TYPE_INFO: i32 = 1;
    pub const GET_CATALOGS: i32 = 2;
    pub const GET_SCHEMAS: i32 = 3;
    pub const GET_TABLES: i32 = 4;
    pub const GET_TABLE_TYPES: i32 = 5;
    pub const GET_COLUMNS: i32 = 6;
    pub const GET_FUNCTIONS: i32 = 7;
    pub const UNKNOWN: i32 = 8;
}

/// `TSparkRowSetType`.
pub mod row_set {
    pub const ARROW: i32 = 0;
    pub const COLUMN: i32 = 1;
    pub const ROW: i32 = 2;
    pub const URL: i32 = 3;
}

/// `TTypeId`.
pub mod type_ids {
    pub const BOOLEAN: i32 = 0;
    pub const TINYINT: i32 = 1;
    pub const SMALLINT: i32 = 2;
    pub const INT: i32 = 3;
    pub const BIGINT: i32 = 4;
    pub const FLOAT: i32 = 5;
    pub const DOUBLE: i32 = 6;
    pub const STRING: i32 = 7;
    pub const TIMESTAMP: i32 = 8;
    pub const BINARY: i32 = 9;
    pub const ARRAY: i32 = 10;
    pub const MAP: i32 = 11;
    pub const STRUCT: i32 = 12;
    pub const DECIMAL: i32 = 15;
    pub const NULL: i32 = 16;
    pub const DATE: i32 = 17;
    pub const INTERVAL_YEAR_MONTH: i32 = 20;
    pub const INTERVAL_DAY_TIME: i32 = 21;
}

/// Protocol versions: Hive V1..V10 are 0..9, Spark V1..V9 are 0xA501..0xA509.
pub const HIVE_V6: i64 = 5;
pub const HIVE_MAX: i64 = 9;
pub const SPARK_V1: i64 = 0xA501;
pub const SPARK_MAX: i64 = 0xA509;
/// The IDL default of `client_protocol`, sent by clients that put the real version in
/// `client_protocol_i64`.
const HIVE_JDBC_WORKAROUND: i64 = -7;

/// The version both sides speak: the client's, capped at the newest sluice knows in its
/// family (Hive's or Spark's).
pub fn negotiate(
    client_protocol: Option<i64>,
    client_protocol_i64: Option<i64>,
) -> Result<i64, String> {
    let asked = match (client_protocol_i64, client_protocol) {
        (Some(v), _) => v,
        (None, Some(v)) if v != HIVE_JDBC_WORKAROUND => v,
        // The workaround value alone: a Hive JDBC client, newest Hive protocol.
        (None, Some(_)) => HIVE_MAX,
        (None, None) => return Err("OpenSession names no protocol version".into()),
    };
    match asked {
        0..=HIVE_MAX => Ok(asked),
        // Newer than any Hive version and older than Spark's: the newest Hive.
        v if v > HIVE_MAX && v < SPARK_V1 => Ok(HIVE_MAX),
        v if v >= SPARK_V1 => Ok(v.min(SPARK_MAX)),
        v => Err(format!(
            "protocol version {v} is not a HiveServer2 or Spark protocol version"
        )),
    }
}

/// Whether results of this protocol version are columns (Hive V6 and later, every Spark
/// version) rather than rows.
pub fn columnar(protocol: i64) -> bool {
    protocol >= HIVE_V6
}

/// A session or operation id: `THandleIdentifier{guid, secret}`. The secret is random and
/// checked, so a guessed guid is not enough to reach someone else's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub guid: [u8; 16],
    pub secret: [u8; 16],
}

impl Handle {
    /// A new handle. The guid is a version-4 UUID: `@databricks/sql` prints handles with
    /// `uuid.stringify`, which refuses other bit patterns.
    pub fn random() -> Self {
        let mut guid: [u8; 16] = rand::random();
        guid[6] = (guid[6] & 0x0f) | 0x40;
        guid[8] = (guid[8] & 0x3f) | 0x80;
        Self {
            guid,
            secret: rand::random(),
        }
    }

    /// From a `TSessionHandle` / `TOperationHandle` struct (field 1 is the identifier).
    pub fn of(handle: Option<&Struct>) -> Option<Self> {
        let id = handle?.strukt(1)?;
        Some(Self {
            guid: id.binary(1)?.try_into().ok()?,
            secret: id.binary(2)?.try_into().ok()?,
        })
    }

    pub fn hex(&self) -> String {
        hex::encode(self.guid)
    }

    /// The handle as a `THandleIdentifier` field.
    pub fn write(&self, w: &mut Writer, id: i16) {
        w.struct_field(id, |w| {
            w.binary_field(1, &self.guid);
            w.binary_field(2, &self.secret);
        });
    }
}

/// A `TStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub code: i32,
    pub sql_state: Option<String>,
    pub message: Option<String>,
}

impl Status {
    pub const OK: Status = Status {
        code: status::SUCCESS,
        sql_state: None,
        message: None,
    };

    pub fn error(code: i32, sql_state: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            sql_state: Some(sql_state.to_string()),
            message: Some(message.into()),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.code == status::SUCCESS
    }

    pub fn write(&self, w: &mut Writer, id: i16) {
        w.struct_field(id, |w| {
            w.i32_field(1, self.code);
            if let Some(state) = &self.sql_state {
                w.string_field(3, state);
            }
            if let Some(message) = &self.message {
                w.i32_field(4, 0);
                w.string_field(5, message);
                w.string_field(6, message);
            }
        });
    }
}

/// A `TOperationHandle` field.
pub fn write_operation_handle(
    w: &mut Writer,
    id: i16,
    handle: &Handle,
    kind: i32,
    has_result_set: bool,
) {
    w.struct_field(id, |w| {
        handle.write(w, 1);
        w.i32_field(2, kind);
        w.bool_field(3, has_result_set);
    });
}

/// The Hive type id of an Arrow type (the query's own type, before any wire conversion).
pub fn type_id(data_type: &DataType) -> i32 {
    use type_ids::*;
    use DataType::*;
    match data_type {
        Boolean => BOOLEAN,
        Int8 => TINYINT,
        Int16 | UInt8 => SMALLINT,
        Int32 | UInt16 => INT,
        Int64 | UInt32 => BIGINT,
        UInt64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => DECIMAL,
        Float16 | Float32 => FLOAT,
        Float64 => DOUBLE,
        Timestamp(..) => TIMESTAMP,
        Date32 | Date64 => DATE,
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => BINARY,
        List(_) | LargeList(_) | FixedSizeList(..) | ListView(_) | LargeListView(_) => ARRAY,
        Map(..) => MAP,
        Struct(_) => STRUCT,
        Null => NULL,
        Interval(IntervalUnit::YearMonth) => INTERVAL_YEAR_MONTH,
        Interval(_) | Duration(_) => INTERVAL_DAY_TIME,
        Dictionary(_, value) => type_id(value),
        _ => STRING,
    }
}

/// The SQL type name a column has in `GetColumns` (`TYPE_NAME`) and its JDBC type code
/// (Databricks' names, shared with DESCRIBE).
pub use gateway::spark_type as sql_type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_negotiate_within_their_family() {
        // databricks-sql-connector: -7 plus Spark V7 in the i64 field.
        assert_eq!(negotiate(Some(-7), Some(0xA507)), Ok(0xA507));
        // A newer Spark client than sluice knows: sluice's newest.
        assert_eq!(negotiate(None, Some(0xA50F)), Ok(SPARK_MAX));
        // impyla / PyHive: Hive V6.
        assert_eq!(negotiate(Some(5), None), Ok(5));
        assert_eq!(negotiate(Some(42), None), Ok(HIVE_MAX));
        assert!(negotiate(Some(-3), None).is_err());
        assert!(negotiate(None, None).is_err());
        assert!(columnar(5) && columnar(0xA501) && !columnar(4));
    }

    #[test]
    fn handles_are_uuid_v4() {
        for _ in 0..100 {
            let h = Handle::random();
            assert_eq!(h.guid[6] >> 4, 4);
            assert_eq!(h.guid[8] >> 6, 0b10);
        }
    }

    #[test]
    fn type_ids_follow_hive() {
        assert_eq!(type_id(&DataType::Decimal128(15, 2)), type_ids::DECIMAL);
        assert_eq!(type_id(&DataType::Utf8View), type_ids::STRING);
        assert_eq!(type_id(&DataType::Date32), type_ids::DATE);
        assert_eq!(sql_type(&DataType::Decimal128(15, 2)).0, "DECIMAL(15,2)");
        assert_eq!(sql_type(&DataType::Int64), ("BIGINT".into(), -5));
    }
}

//! The type names Databricks gives Arrow types.

use datafusion::arrow::datatypes::DataType;

/// The SQL type name Databricks gives an Arrow type (`GetColumns`' `TYPE_NAME`, upper
/// case; DESCRIBE prints it in lower case) and its JDBC type code.
pub fn spark_type(data_type: &DataType) -> (String, i32) {
    use DataType::*;
    match data_type {
        Boolean => ("BOOLEAN".into(), 16),
        Int8 => ("TINYINT".into(), -6),
        Int16 | UInt8 => ("SMALLINT".into(), 5),
        Int32 | UInt16 => ("INT".into(), 4),
        Int64 | UInt32 => ("BIGINT".into(), -5),
        Float16 | Float32 => ("FLOAT".into(), 6),
        Float64 => ("DOUBLE".into(), 8),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            (format!("DECIMAL({p},{s})"), 3)
        }
        UInt64 => ("DECIMAL(20,0)".into(), 3),
        Date32 | Date64 => ("DATE".into(), 91),
        Timestamp(_, Some(_)) => ("TIMESTAMP".into(), 93),
        Timestamp(_, None) => ("TIMESTAMP_NTZ".into(), 93),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => ("BINARY".into(), -2),
        List(f) | LargeList(f) | FixedSizeList(f, _) => {
            (format!("ARRAY<{}>", spark_type(f.data_type()).0), 2003)
        }
        Struct(_) => ("STRUCT".into(), 2002),
        Map(..) => ("MAP".into(), 2000),
        Null => ("VOID".into(), 0),
        Interval(_) | Duration(_) => ("INTERVAL".into(), 1111),
        Dictionary(_, value) => spark_type(value),
        _ => ("STRING".into(), 12),
    }
}

//! `typeof(x)` (the Spark type name of its argument), `assert_true(condition)` (NULL, or
//! an error when the condition is false: dbt's Spark macros guard casts with it), and
//! `concat` of strings or of arrays.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, NullArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::simple::Simple;

pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Concat::udf(),
        Arc::new(ScalarUDF::new_from_impl(TypeOf {
            signature: Signature::any(1, Volatility::Immutable),
        })),
        Simple::udf(
            "assert_true",
            vec![DataType::Boolean, DataType::Utf8],
            1,
            DataType::Null,
            assert_true,
        ),
    ]
}

fn assert_true(args: &[ArrayRef]) -> Result<ArrayRef> {
    let conditions = args[0].as_boolean();
    for i in 0..conditions.len() {
        if conditions.is_null(i) || !conditions.value(i) {
            let message = args
                .get(1)
                .map(|m| m.as_string::<i32>())
                .filter(|m| !m.is_null(i))
                .map(|m| m.value(i).to_string());
            return exec_err!(
                "{}",
                message.unwrap_or_else(|| "assert_true: the condition is not true".into())
            );
        }
    }
    Ok(Arc::new(NullArray::new(conditions.len())))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TypeOf {
    signature: Signature,
}

impl ScalarUDFImpl for TypeOf {
    fn name(&self) -> &str {
        "typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(field) = args.arg_fields.first() else {
            return plan_err!("typeof takes one argument");
        };
        let name = crate::spark_type(field.data_type()).0.to_ascii_lowercase();
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// Spark's `concat`: of strings (datafusion-spark's), or of arrays (DataFusion's
/// `array_concat`), by the arguments' types.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Concat {
    strings: Arc<ScalarUDF>,
    arrays: Arc<ScalarUDF>,
    signature: Signature,
}

impl Concat {
    pub(crate) fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self {
            strings: datafusion_spark::function::string::concat(),
            arrays: datafusion::functions_nested::concat::array_concat_udf(),
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    }

    fn of(&self, types: &[DataType]) -> &ScalarUDF {
        let list = |t: &DataType| {
            matches!(
                t,
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            )
        };
        if types.iter().any(list) {
            &self.arrays
        } else {
            &self.strings
        }
    }
}

impl ScalarUDFImpl for Concat {
    fn name(&self) -> &str {
        "concat"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        datafusion::logical_expr::type_coercion::functions::fields_with_udf(
            &arg_types
                .iter()
                .map(|t| {
                    Arc::new(datafusion::arrow::datatypes::Field::new(
                        "a",
                        t.clone(),
                        true,
                    ))
                })
                .collect::<Vec<_>>(),
            self.of(arg_types),
        )
        .map(|fields| fields.iter().map(|f| f.data_type().clone()).collect())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.of(arg_types).return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        self.of(&types).return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        self.of(&types).invoke_with_args(args)
    }
}

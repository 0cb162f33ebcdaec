//! `typeof(x)` (the Spark type name of its argument), `assert_true(condition)` (NULL, or
//! an error when the condition is false: dbt's Spark macros guard casts with it), and
//! `concat` of strings or of arrays, `element_at` of an array or a map.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, NullArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::simple::{invalid, Simple};

pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Concat::udf(),
        Arc::new(ScalarUDF::new_from_impl(ElementAt {
            signature: Signature::user_defined(Volatility::Immutable),
        })),
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
            return Err(invalid(message.unwrap_or_else(|| {
                "assert_true: the condition is not true".into()
            })));
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

/// Spark's `element_at`: of an array, the element at a 1-based position (a negative one
/// counts from the end); of a map, the value of a key. Planned as DataFusion's
/// `array_element` or `map_extract` by the first argument's type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ElementAt {
    signature: Signature,
}

impl ScalarUDFImpl for ElementAt {
    fn name(&self) -> &str {
        "element_at"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..), _] => {
                Ok(vec![arg_types[0].clone(), DataType::Int64])
            }
            [DataType::Map(..), _] => Ok(arg_types.to_vec()),
            _ => plan_err!("element_at takes an array and a position, or a map and a key"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Ok(f.data_type().clone())
            }
            Some(DataType::Map(entries, _)) => match entries.data_type() {
                DataType::Struct(fields) if fields.len() == 2 => Ok(fields[1].data_type().clone()),
                _ => plan_err!("element_at: a map without values"),
            },
            _ => plan_err!("element_at takes an array and a position, or a map and a key"),
        }
    }

    fn simplify(
        &self,
        args: Vec<datafusion::logical_expr::Expr>,
        info: &SimplifyContext,
    ) -> Result<ExprSimplifyResult> {
        use datafusion::logical_expr::expr::ScalarFunction;
        use datafusion::logical_expr::{lit, Expr};
        let element = datafusion::functions_nested::extract::array_element_udf();
        let expr = if matches!(info.get_data_type(&args[0])?, DataType::Map(..)) {
            let values = Expr::ScalarFunction(ScalarFunction::new_udf(
                datafusion::functions_nested::map_extract::map_extract_udf(),
                args,
            ));
            Expr::ScalarFunction(ScalarFunction::new_udf(element, vec![values, lit(1i64)]))
        } else {
            Expr::ScalarFunction(ScalarFunction::new_udf(element, args))
        };
        Ok(ExprSimplifyResult::Simplified(expr))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("element_at is planned as array_element or map_extract")
    }
}

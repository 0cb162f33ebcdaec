//! `floor`, `ceil` (`ceiling`) and `trunc` of a numeric as PostgreSQL types them: an integer
//! value has scale 0 (`floor(7.25)` is `7`, DataFusion's keeps the scale: `7.00`), and
//! `trunc(x, n)` with a constant `n` has scale `n`. DataFusion computes the value; the
//! answer is rescaled (exactly: its digits past the new scale are zero). `round` is
//! DataFusion's, which already types it so.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// The three functions, for the function registries of the gateway and the workers
/// (registered over DataFusion's, under the same names).
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::math;
    [
        (math::floor(), vec![]),
        (math::ceil(), vec!["ceiling".to_string()]),
        (math::trunc(), vec![]),
    ]
    .into_iter()
    .map(|(inner, aliases)| ScalarUDF::new_from_impl(Rescaled { inner, aliases }))
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Rescaled {
    /// DataFusion's function of the same name.
    inner: Arc<ScalarUDF>,
    aliases: Vec<String>,
}

impl ScalarUDFImpl for Rescaled {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(args)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let field = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: args.arg_fields,
            scalar_arguments: args.scalar_arguments,
        })?;
        let DataType::Decimal128(precision, scale) = *field.data_type() else {
            return Ok(field);
        };
        // trunc(x, n): n places when n is a constant (fewer than x has), else none.
        let places = match args.scalar_arguments.get(1) {
            None => Some(0),
            Some(Some(n)) => match n.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) => Some(n.clamp(0, i64::from(scale)) as i8),
                _ => None,
            },
            Some(None) => None,
        };
        let Some(places) = places.filter(|p| *p < scale) else {
            return Ok(field);
        };
        // ceil may carry a digit into a new place (9.9 → 10).
        let precision = (precision as i16 - scale as i16 + places as i16 + 1).clamp(1, 38) as u8;
        Ok(Arc::new(Field::new(
            field.name(),
            DataType::Decimal128(precision, places),
            field.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let answer = args.return_field.data_type().clone();
        if let Some(DataType::Decimal128(precision, scale)) =
            args.arg_fields.first().map(|f| f.data_type().clone())
        {
            // DataFusion's answer keeps its argument's type: one more digit for a carry
            // (its ceil(9.9) overflows decimal(2,1)).
            let wider = DataType::Decimal128((precision + 1).min(38), scale);
            args.args[0] = args.args[0].cast_to(&wider, None)?;
            let field = Arc::new(Field::new("x", wider, true));
            args.arg_fields[0] = field.clone();
            args.return_field = field;
        }
        let value = self.inner.invoke_with_args(args)?;
        if value.data_type() == answer {
            return Ok(value);
        }
        value.cast_to(&answer, None)
    }
}

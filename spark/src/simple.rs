//! The shape of sluice's own simple functions: arguments cast to fixed types, evaluated
//! on arrays.

use std::sync::Arc;

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;

/// A value a function cannot take: an error the one error table reads as the user's
/// (22023, from Arrow's compute error), not as the server's.
pub(crate) fn invalid(message: impl Into<String>) -> DataFusionError {
    DataFusionError::ArrowError(Box::new(ArrowError::ComputeError(message.into())), None)
}

/// A result beyond its type's range (22003).
pub(crate) fn out_of_range(message: impl Into<String>) -> DataFusionError {
    DataFusionError::ArrowError(
        Box::new(ArrowError::ArithmeticOverflow(message.into())),
        None,
    )
}

/// A function of sluice's own: arguments cast to `arg_types` (a prefix of it, for optional
/// ones), evaluated on arrays. Told apart by name (each has its own).
#[derive(Debug)]
pub(crate) struct Simple {
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
    arg_types: Vec<datafusion::arrow::datatypes::DataType>,
    min_args: usize,
    returns: datafusion::arrow::datatypes::DataType,
    eval: fn(&[datafusion::arrow::array::ArrayRef]) -> Result<datafusion::arrow::array::ArrayRef>,
}

impl PartialEq for Simple {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Simple {}

impl std::hash::Hash for Simple {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl Simple {
    pub(crate) fn udf(
        name: &'static str,
        arg_types: Vec<datafusion::arrow::datatypes::DataType>,
        min_args: usize,
        returns: datafusion::arrow::datatypes::DataType,
        eval: fn(
            &[datafusion::arrow::array::ArrayRef],
        ) -> Result<datafusion::arrow::array::ArrayRef>,
    ) -> Arc<ScalarUDF> {
        use datafusion::logical_expr::{Signature, Volatility};
        Arc::new(ScalarUDF::new_from_impl(Self {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
            arg_types,
            min_args,
            returns,
            eval,
        }))
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Simple {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn coerce_types(
        &self,
        arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> Result<Vec<datafusion::arrow::datatypes::DataType>> {
        if arg_types.len() < self.min_args || arg_types.len() > self.arg_types.len() {
            return datafusion::common::plan_err!(
                "{} takes {} arguments, not {}",
                self.name,
                if self.min_args == self.arg_types.len() {
                    self.min_args.to_string()
                } else {
                    format!("{} to {}", self.min_args, self.arg_types.len())
                },
                arg_types.len()
            );
        }
        Ok(self.arg_types[..arg_types.len()].to_vec())
    }

    fn return_type(
        &self,
        _arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> Result<datafusion::arrow::datatypes::DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::logical_expr::ColumnarValue;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.eval)(&arrays)?;
        if scalar {
            let value = datafusion::common::ScalarValue::try_from_array(&out, 0)?;
            return Ok(ColumnarValue::Scalar(value));
        }
        Ok(ColumnarValue::Array(out))
    }
}

//! Spark's `avg` of a decimal: a decimal(p + 4, s + 4) rounded half up, where DataFusion's
//! truncates (`avg(o_totalprice)` is …455335 in Spark, …455334 in DataFusion). Computed by
//! DataFusion's own average over the input one digit wider — its truncation keeps the
//! digit that rounding looks at — then rounded to Spark's scale. Every other type is
//! DataFusion's average unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Average {
    inner: Arc<AggregateUDF>,
}

impl Average {
    pub(crate) fn udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::new_from_impl(Self {
            inner: datafusion::functions_aggregate::average::avg_udaf(),
        }))
    }

    fn widened(&self, fields: &[FieldRef]) -> Option<Vec<FieldRef>> {
        match fields.first().map(|f| f.data_type()) {
            Some(DataType::Decimal128(p, s)) if *s < 38 => Some(vec![Arc::new(Field::new(
                fields[0].name(),
                DataType::Decimal128((*p + 1).min(38), *s + 1),
                fields[0].is_nullable(),
            ))]),
            _ => None,
        }
    }
}

impl AggregateUDFImpl for Average {
    fn name(&self) -> &str {
        "avg"
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(wide) = self.widened(args.expr_fields) else {
            return self.inner.accumulator(args);
        };
        let inner_return = self.inner.return_field(&wide)?;
        let inner = self.inner.accumulator(AccumulatorArgs {
            return_field: inner_return,
            expr_fields: &wide,
            ..args
        })?;
        Ok(Box::new(Rounded {
            inner,
            input: wide[0].data_type().clone(),
            output: args.return_field.data_type().clone(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let Some(wide) = self.widened(args.input_fields) else {
            return self.inner.state_fields(args);
        };
        let return_field = self.inner.return_field(&wide)?;
        self.inner.state_fields(StateFieldsArgs {
            input_fields: &wide,
            return_field,
            ..args
        })
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        let Some(wide) = self.widened(args.expr_fields) else {
            return self.inner.groups_accumulator_supported(args);
        };
        let Ok(return_field) = self.inner.return_field(&wide) else {
            return false;
        };
        self.inner.groups_accumulator_supported(AccumulatorArgs {
            return_field,
            expr_fields: &wide,
            ..args
        })
    }

    /// Grouped (`GROUP BY`, a correlated subquery decorrelated into one): DataFusion's
    /// groups accumulator over the widened input, rounded when it is evaluated. Without
    /// it, every group would get its own row-at-a-time accumulator (TPC-H q17: 8× slower).
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let Some(wide) = self.widened(args.expr_fields) else {
            return self.inner.create_groups_accumulator(args);
        };
        let inner_return = self.inner.return_field(&wide)?;
        let inner = self.inner.create_groups_accumulator(AccumulatorArgs {
            return_field: inner_return,
            expr_fields: &wide,
            ..args
        })?;
        Ok(Box::new(RoundedGroups {
            inner,
            input: wide[0].data_type().clone(),
            output: args.return_field.data_type().clone(),
        }))
    }
}

/// DataFusion's grouped average of the widened input, each group's rounded to the
/// result's scale (Arrow's decimal cast to a smaller scale rounds half up, as
/// [`ScalarValue::cast_to`] does for one group).
struct RoundedGroups {
    inner: Box<dyn GroupsAccumulator>,
    input: DataType,
    output: DataType,
}

impl GroupsAccumulator for RoundedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner.update_batch(
            &[cast(&values[0], &self.input)?],
            group_indices,
            opt_filter,
            total_num_groups,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(cast(&self.inner.evaluate(emit_to)?, &self.output)?)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner
            .convert_to_state(&[cast(&values[0], &self.input)?], opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size() + size_of::<Self>()
    }
}

/// DataFusion's average of the widened input, rounded to the result's scale.
#[derive(Debug)]
struct Rounded {
    inner: Box<dyn Accumulator>,
    input: DataType,
    output: DataType,
}

impl Accumulator for Rounded {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(&[cast(&values[0], &self.input)?])
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(&[cast(&values[0], &self.input)?])
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()?.cast_to(&self.output)
    }

    fn size(&self) -> usize {
        self.inner.size() + size_of::<Self>()
    }
}

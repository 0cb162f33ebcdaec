//! A query's profile: the physical plan that ran, as a tree, with what DataFusion measured
//! for each operator (rows, batches, compute time, memory, spills, and its other metrics
//! summed over partitions). A worker makes it when its stream ends and sends it to the
//! gateway after the last batch; the gateway makes it for the plans it runs itself. The
//! history keeps it (the admin page's query profile, the REST API's profile JSON).
//!
//! Bounded: at most [`MAX_OPERATORS`] operators, [`MAX_DEPTH`] levels, [`MAX_DETAIL`] bytes
//! of description and [`MAX_METRICS`] other metrics per operator; what is cut off is said
//! (`truncated`).

use std::sync::Arc;

use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{displayable, ExecutionPlan};
use serde::{Deserialize, Serialize};

/// Operators kept in one profile at most.
pub const MAX_OPERATORS: usize = 2000;
/// Levels of the tree kept at most (two levels of JSON each: a profile read back must stay
/// within serde_json's nesting limit of 128).
pub const MAX_DEPTH: usize = 48;
/// Bytes of an operator's description kept at most.
pub const MAX_DETAIL: usize = 2048;
/// Metrics besides rows, batches, time and memory kept per operator at most.
pub const MAX_METRICS: usize = 32;
/// A profile's JSON larger than this is not kept; [`Profile::of`] stops adding operators
/// once their text comes near it.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;

/// Operators that only pass batches through (the worker's yield points): not shown.
const TRANSPARENT: &[&str] = &["Yielding"];

/// One operator of the plan that ran, with its metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    /// DataFusion's name for it (`HashJoinExec`).
    pub name: String,
    /// Its one-line description (`HashJoinExec: mode=Partitioned, join_type=Inner, …`).
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<u64>,
    /// CPU time the operator itself spent, over all partitions (DataFusion's
    /// `elapsed_compute`), in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<u64>,
    /// The most memory it held (peak, or the last reading where only that is measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spilled_bytes: Option<u64>,
    /// The size of the batches it made (DataFusion's `output_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Its other metrics, as DataFusion names and prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Operator>,
}

/// A plan that ran, as a tree of operators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub root: Operator,
    /// Operators or levels were left out (see the module's bounds).
    #[serde(default)]
    pub truncated: bool,
}

impl Profile {
    /// The profile of `plan` as it stands after running.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Self {
        let mut budget = Budget {
            operators: MAX_OPERATORS,
            bytes: MAX_PROFILE_BYTES / 2,
            truncated: false,
        };
        let root = operator(plan, 0, &mut budget);
        Profile {
            root,
            truncated: budget.truncated,
        }
    }

    /// The profile without the operators' descriptions (they print the statement's
    /// literals: a statement whose text holds a secret keeps its profile without them).
    pub fn without_details(mut self) -> Self {
        let mut stack = vec![&mut self.root];
        while let Some(op) = stack.pop() {
            op.detail = op.name.clone();
            stack.extend(op.children.iter_mut());
        }
        self
    }

    /// Every operator, depth first (the root first).
    pub fn operators(&self) -> Vec<&Operator> {
        let mut out = Vec::new();
        let mut stack = vec![&self.root];
        while let Some(op) = stack.pop() {
            out.push(op);
            stack.extend(op.children.iter().rev());
        }
        out
    }

    /// The time of all operators together: what each one's share is of.
    pub fn total_time_ns(&self) -> u64 {
        self.operators().iter().filter_map(|o| o.time_ns).sum()
    }

    /// The operator that took the most time (None when none measured any).
    pub fn slowest(&self) -> Option<&Operator> {
        self.operators()
            .into_iter()
            .filter(|o| o.time_ns.unwrap_or(0) > 0)
            .max_by_key(|o| o.time_ns)
    }

    /// Its JSON, or None when it is larger than [`MAX_PROFILE_BYTES`].
    pub fn to_json(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self)
            .ok()
            .filter(|json| json.len() <= MAX_PROFILE_BYTES)
    }

    /// A profile from its JSON (None: not one, or too large).
    pub fn from_json(json: &[u8]) -> Option<Self> {
        if json.len() > MAX_PROFILE_BYTES {
            return None;
        }
        serde_json::from_slice(json).ok()
    }
}

/// What a profile may still take.
struct Budget {
    operators: usize,
    /// Bytes of text (descriptions, metrics), short of the JSON's limit.
    bytes: usize,
    truncated: bool,
}

fn operator(plan: &Arc<dyn ExecutionPlan>, depth: usize, budget: &mut Budget) -> Operator {
    // Pass-through wrappers stand for the operator they wrap.
    let mut plan = plan;
    while TRANSPARENT.contains(&plan.name()) {
        match plan.children().as_slice() {
            [only] => plan = only,
            _ => break,
        }
    }
    budget.operators = budget.operators.saturating_sub(1);
    let mut detail = displayable(plan.as_ref()).one_line().to_string();
    let detail_len = detail.trim_end().len();
    detail.truncate(detail_len);
    if detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    let mut op = Operator {
        name: plan.name().to_string(),
        detail,
        ..Default::default()
    };
    if let Some(metrics) = plan.metrics() {
        for metric in metrics.aggregate_by_name().iter() {
            let value = metric.value();
            let n = value.as_usize() as u64;
            match value {
                MetricValue::OutputRows(_) => op.rows = Some(n),
                MetricValue::OutputBatches(_) => op.batches = Some(n),
                MetricValue::ElapsedCompute(_) => op.time_ns = Some(n),
                MetricValue::SpilledBytes(_) => op.spilled_bytes = Some(n),
                MetricValue::OutputBytes(_) => op.output_bytes = Some(n),
                MetricValue::PeakMemoryUsage { .. } | MetricValue::CurrentMemoryUsage(_) => {
                    op.memory_bytes = Some(op.memory_bytes.unwrap_or(0).max(n))
                }
                // Memory an operator reports under a name of its own (`build_mem_used`).
                MetricValue::Gauge { name, .. } if name.contains("mem") => {
                    op.memory_bytes = Some(op.memory_bytes.unwrap_or(0).max(n))
                }
                MetricValue::StartTimestamp(_) | MetricValue::EndTimestamp(_) => {}
                other => {
                    if op.metrics.len() < MAX_METRICS {
                        op.metrics
                            .push((other.name().to_string(), other.to_string()));
                    }
                }
            }
        }
    }
    let text = op.detail.len()
        + op.metrics
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + 128;
    budget.bytes = budget.bytes.saturating_sub(text);
    let children = plan.children();
    if depth + 1 >= MAX_DEPTH && !children.is_empty() {
        budget.truncated = true;
        return op;
    }
    for child in children {
        if budget.operators == 0 || budget.bytes == 0 {
            budget.truncated = true;
            break;
        }
        op.children.push(operator(child, depth + 1, budget));
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_plan_that_ran_has_its_operators_metrics() {
        let ctx = SessionContext::new();
        let df = ctx
            .sql(
                "select v % 7 as k, count(*) from (select * from unnest(range(0, 100000)) as t(v)) \
                 group by 1 order by 1",
            )
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
        let profile = Profile::of(&plan);
        let ops = profile.operators();
        assert!(ops.len() >= 3, "{profile:#?}");
        assert_eq!(ops[0].rows, Some(7), "the root made the 7 groups");
        let aggregate = ops
            .iter()
            .find(|o| o.name == "AggregateExec")
            .expect("an aggregate");
        assert!(aggregate.time_ns.unwrap_or(0) > 0 && aggregate.batches.unwrap_or(0) > 0);
        assert!(profile.total_time_ns() >= aggregate.time_ns.unwrap());
        assert!(profile.slowest().is_some());
        let json = profile.to_json().unwrap();
        assert_eq!(Profile::from_json(&json).unwrap(), profile);
        assert!(!profile.truncated);
    }

    #[test]
    fn deep_and_wide_plans_are_cut_to_the_bounds() {
        use datafusion::arrow::datatypes::Schema;
        use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
        use datafusion::physical_plan::empty::EmptyExec;
        use datafusion::physical_plan::union::UnionExec;
        let leaf = || Arc::new(EmptyExec::new(Arc::new(Schema::empty()))) as Arc<dyn ExecutionPlan>;
        let wide: Arc<dyn ExecutionPlan> =
            UnionExec::try_new((0..2500).map(|_| leaf()).collect()).unwrap();
        let profile = Profile::of(&wide);
        assert!(profile.truncated);
        assert_eq!(profile.operators().len(), MAX_OPERATORS);
        assert!(profile.to_json().is_some());
        let mut deep = leaf();
        for _ in 0..500 {
            deep = Arc::new(CoalescePartitionsExec::new(deep));
        }
        let profile = Profile::of(&deep);
        assert!(profile.truncated);
        assert_eq!(profile.operators().len(), MAX_DEPTH);
        // As deep as it gets, it reads back (serde_json refuses more than 128 levels).
        let json = profile.to_json().unwrap();
        assert_eq!(Profile::from_json(&json).unwrap(), profile);
        let nested = format!(
            "{{\"record\":{{}},\"profile\":{}}}",
            String::from_utf8(json).unwrap()
        );
        assert!(serde_json::from_str::<serde_json::Value>(&nested).is_ok());
        // Long descriptions: the text budget stops it well within the JSON limit.
        let literal = |i: i64| {
            Arc::new(datafusion::physical_expr::expressions::Literal::new(
                datafusion::common::ScalarValue::Int64(Some(i)),
            )) as Arc<dyn datafusion::physical_expr::PhysicalExpr>
        };
        let long = Arc::new(
            datafusion::physical_plan::projection::ProjectionExec::try_new(
                (0..120).map(|i| (literal(i), format!("a_long_column_name_{i:04}"))),
                leaf(),
            )
            .unwrap(),
        ) as Arc<dyn ExecutionPlan>;
        assert!(displayable(long.as_ref()).one_line().to_string().len() > MAX_DETAIL);
        let many: Arc<dyn ExecutionPlan> =
            UnionExec::try_new((0..400).map(|_| long.clone()).collect()).unwrap();
        let profile = Profile::of(&many);
        assert!(profile.truncated && profile.to_json().is_some());
        assert_eq!(
            profile.clone().without_details().root.children[0].detail,
            profile.root.children[0].name
        );
    }
}

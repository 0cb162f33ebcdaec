//! The functions a Databricks SQL session calls by name.
//!
//! Spark's own semantics come first: datafusion-spark's functions (Apache DataFusion's
//! Spark-compatible implementations: `date_add`, `add_months`, `collect_list`, Spark's
//! `round` and `concat`, …) and sluice's own for what it lacks ([`crate::datetime`],
//! [`crate::json`], [`crate::strings`]), registered over DataFusion's builtins of the same
//! name. DataFusion's builtins answer the rest (`upper`, `coalesce`, `sum`, …), under their
//! Spark names where those differ ([`ALIASES`]).
//!
//! A plan travels to a worker as `datafusion-proto` bytes that name each function; where a
//! Spark function and a DataFusion builtin share a name (`round`, `concat`, `date_trunc`), the
//! name alone does not say which one the plan means. The plan codec marks Spark's with
//! [`MARKER`] ([`is_spark_scalar`]) and the worker takes them from [`scalar`] / [`aggregate`].

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

/// What the plan codec writes for a function of this module (the worker then looks the
/// name up here, not among DataFusion's builtins).
pub const MARKER: &[u8] = b"spark";

/// Spark's names of DataFusion builtins that do the same thing.
pub const ALIASES: &[(&str, &str)] = &[
    ("upper", "ucase"),
    ("lower", "lcase"),
    ("starts_with", "startswith"),
    ("ends_with", "endswith"),
    ("generate_series", "sequence"),
    ("array_to_string", "array_join"),
    ("character_length", "char_length"),
];

/// Spark's names of DataFusion aggregates that do the same thing.
pub const AGGREGATE_ALIASES: &[(&str, &str)] = &[
    ("first_value", "first"),
    ("last_value", "last"),
    ("bool_or", "any"),
    ("bool_or", "some"),
    ("approx_distinct", "approx_count_distinct"),
];

/// The concrete type behind a function (Spark's and DataFusion's `round` are two types).
fn type_of(f: &dyn Any) -> TypeId {
    f.type_id()
}

struct Registry {
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    types: HashSet<TypeId>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut scalars = HashMap::new();
        let mut types = HashSet::new();
        let ours = crate::datetime::functions()
            .into_iter()
            .chain(crate::json::functions())
            .chain(crate::strings::functions())
            .chain(crate::misc::functions());
        for f in datafusion_spark::all_default_scalar_functions()
            .into_iter()
            .filter(|f| !REPLACED.contains(&f.name()))
            .chain(ours)
        {
            types.insert(type_of(f.inner().as_ref()));
            scalars.insert(f.name().to_string(), f);
        }
        // DataFusion's own where the gateway's PostgreSQL functions took the name
        // (PostgreSQL's `extract` is numeric, its `avg` of integers too); marked like
        // Spark's so that the worker runs the same function.
        let date_part = datafusion::functions::datetime::date_part();
        types.insert(type_of(date_part.inner().as_ref()));
        scalars.insert(date_part.name().to_string(), date_part);
        // `iff` is Databricks' name for Spark's `if`.
        if let Some(f) = scalars.get("if").cloned() {
            let iff = Arc::new(f.as_ref().clone().with_aliases(["iff"]));
            scalars.insert("if".to_string(), iff);
        }
        let mut aggregates = HashMap::new();
        let avg = crate::average::Average::udaf();
        for f in datafusion_spark::all_default_aggregate_functions()
            .into_iter()
            .filter(|f| !REPLACED.contains(&f.name()))
            .chain([avg])
        {
            types.insert(type_of(f.inner().as_ref()));
            aggregates.insert(f.name().to_string(), f);
        }
        Registry {
            scalars,
            aggregates,
            types,
        }
    })
}

/// datafusion-spark functions sluice does not take: where DataFusion's builtin of the same
/// name already answers as Spark does and datafusion-spark's does not cover the types
/// sluice's tables hold (string views), or where sluice has its own.
const REPLACED: &[&str] = &[
    // Its answer's type says Int32 where it returns Float64 for some parts; DataFusion's
    // reads the parts Spark has.
    "date_part",
    // Takes doubles only: Spark's average of a decimal is a decimal, as DataFusion's is.
    "avg",
    // Strings only: sluice's `concat` (crate::misc) takes arrays too.
    "concat",
];

/// Register the Databricks session's functions over `registry`'s (DataFusion's builtins).
pub fn register(registry_: &mut dyn FunctionRegistry) -> Result<()> {
    let r = registry();
    for f in r.scalars.values() {
        registry_.register_udf(Arc::clone(f))?;
    }
    for f in r.aggregates.values() {
        registry_.register_udaf(Arc::clone(f))?;
    }
    for (theirs, ours) in ALIASES {
        if r.scalars.contains_key(*ours) {
            continue;
        }
        if let Ok(f) = registry_.udf(theirs) {
            registry_.register_udf(Arc::new(f.as_ref().clone().with_aliases([*ours])))?;
        }
    }
    for (theirs, ours) in AGGREGATE_ALIASES {
        if let Ok(f) = registry_.udaf(theirs) {
            registry_.register_udaf(Arc::new(f.as_ref().clone().with_aliases([*ours])))?;
        }
    }
    Ok(())
}

/// Whether a scalar function is one of this module's (the plan codec then marks it).
pub fn is_spark_scalar(f: &ScalarUDF) -> bool {
    registry().types.contains(&type_of(f.inner().as_ref()))
}

/// Whether an aggregate function is one of this module's.
pub fn is_spark_aggregate(f: &AggregateUDF) -> bool {
    registry().types.contains(&type_of(f.inner().as_ref()))
}

/// A scalar function of this module by its name.
pub fn scalar(name: &str) -> Option<Arc<ScalarUDF>> {
    registry().scalars.get(name).cloned()
}

/// An aggregate function of this module by its name.
pub fn aggregate(name: &str) -> Option<Arc<AggregateUDF>> {
    registry().aggregates.get(name).cloned()
}

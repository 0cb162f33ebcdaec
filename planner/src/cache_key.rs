//! What a result-cache key is made of: whether a plan's answer may be kept at all, a
//! fingerprint of the optimized plan, and the version of every table it reads.
//!
//! ```text
//!  logical plan ──cacheability──► the data tables it reads (subqueries, CTEs, views included)
//!               │                 or why it is never cached (now(), random(), current_user, system.*)
//!  optimized ───fingerprint─────► datafusion-proto bytes (case, whitespace, `GROUP BY 1`,
//!               │                 literal spelling are gone by then)
//!  each table ──version─────────► digest of its file listing (path, size, mtime / ETag)
//! ```
//!
//! The gateway's cache combines these with the security context and the settings that
//! change results; this module knows nothing about where answers are kept.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::TableReference;
use datafusion::datasource::listing::ListingTable;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Volatility, WindowFunctionDefinition,
};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};

use crate::delta::DeltaTableProvider;
use crate::error::{ErrorKind, QueryError};

/// What a plan reads, when its answer may be cached.
#[derive(Debug, Clone)]
pub struct Reads {
    /// Data tables, by name: the answer stays the same while they do not change.
    pub tables: Vec<DataTable>,
    /// Whether it reads pg_catalog / information_schema too: then the answer also depends
    /// on who asks (rows are filtered by grants, some come from the session).
    pub catalog: bool,
}

/// A data table a plan reads.
#[derive(Debug, Clone)]
pub struct DataTable {
    /// `schema.table` (resolved: the catalog has one database).
    pub name: String,
    pub provider: Arc<dyn TableProvider>,
}

/// Why a plan of no table (and only immutable functions) is not cached: its answer costs
/// less to compute than to look up.
pub const READS_NO_TABLE: &str = "it reads no table";

/// Whether the answer of `plan` (as planned, before optimization: `now()` is still a call)
/// may be cached, and what it reads; `Err` says why not.
/// Unqualified table names resolve in `defaults` (catalog, schema).
pub fn cacheability(plan: &LogicalPlan, defaults: (&str, &str)) -> Result<Reads, String> {
    let mut tables: Vec<DataTable> = Vec::new();
    let mut catalog = false;
    let mut refusal: Option<String> = None;
    visit(plan, defaults, &mut tables, &mut catalog, &mut refusal);
    if let Some(reason) = refusal {
        return Err(reason);
    }
    if tables.is_empty() && !catalog {
        return Err(READS_NO_TABLE.into());
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tables.dedup_by(|a, b| a.name == b.name);
    Ok(Reads { tables, catalog })
}

fn visit(
    plan: &LogicalPlan,
    defaults: (&str, &str),
    tables: &mut Vec<DataTable>,
    catalog: &mut bool,
    refusal: &mut Option<String>,
) {
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => {
                *refusal = Some("EXPLAIN describes the plan of the moment".into());
            }
            LogicalPlan::Extension(_) => {
                *refusal = Some("it has a plan node the cache does not know".into());
            }
            LogicalPlan::TableScan(scan) => {
                if let Some(view) = scan.source.get_logical_plan() {
                    visit(&view, crate::view_defaults(), tables, catalog, refusal);
                } else {
                    match datafusion::datasource::source_as_provider(&scan.source) {
                        Ok(provider) if crate::catalog::is_data_table(provider.as_ref()) => {
                            let name = scan.table_name.clone().resolve(defaults.0, defaults.1);
                            tables.push(DataTable {
                                name: format!("{}.{}", name.schema, name.table),
                                provider,
                            });
                        }
                        Ok(provider) if crate::pg_catalog::is_catalog_table(provider.as_ref()) => {
                            *catalog = true;
                        }
                        _ => {
                            *refusal = Some(format!(
                                "{} is computed when read (system tables are live state)",
                                scan.table_name
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        if refusal.is_none() {
            let _ = node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Some((name, volatility)) = function_volatility(e) {
                        if volatility != Volatility::Immutable {
                            *refusal = Some(format!(
                                "{name}() can answer differently each time it is called"
                            ));
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            });
        }
        Ok(if refusal.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
}

/// The name and volatility of the function an expression calls, if it calls one.
fn function_volatility(expr: &Expr) -> Option<(String, Volatility)> {
    match expr {
        Expr::ScalarFunction(f) => Some((f.func.name().to_string(), f.func.signature().volatility)),
        Expr::AggregateFunction(AggregateFunction { func, .. }) => {
            Some((func.name().to_string(), func.signature().volatility))
        }
        Expr::WindowFunction(w) => {
            let WindowFunction { fun, .. } = w.as_ref();
            Some(match fun {
                WindowFunctionDefinition::AggregateUDF(f) => {
                    (f.name().to_string(), f.signature().volatility)
                }
                WindowFunctionDefinition::WindowUDF(f) => {
                    (f.name().to_string(), f.signature().volatility)
                }
            })
        }
        _ => None,
    }
}

/// A fingerprint of an optimized plan: its datafusion-proto encoding hashed. Two plans
/// with the same fingerprint compute the same thing from the same tables (every literal,
/// column, table and function is in the encoding). `None` when the plan has a part the
/// encoding does not cover (such a plan is not cached).
pub fn fingerprint(optimized: &LogicalPlan) -> Option<[u8; 32]> {
    match datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(
        optimized,
        &FingerprintCodec,
    ) {
        Ok(bytes) => Some(Sha256::digest(&bytes).into()),
        Err(e) => {
            tracing::debug!("plan not fingerprinted: {e}");
            None
        }
    }
}

/// Encodes the catalog's own tables (pg_catalog) by name: the scan node around them
/// carries the table name, projection, filters and schema. Decoding is never needed.
#[derive(Debug)]
struct FingerprintCodec;

impl LogicalExtensionCodec for FingerprintCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> datafusion::error::Result<Extension> {
        datafusion::common::not_impl_err!("fingerprints are never decoded")
    }

    fn try_encode(&self, _node: &Extension, _buf: &mut Vec<u8>) -> datafusion::error::Result<()> {
        datafusion::common::not_impl_err!("extension nodes are not fingerprinted")
    }

    fn try_decode_table_provider(
        &self,
        _buf: &[u8],
        _table_ref: &TableReference,
        _schema: datafusion::arrow::datatypes::SchemaRef,
        _ctx: &TaskContext,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        datafusion::common::not_impl_err!("fingerprints are never decoded")
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> datafusion::error::Result<()> {
        if crate::pg_catalog::is_catalog_table(node.as_ref()) {
            buf.extend_from_slice(b"catalog");
            Ok(())
        } else if let Some(delta) =
            (node.as_ref() as &dyn std::any::Any).downcast_ref::<DeltaTableProvider>()
        {
            buf.extend_from_slice(delta.identity().as_bytes());
            Ok(())
        } else {
            datafusion::common::not_impl_err!("only catalog tables are fingerprinted by name")
        }
    }
}

/// The version of a data table: a digest of every file it is made of (path, size,
/// modification time, ETag — for local files the ETag holds the inode, so a file
/// replaced by rename changes it too). Reads the listing from the table's object store.
pub async fn table_version(
    state: &SessionState,
    table: &dyn TableProvider,
) -> Result<String, QueryError> {
    if let Some(delta) = (table as &dyn std::any::Any).downcast_ref::<DeltaTableProvider>() {
        // The Delta version: a snapshot never changes.
        return delta.cache_version().await;
    }
    let listing = (table as &dyn std::any::Any)
        .downcast_ref::<ListingTable>()
        .ok_or_else(|| QueryError::internal("a data table that is not a listing table"))?;
    let mut hasher = Sha256::new();
    for url in listing.table_paths() {
        let store = state
            .runtime_env()
            .object_store(url)
            .map_err(QueryError::from)?;
        let mut files = if url.is_collection() {
            store
                .list(Some(url.prefix()))
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| unreadable(url.as_str(), e))?
        } else {
            vec![store
                .head(url.prefix())
                .await
                .map_err(|e| unreadable(url.as_str(), e))?]
        };
        files.sort_by(|a, b| a.location.cmp(&b.location));
        hasher.update(url.as_str().as_bytes());
        for file in &files {
            hash_object_version(&mut hasher, file);
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// One object's version as a table version and the workers' data cache know it: path,
/// size, modification time, ETag and object version.
pub fn hash_object_version(hasher: &mut Sha256, meta: &object_store::ObjectMeta) {
    hasher.update(meta.location.as_ref().as_bytes());
    hasher.update([0]);
    hasher.update(meta.size.to_le_bytes());
    hasher.update(
        meta.last_modified
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    hasher.update(meta.e_tag.as_deref().unwrap_or("").as_bytes());
    hasher.update(meta.version.as_deref().unwrap_or("").as_bytes());
    hasher.update([0]);
}

fn unreadable(url: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::new(
        ErrorKind::DataUnreadable,
        format!("listing {url} to check for changes: {e}"),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

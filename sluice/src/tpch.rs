//! The demo warehouse: the eight TPC-H tables, generated in-process on first start and
//! kept as Parquet under `<data-dir>/tpch/`, one directory per table.
//!
//! A file `<data-dir>/tpch/_scale` records the scale factor of a complete generation: the
//! data is reused when it matches and regenerated (into a fresh directory, then renamed
//! into place) when it does not, so an interrupted start never leaves half a table.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use planner::catalog::{ForeignKeyDef, TableDef, TableFormat};

/// The eight TPC-H tables, in the order they are generated.
pub const TABLES: [&str; 8] = [
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// Rows per Parquet row group: small enough that a scan splits across cores.
const ROW_GROUP_ROWS: usize = 122_880;

/// Make sure the demo data exists at `scale` under `data_dir`, and return its tables.
pub fn ensure_demo_data(data_dir: &Path, scale: f64) -> std::io::Result<Vec<TableDef>> {
    if !(scale > 0.0 && scale <= 1000.0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("demo scale must be in (0, 1000], not {scale}"),
        ));
    }
    let root = data_dir.join("tpch");
    let marker = root.join("_scale");
    let current = std::fs::read_to_string(&marker).ok();
    if current.as_deref().map(str::trim) != Some(scale.to_string().as_str()) {
        generate(&root, scale)?;
    } else {
        tracing::info!(scale, path = %root.display(), "reusing TPC-H demo data");
    }
    Ok(TABLES
        .iter()
        .map(|table| {
            let (primary_key, foreign_keys) = keys(table);
            TableDef {
                name: format!("tpch.{table}"),
                location: root.join(table).to_string_lossy().into_owned(),
                format: TableFormat::Parquet,
                has_header: None,
                delimiter: None,
                primary_key: primary_key.iter().map(|c| c.to_string()).collect(),
                primary_key_name: None,
                foreign_keys: foreign_keys
                    .iter()
                    .map(|(columns, references)| ForeignKeyDef {
                        name: None,
                        columns: columns.iter().map(|c| c.to_string()).collect(),
                        references: format!("tpch.{references}"),
                        ref_columns: Vec::new(),
                    })
                    .collect(),
            }
        })
        .collect())
}

type ForeignKeys = &'static [(&'static [&'static str], &'static str)];

/// TPC-H's keys (the specification, 1.4.2): informational, as the demo's tables declare them.
fn keys(table: &str) -> (&'static [&'static str], ForeignKeys) {
    match table {
        "region" => (&["r_regionkey"], &[]),
        "nation" => (&["n_nationkey"], &[(&["n_regionkey"], "region")]),
        "part" => (&["p_partkey"], &[]),
        "supplier" => (&["s_suppkey"], &[(&["s_nationkey"], "nation")]),
        "partsupp" => (
            &["ps_partkey", "ps_suppkey"],
            &[(&["ps_partkey"], "part"), (&["ps_suppkey"], "supplier")],
        ),
        "customer" => (&["c_custkey"], &[(&["c_nationkey"], "nation")]),
        "orders" => (&["o_orderkey"], &[(&["o_custkey"], "customer")]),
        "lineitem" => (
            &["l_orderkey", "l_linenumber"],
            &[
                (&["l_orderkey"], "orders"),
                (&["l_partkey", "l_suppkey"], "partsupp"),
            ],
        ),
        _ => (&[], &[]),
    }
}

fn generate(root: &Path, scale: f64) -> std::io::Result<()> {
    let started = Instant::now();
    tracing::info!(scale, path = %root.display(), "generating TPC-H demo data (first start; this takes a moment)");
    let staging = root.with_file_name(format!("tpch.generating-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;

    // Two threads: the big tables (lineitem, orders) dominate, so pair them up.
    let halves = [
        ["lineitem", "part", "supplier", "region"],
        ["orders", "partsupp", "customer", "nation"],
    ];
    let results: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = halves
            .iter()
            .map(|tables| {
                let staging = &staging;
                scope.spawn(move || -> std::io::Result<()> {
                    for table in tables {
                        generate_table(staging, table, scale)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("generator thread panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    std::fs::write(staging.join("_scale"), scale.to_string())?;
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    std::fs::rename(&staging, root)?;
    tracing::info!(
        scale,
        seconds = started.elapsed().as_secs_f64(),
        "TPC-H demo data ready"
    );
    Ok(())
}

fn generate_table(dir: &Path, table: &str, scale: f64) -> std::io::Result<()> {
    let path = dir.join(table).join("part-0.parquet");
    std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
    const BATCH: usize = 8192;
    let rows = match table {
        "nation" => write(
            &path,
            NationArrow::schema_ref(),
            NationArrow::new(NationGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "region" => write(
            &path,
            RegionArrow::schema_ref(),
            RegionArrow::new(RegionGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "part" => write(
            &path,
            PartArrow::schema_ref(),
            PartArrow::new(PartGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "supplier" => write(
            &path,
            SupplierArrow::schema_ref(),
            SupplierArrow::new(SupplierGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "partsupp" => write(
            &path,
            PartSuppArrow::schema_ref(),
            PartSuppArrow::new(PartSuppGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "customer" => write(
            &path,
            CustomerArrow::schema_ref(),
            CustomerArrow::new(CustomerGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "orders" => write(
            &path,
            OrderArrow::schema_ref(),
            OrderArrow::new(OrderGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        "lineitem" => write(
            &path,
            LineItemArrow::schema_ref(),
            LineItemArrow::new(LineItemGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        other => {
            return Err(std::io::Error::other(format!(
                "unknown TPC-H table {other}"
            )))
        }
    }
    .map_err(std::io::Error::other)?;
    tracing::debug!(table, rows, "generated");
    Ok(())
}

fn write(
    path: &PathBuf,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
) -> Result<usize, ArrowError> {
    let file = File::create(path)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    let mut rows = 0;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(rows)
}

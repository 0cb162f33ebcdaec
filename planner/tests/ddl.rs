//! Statements that change the catalog (`planner::ddl`): what is read from them, what is refused.

use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use planner::catalog::{ForeignKeyDef, TableDef, TableFormat};
use planner::ddl::*;
use planner::error::{ErrorKind, QueryError};

fn change(sql: &str) -> Result<Option<CatalogChange>, QueryError> {
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&PostgreSqlDialect {})
        .build()
        .expect("parser");
    let statement = parser.parse_statement().expect("parses");
    catalog_change(&statement, "sluice")
}

#[test]
fn reads_each_ddl_statement() {
    let created = change(
        "CREATE EXTERNAL TABLE IF NOT EXISTS Lake.Trips STORED AS CSV LOCATION 'az://c/trips/' \
         OPTIONS ('format.has_header' 'false', 'delimiter' ';')",
    )
    .expect("reads");
    assert_eq!(
        created,
        Some(CatalogChange::Create {
            object: CatalogObject::Table(TableDef {
                name: "lake.trips".into(),
                location: "az://c/trips/".into(),
                format: TableFormat::Csv,
                has_header: Some(false),
                delimiter: Some(';'),
                primary_key: Vec::new(),
                primary_key_name: None,
                foreign_keys: Vec::new(),
            }),
            if_not_exists: true,
            or_replace: false,
        })
    );
    let view =
        change("create or replace view lake.busy as select * from lake.trips").expect("reads");
    assert!(matches!(
        view,
        Some(CatalogChange::Create { object: CatalogObject::View(ViewDef { ref name, .. }), or_replace: true, .. })
            if name == "lake.busy"
    ));
    assert_eq!(
        change("drop table if exists trips").expect("reads"),
        Some(CatalogChange::Drop {
            kind: DropKind::Table,
            name: "public.trips".into(),
            if_exists: true
        })
    );
    assert_eq!(
        change("create schema if not exists Lake")
            .expect("reads")
            .map(|c| c.tag()),
        Some("CREATE SCHEMA")
    );
    assert_eq!(change("select 1").expect("reads"), None);
}

#[test]
fn reads_informational_keys() {
    let Some(CatalogChange::Create {
        object: CatalogObject::Table(def),
        ..
    }) = change(
        "CREATE EXTERNAL TABLE lake.li (CONSTRAINT li_pk PRIMARY KEY (L_OrderKey, \"LineNo\") NOT ENFORCED, \
         FOREIGN KEY (l_orderkey) REFERENCES lake.orders (o_orderkey) NOT ENFORCED, \
         FOREIGN KEY (l_partkey, l_suppkey) REFERENCES lake.partsupp) \
         STORED AS PARQUET LOCATION '/data/li/'",
    )
    .expect("reads")
    else {
        panic!("not a table");
    };
    assert_eq!(def.primary_key, ["l_orderkey", "LineNo"]);
    assert_eq!(def.primary_key_name.as_deref(), Some("li_pk"));
    assert_eq!(
        def.foreign_keys,
        [
            ForeignKeyDef {
                name: None,
                columns: vec!["l_orderkey".into()],
                references: "lake.orders".into(),
                ref_columns: vec!["o_orderkey".into()],
            },
            ForeignKeyDef {
                name: None,
                columns: vec!["l_partkey".into(), "l_suppkey".into()],
                references: "lake.partsupp".into(),
                ref_columns: vec![],
            }
        ]
    );
    for sql in [
        "create external table t (primary key (a) enforced) stored as parquet location '/x/'",
        "create external table t (primary key (a), primary key (b)) stored as parquet location '/x/'",
        "create external table t (unique (a)) stored as parquet location '/x/'",
        "create external table t (check (a > 1)) stored as parquet location '/x/'",
        "create external table t (foreign key (a) references u (b) on delete cascade) stored as parquet location '/x/'",
    ] {
        let e = change(sql).expect_err(sql);
        assert_ne!(e.kind, ErrorKind::Internal, "{sql}");
    }
}

#[test]
fn refuses_what_it_cannot_keep() {
    for sql in [
        "create external table t (a int) stored as parquet location '/x/'",
        "create external table t stored as orc location '/x/'",
        "create external table t stored as parquet location 'relative/dir'",
        "create external table t stored as parquet location 'az://c/x/' options ('account_key' 'k')",
        "drop index i",
    ] {
        let e = change(sql).expect_err(sql);
        assert_ne!(e.kind, ErrorKind::Internal, "{sql}");
    }
}

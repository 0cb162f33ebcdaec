//! Table names from the config: `schema.table`, folded to lower case as SQL reads them.

use planner::catalog::{TableDef, TableFormat};

fn def(name: &str) -> TableDef {
    TableDef {
        name: name.into(),
        location: "/nowhere".into(),
        format: TableFormat::Csv,
        has_header: None,
        delimiter: None,
        primary_key: Vec::new(),
        primary_key_name: None,
        foreign_keys: Vec::new(),
    }
}

#[test]
fn qualified_names() {
    assert_eq!(
        def("Sales.Orders").qualified_name().ok(),
        Some(("sales".into(), "orders".into()))
    );
    assert_eq!(
        def("orders").qualified_name().ok(),
        Some(("public".into(), "orders".into()))
    );
    assert!(def("a.b.c").qualified_name().is_err());
    assert!(def("a-b").qualified_name().is_err());
}

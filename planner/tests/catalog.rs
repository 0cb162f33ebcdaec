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

#[test]
fn catalog_names_are_lower_case_identifiers_not_taken_by_others() {
    use planner::check_catalog_name;
    for good in ["sluice", "lakehouse", "_x1", "a_b_c"] {
        assert_eq!(check_catalog_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "Lakehouse",
        "lake-house",
        "1lake",
        "lake house",
        "système",
        "system",
        "information_schema",
        "pg_catalog",
    ] {
        assert!(check_catalog_name(bad).is_err(), "{bad}");
    }
    assert!(check_catalog_name(&"a".repeat(64)).is_err());
    // Unnamed, the catalog is sluice.
    assert_eq!(planner::catalog(), planner::DEFAULT_CATALOG);
}

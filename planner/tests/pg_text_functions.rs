//! PostgreSQL's text functions as sluice computes them (pg_catalog::functions).

use planner::pg_catalog::functions::{parse_ident, quote_ident, regexp_split, size_pretty};

#[test]
fn regexp_split_as_postgresql() {
    // Answers of PostgreSQL 15's regexp_split_to_array.
    let split = |s, p, f| regexp_split(s, p, f).expect("splits");
    assert_eq!(split("a,b,,c", ",", None), ["a", "b", "", "c"]);
    assert_eq!(
        split("hello world", "\\s*", None),
        ["h", "e", "l", "l", "o", "w", "o", "r", "l", "d"]
    );
    assert_eq!(split("abc", "", None), ["a", "b", "c"]);
    assert_eq!(split("", ",", None), [""]);
    assert_eq!(split("aXbxc", "x", Some("i")), ["a", "b", "c"]);
    assert_eq!(split(",a,", ",", None), ["", "a", ""]);
    assert!(regexp_split("a", "(", None).is_err());
    assert!(regexp_split("a", "a", Some("q")).is_err());
}

#[test]
fn parse_ident_as_postgresql() {
    assert_eq!(parse_ident("tpch.nation").unwrap(), ["tpch", "nation"]);
    assert_eq!(
        parse_ident(" MySchema . \"Odd \"\"T\"\" \" ").unwrap(),
        ["myschema", "Odd \"T\" "]
    );
    for bad in ["", "a.", ".a", "a b", "\"\"", "\"open", "a-b"] {
        assert_eq!(parse_ident(bad), None, "{bad}");
    }
}

#[test]
fn identifiers_quote_like_postgres() {
    assert_eq!(quote_ident("lineitem"), "lineitem");
    assert_eq!(quote_ident("LineItem"), "\"LineItem\"");
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(size_pretty(123), "123 bytes");
    assert_eq!(size_pretty(20 * 1024 * 1024), "20 MB");
}

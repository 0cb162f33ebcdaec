//! Allowed locations (`planner::locations`): where a table's files may be.

use std::path::Path;

use planner::error::ErrorKind;
use planner::locations::*;

#[test]
fn local_paths_stay_in_their_roots() {
    let lake = tempfile::tempdir().expect("dir");
    let own = lake.path().join("sluice-data");
    std::fs::create_dir_all(own.join("tpch")).expect("data dir");
    std::fs::write(own.join("dev-token"), "secret").expect("token");
    std::fs::create_dir_all(lake.path().join("sales")).expect("sales");
    let outside = tempfile::tempdir().expect("dir");
    std::os::unix::fs::symlink(outside.path(), lake.path().join("escape")).expect("link");
    let policy = LocationPolicy::new(
        &[lake.path().display().to_string()],
        Path::new("/"),
        std::slice::from_ref(&own),
    )
    .expect("policy");
    let at = |p: &str| format!("{}/{p}", lake.path().display());
    assert!(matches!(policy.check(&at("sales")), Ok(Place::Local(_))));
    for refused in [
        at("sluice-data/dev-token"),
        at("sales/../sluice-data/dev-token"),
        at("sluice-data/tpch/../dev-token"),
        at("sluice-data"),
        // A parent of the data dir would list its files.
        lake.path().display().to_string(),
        at("escape"),
        "/etc/passwd".into(),
        "/proc/self/cwd".into(),
        "/dev/zero".into(),
    ] {
        let e = policy.check(&refused).expect_err(&refused);
        assert_eq!(
            e.kind,
            ErrorKind::PermissionDenied,
            "{refused}: {}",
            e.message
        );
    }
    assert!(policy.check("file:///etc/passwd").is_err());
    // Outside: the same answer whether the path exists or not.
    let missing = policy.check("/nonexistent/x").expect_err("outside");
    let present = policy.check("/etc/passwd").expect_err("outside");
    assert_eq!(missing.kind, present.kind);
    // Inside: a missing path is the table's to report; through a link that leads out,
    // it is outside.
    assert!(policy.check(&at("nothing-here/x")).is_ok());
    assert!(policy.check(&at("escape/nothing-here")).is_err());
    assert!(LocationPolicy::default().check(&at("sales")).is_err());
}

#[test]
fn urls_match_prefixes_by_directory() {
    let policy =
        LocationPolicy::new(&["az://lake/shared".into()], Path::new("/"), &[]).expect("policy");
    assert!(policy.check("az://lake/shared/trips/").is_ok());
    assert!(policy.check("AZ://lake/shared").is_ok());
    for refused in [
        "az://lake/shared-secret/",
        "az://lake/shared/../private/",
        "az://lake/shared/%2e%2e/private/",
        "az://lake/shared/x?sig=1",
        "az://other/shared/",
    ] {
        assert!(policy.check(refused).is_err(), "{refused}");
    }
}

#[test]
fn overlap_is_containment_either_way() {
    let a = Place::Local("/lake/sales".into());
    assert!(a.overlaps(&Place::Local("/lake".into())));
    assert!(a.overlaps(&Place::Local("/lake/sales/2024".into())));
    assert!(!a.overlaps(&Place::Local("/lake/salesman".into())));
    let u = Place::Url("az://c/sales".into());
    assert!(u.overlaps(&Place::Url("az://c/sales/part-1.parquet".into())));
    assert!(!u.overlaps(&Place::Url("az://c/salesman".into())));
}

//! Grants: which principals may SELECT which tables, and who holds the warehouse-wide
//! privileges (`MONITOR`: every principal's queries, the admin page; `MANAGE`: the catalog
//! managed with SQL).
//!
//! A `[[grants]]` entry names principals (by id or name), roles and groups, and the tables
//! they may read as `catalog.schema.table` or `schema.table` patterns, where `*` matches
//! any run of characters within one part, and/or `privileges`. Nothing is readable
//! without a grant. The set is replaced as a whole on reload ([`Grants::replace`]):
//! sessions already open see the new grants from their next statement.

use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::Principal;

/// One `[[grants]]` entry of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Principals, each named with its kind (see [`names`]): `token:<name>`,
    /// `oid:<object id>`, `sub:<subject>`, `upn:<user principal name>`, `app:<client id>`.
    #[serde(default)]
    pub principals: Vec<String>,
    /// App roles (`roles` claim, or a static token's roles).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Group object ids (`groups` claim).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Table patterns: `catalog.schema.table` or `schema.table`, `*` as a wildcard.
    #[serde(default)]
    pub select: Vec<String>,
    /// Warehouse-wide privileges: [`MONITOR`], [`MANAGE`].
    #[serde(default)]
    pub privileges: Vec<String>,
}

/// Sees every principal's queries (`system.query_history`, `system.queries`), `/metrics`
/// aside, and uses the admin page (`/ui`) with its cancel button.
pub const MONITOR: &str = "MONITOR";

/// Changes the catalog with SQL: `CREATE EXTERNAL TABLE`, `CREATE VIEW`, `CREATE SCHEMA`,
/// `DROP` (the objects created so; the config file's tables stay as they are).
pub const MANAGE: &str = "MANAGE";

/// The privileges a grant may give.
pub const PRIVILEGES: &[&str] = &[MONITOR, MANAGE];

/// A fully qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub catalog: String,
    pub schema: String,
    pub table: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.schema, self.table)
    }
}

/// A grant that cannot work, named for the config error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grants[{index}]: {reason}")]
pub struct GrantError {
    pub index: usize,
    pub reason: String,
}

type Checked = Vec<(Grant, Vec<[String; 3]>)>;

/// One set of grants as it was in force (it holds the set, so two versions are equal
/// exactly when they are the same set).
#[derive(Debug, Clone)]
pub struct GrantsVersion(Arc<Checked>);

impl PartialEq for GrantsVersion {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// All grants, checked; replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Grants {
    grants: RwLock<Arc<Checked>>,
}

impl Grants {
    pub fn new(grants: Vec<Grant>) -> Result<Self, GrantError> {
        Ok(Self {
            grants: RwLock::new(Arc::new(Self::check(grants)?)),
        })
    }

    /// Take another (checked) set of grants: every session sees them from its next check.
    pub fn replace(&self, other: &Grants) {
        *self.grants.write().unwrap_or_else(|e| e.into_inner()) = other.current();
    }

    /// Which set of grants is in force: equal versions until the next [`Grants::replace`].
    pub fn version(&self) -> GrantsVersion {
        GrantsVersion(self.current())
    }

    fn current(&self) -> Arc<Checked> {
        self.grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn check(grants: Vec<Grant>) -> Result<Checked, GrantError> {
        let mut checked = Vec::new();
        for (index, grant) in grants.into_iter().enumerate() {
            let err = |reason: String| GrantError { index, reason };
            if grant.principals.is_empty() && grant.roles.is_empty() && grant.groups.is_empty() {
                return Err(err(
                    "give it to at least one of principals, roles or groups".into(),
                ));
            }
            for name in &grant.principals {
                check_principal_name(name).map_err(err)?;
            }
            if grant.select.is_empty() && grant.privileges.is_empty() {
                return Err(err(
                    "it gives nothing: list tables in select or privileges".into()
                ));
            }
            if let Some(unknown) = grant
                .privileges
                .iter()
                .find(|p| !PRIVILEGES.contains(&p.to_ascii_uppercase().as_str()))
            {
                return Err(err(format!(
                    "unknown privilege {unknown:?} (known: {})",
                    PRIVILEGES.join(", ")
                )));
            }
            let patterns = grant
                .select
                .iter()
                .map(|p| pattern(p).map_err(err))
                .collect::<Result<_, _>>()?;
            checked.push((grant, patterns));
        }
        Ok(checked)
    }

    /// May `principal` read `table`?
    pub fn allows(&self, principal: &Principal, table: &TableName) -> bool {
        let name = [&table.catalog, &table.schema, &table.table];
        applicable(&self.current(), principal).any(|(_, patterns)| {
            patterns
                .iter()
                .any(|p| p.iter().zip(name).all(|(p, n)| glob(p, n)))
        })
    }

    /// Does a grant give `principal` the warehouse-wide `privilege`?
    pub fn has_privilege(&self, principal: &Principal, privilege: &str) -> bool {
        applicable(&self.current(), principal).any(|(grant, _)| {
            grant
                .privileges
                .iter()
                .any(|p| p.eq_ignore_ascii_case(privilege))
        })
    }

    /// May `principal` read every table (a `*.*.*` grant)? Lets catalog listings skip
    /// per-table checks.
    pub fn allows_all(&self, principal: &Principal) -> bool {
        applicable(&self.current(), principal)
            .any(|(_, patterns)| patterns.iter().any(|p| p.iter().all(|part| part == "*")))
    }
}

fn applicable<'a>(
    grants: &'a Checked,
    principal: &'a Principal,
) -> impl Iterator<Item = &'a (Grant, Vec<[String; 3]>)> + 'a {
    grants
        .iter()
        .filter(|(g, _)| names(principal, &g.principals, &g.roles, &g.groups))
}

fn pattern(text: &str) -> Result<[String; 3], String> {
    let parts: Vec<String> = text
        .split('.')
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("{text:?}: empty name part"));
    }
    match parts.as_slice() {
        [schema, table] => Ok(["*".into(), schema.clone(), table.clone()]),
        [catalog, schema, table] => Ok([catalog.clone(), schema.clone(), table.clone()]),
        _ => Err(format!(
            "{text:?}: expected schema.table or catalog.schema.table (* matches anything)"
        )),
    }
}

/// `*` matches any run of characters; the rest compares case-insensitively.
fn glob(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The kinds a principal may be named by in `[[grants]]` and `[[routing]]`.
const KINDS: &str = "token:<static token name>, oid:<object id>, sub:<subject>, \
                     upn:<user principal name> or app:<client id>";

/// Whether `name` names a principal with its kind; why not otherwise.
pub fn check_principal_name(name: &str) -> Result<(), String> {
    match name.split_once(':') {
        Some(("token" | "oid" | "sub" | "upn" | "app", value)) if !value.trim().is_empty() => {
            Ok(())
        }
        _ => Err(format!(
            "principal {name:?} must say what it names: {KINDS} (a bare name could be a static \
             token's or any token's claim)"
        )),
    }
}

/// Whether one kind-prefixed name names this principal. Static tokens are named only by
/// `token:`, token claims only by the other kinds: a JWT whose `preferred_username` is
/// `svc` is not the static token `svc`.
fn names_principal(principal: &Principal, name: &str) -> bool {
    let Some((kind, value)) = name.split_once(':') else {
        return false;
    };
    let value = value.trim();
    match kind {
        "token" => principal.is_static() && principal.id.strip_prefix("token:") == Some(value),
        _ if principal.is_static() => false,
        // Object ids are GUIDs: any case.
        "oid" => principal
            .id
            .strip_prefix("oid:")
            .is_some_and(|id| id.eq_ignore_ascii_case(value)),
        "sub" => principal.id.strip_prefix("sub:") == Some(value),
        "upn" => principal
            .upn
            .as_deref()
            .is_some_and(|upn| upn.eq_ignore_ascii_case(value)),
        "app" => principal.app.as_deref() == Some(value),
        _ => false,
    }
}

/// Whether a config entry that names principals (by kind, see [`check_principal_name`]),
/// roles and groups names this principal: the rule of `[[grants]]` and of `[[routing]]`.
/// Roles match a static token's configured roles and a token's `roles` claim alike;
/// groups match the `groups` claim.
pub fn names(
    principal: &Principal,
    principals: &[String],
    roles: &[String],
    groups: &[String],
) -> bool {
    principals.iter().any(|p| names_principal(principal, p))
        || roles.iter().any(|r| principal.roles.contains(r))
        || groups.iter().any(|g| principal.groups.contains(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableName {
        let p: Vec<&str> = name.split('.').collect();
        TableName {
            catalog: p[0].into(),
            schema: p[1].into(),
            table: p[2].into(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("nation", "NATION"));
        assert!(!glob("nation", "nations"));
        assert!(glob("n*", "nation"));
        assert!(glob("*ion", "nation"));
        assert!(glob("n*t*n", "nation"));
        assert!(!glob("n*x*", "nation"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn grants_by_principal_role_and_group() {
        let grants = Grants::new(vec![
            Grant {
                roles: vec!["Warehouse.Read".into()],
                select: vec!["tpch.nation".into()],
                ..Grant::default()
            },
            Grant {
                principals: vec!["upn:alice@contoso.com".into()],
                select: vec!["sluice.tpch.*".into()],
                ..Grant::default()
            },
            Grant {
                groups: vec!["g1".into()],
                select: vec!["*.*.*".into()],
                ..Grant::default()
            },
        ])
        .expect("valid");
        let reader = Principal {
            roles: vec!["Warehouse.Read".into()],
            ..Principal::default()
        };
        assert!(grants.allows(&reader, &t("sluice.tpch.nation")));
        assert!(!grants.allows(&reader, &t("sluice.tpch.orders")));
        assert!(!grants.allows_all(&reader));
        let alice = Principal {
            id: "oid:a1".into(),
            name: "alice@contoso.com".into(),
            upn: Some("Alice@contoso.com".into()),
            issuer: "https://idp".into(),
            ..Principal::default()
        };
        assert!(grants.allows(&alice, &t("sluice.tpch.orders")));
        assert!(!grants.allows(&alice, &t("sluice.other.orders")));
        let member = Principal {
            groups: vec!["g1".into()],
            ..Principal::default()
        };
        assert!(grants.allows_all(&member));
        assert!(!grants.allows(&Principal::default(), &t("sluice.tpch.nation")));
    }

    #[test]
    fn principals_are_named_by_kind() {
        let svc = Principal::service("svc", &[]);
        let jwt = |id: &str, upn: Option<&str>, app: Option<&str>| Principal {
            id: id.into(),
            name: "svc".into(),
            upn: upn.map(Into::into),
            app: app.map(Into::into),
            issuer: "https://idp".into(),
            ..Principal::default()
        };
        let named = |p: &Principal, name: &str| names(p, &[name.to_string()], &[], &[]);
        assert!(named(&svc, "token:svc"));
        // A token whose claims say "svc" is not the static token svc, whatever the kind.
        let pretender = jwt("sub:svc", Some("svc"), Some("svc"));
        assert!(!named(&pretender, "token:svc"));
        assert!(named(&pretender, "sub:svc"));
        assert!(named(&pretender, "upn:SVC"));
        assert!(named(&pretender, "app:svc"));
        // …and the static token is none of those.
        for name in ["sub:svc", "upn:svc", "app:svc", "oid:svc"] {
            assert!(!named(&svc, name), "{name}");
        }
        let user = jwt("oid:3f2c0000-aaaa", None, None);
        assert!(named(&user, "oid:3F2C0000-AAAA"));
        assert!(!named(&user, "sub:3f2c0000-aaaa"));
        for bad in ["svc", "alice@contoso.com", "user:x", "token:", "oid: "] {
            assert!(check_principal_name(bad).is_err(), "{bad}");
            let err = Grants::new(vec![Grant {
                principals: vec![bad.into()],
                select: vec!["a.b".into()],
                ..Grant::default()
            }])
            .expect_err(bad);
            assert!(err.to_string().contains("token:"), "{err}");
        }
    }

    #[test]
    fn bad_grants_are_named() {
        let err = Grants::new(vec![Grant {
            select: vec!["x.y".into()],
            ..Grant::default()
        }])
        .expect_err("no grantee");
        assert_eq!(err.index, 0);
        let err = Grants::new(vec![Grant {
            roles: vec!["r".into()],
            select: vec!["a.b.c.d".into()],
            ..Grant::default()
        }])
        .expect_err("four parts");
        assert!(err.to_string().contains("a.b.c.d"), "{err}");
    }

    #[test]
    fn privileges_and_replacing_the_set() {
        let ops = Principal {
            roles: vec!["Ops".into()],
            ..Principal::default()
        };
        let grants = Grants::new(vec![Grant {
            roles: vec!["Ops".into()],
            privileges: vec!["monitor".into()],
            ..Grant::default()
        }])
        .expect("a privilege alone is a grant");
        assert!(grants.has_privilege(&ops, MONITOR));
        assert!(!grants.has_privilege(&Principal::default(), MONITOR));
        assert!(!grants.allows(&ops, &t("sluice.tpch.nation")));
        let err = Grants::new(vec![Grant {
            roles: vec!["Ops".into()],
            privileges: vec!["SUPERUSER".into()],
            ..Grant::default()
        }])
        .expect_err("unknown privilege");
        assert!(err.to_string().contains("SUPERUSER"), "{err}");
        Grants::new(vec![Grant::default()]).expect_err("gives nothing");
        // A replacement applies at once to every holder of the set.
        grants.replace(
            &Grants::new(vec![Grant {
                roles: vec!["Ops".into()],
                select: vec!["tpch.*".into()],
                ..Grant::default()
            }])
            .expect("valid"),
        );
        assert!(!grants.has_privilege(&ops, MONITOR));
        assert!(grants.allows(&ops, &t("sluice.tpch.nation")));
    }
}

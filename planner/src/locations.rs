//! Where SQL may point a table: `CREATE EXTERNAL TABLE … LOCATION` is confined to the
//! roots and URL prefixes of `[storage] allowed_locations`, and never reaches sluice's own
//! files (its data dir, its config file's directory, its caches) or the kernel's
//! (`/proc`, `/sys`, `/dev`). The config file's own tables are the operator's and are not
//! checked.
//!
//! ```text
//!  LOCATION ──URL?──► no file://, no dot segments, query or fragment; under an allowed prefix
//!           ──path──► absolute; lexically under an allowed root and clear of the forbidden
//!                     ones (nothing on disk looked at yet: no existence oracle outside);
//!                     then canonical (symlinks resolved) and checked again
//! ```

use std::path::{Component, Path, PathBuf};

use crate::error::{ErrorKind, QueryError};
use crate::storage::is_url;

/// A table location, normalized so that two can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A local path: canonical when it exists, else normalized lexically.
    Local(PathBuf),
    /// An object store URL, ending with `/` when it names a directory.
    Url(String),
}

impl Place {
    /// Where an existing table's location points (config tables included), for the overlap
    /// check.
    pub fn of(location: &str) -> Self {
        if is_url(location) {
            Place::Url(location.to_string())
        } else {
            let lexical = normalize(Path::new(location));
            Place::Local(std::fs::canonicalize(&lexical).unwrap_or(lexical))
        }
    }

    /// Whether one location holds files of the other (one is within the other).
    pub fn overlaps(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Local(a), Place::Local(b)) => a.starts_with(b) || b.starts_with(a),
            (Place::Url(a), Place::Url(b)) => {
                let (a, b) = (as_dir(a), as_dir(b));
                a.starts_with(&b) || b.starts_with(&a)
            }
            _ => false,
        }
    }
}

/// `[storage] allowed_locations`, with what SQL may never reach.
#[derive(Debug, Clone, Default)]
pub struct LocationPolicy {
    /// Canonical local roots.
    roots: Vec<PathBuf>,
    /// URL prefixes, each ending with `/`.
    prefixes: Vec<String>,
    /// Canonical paths no table may be in or contain.
    forbidden: Vec<PathBuf>,
}

/// The kernel's file systems: never table data.
const SYSTEM: &[&str] = &["/proc", "/sys", "/dev"];

impl LocationPolicy {
    /// The policy of `allowed` (relative paths are relative to `base`, the config file's
    /// directory), keeping tables out of `own` (sluice's data dir, config dir, caches).
    pub fn new(allowed: &[String], base: &Path, own: &[PathBuf]) -> Result<Self, String> {
        let mut policy = LocationPolicy::default();
        for location in allowed {
            if is_url(location) {
                let url = checked_url(location).map_err(|e| {
                    format!("storage.allowed_locations: {location:?}: {}", e.message)
                })?;
                policy.prefixes.push(as_dir(&url));
            } else {
                let path = normalize(&base.join(location));
                let root = std::fs::canonicalize(&path)
                    .map_err(|e| format!("storage.allowed_locations: {}: {e}", path.display()))?;
                // As the operator wrote it (a symlink, perhaps) and as it really is.
                if root != path {
                    policy.roots.push(path);
                }
                policy.roots.push(root);
            }
        }
        for path in own
            .iter()
            .map(PathBuf::as_path)
            .chain(SYSTEM.iter().map(Path::new))
        {
            let lexical = normalize(path);
            if let Ok(canonical) = std::fs::canonicalize(&lexical) {
                policy.forbidden.push(canonical);
            }
            policy.forbidden.push(lexical);
        }
        Ok(policy)
    }

    /// Whether SQL may create tables anywhere at all.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.prefixes.is_empty()
    }

    /// The place a `CREATE EXTERNAL TABLE` location names, if SQL may put a table there.
    pub fn check(&self, location: &str) -> Result<Place, QueryError> {
        let outside = || {
            QueryError::new(
                ErrorKind::PermissionDenied,
                if self.is_empty() {
                    "CREATE EXTERNAL TABLE is turned off: no [storage] allowed_locations are \
                     configured"
                        .to_string()
                } else {
                    format!(
                        "LOCATION {location:?} is not within [storage] allowed_locations \
                         (or is a location sluice keeps to itself)"
                    )
                },
            )
        };
        if is_url(location) {
            let url = checked_url(location)?;
            let dir = as_dir(&url);
            return if self.prefixes.iter().any(|p| dir.starts_with(p.as_str())) {
                Ok(Place::Url(url))
            } else {
                Err(outside())
            };
        }
        let path = Path::new(location);
        if !path.is_absolute() {
            return Err(QueryError::new(
                ErrorKind::InvalidValue,
                format!("LOCATION {location:?}: give an absolute path or an object store URL"),
            ));
        }
        // Before anything on disk is looked at: outside, whether it exists or not.
        let lexical = normalize(path);
        if !self.allows(&lexical) {
            return Err(outside());
        }
        // A symlink inside an allowed root may point anywhere: what the path really is,
        // as far as it exists (the table's own check then says if the rest is missing).
        let canonical = canonical_prefix(&lexical);
        if !self.allows(&canonical) {
            return Err(outside());
        }
        Ok(Place::Local(canonical))
    }

    fn allows(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
            && !self
                .forbidden
                .iter()
                .any(|f| path.starts_with(f) || f.starts_with(path))
    }
}

/// An object store URL as SQL may give it: no `file://` (local data is named by path, so
/// the path rules apply), nothing that could step out of a prefix.
fn checked_url(location: &str) -> Result<String, QueryError> {
    let refuse = |why: &str| {
        QueryError::new(
            ErrorKind::InvalidValue,
            format!("LOCATION {location:?}: {why}"),
        )
    };
    let (scheme, rest) = location
        .split_once("://")
        .ok_or_else(|| refuse("not a URL"))?;
    if scheme.eq_ignore_ascii_case("file") {
        return Err(refuse("give a local path, not a file:// URL"));
    }
    if rest.contains(['?', '#', '\\'])
        || rest.to_ascii_lowercase().contains("%2e")
        || rest.to_ascii_lowercase().contains("%2f")
        || rest.split('/').any(|s| s == "." || s == "..")
    {
        return Err(refuse(
            "a URL may not have dot segments, escaped dots or slashes, a query or a fragment",
        ));
    }
    Ok(format!("{}://{rest}", scheme.to_ascii_lowercase()))
}

fn as_dir(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// The path with its longest existing ancestor canonical (symlinks resolved) and the
/// missing rest appended as it is.
fn canonical_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(&existing) {
            let mut out = canonical;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.pop(),
        ) {
            (Some(name), true) => rest.push(name),
            _ => return path.to_path_buf(),
        }
    }
}

/// `..` and `.` resolved without looking at the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

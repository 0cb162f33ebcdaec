//! What planning needs to know about the session a statement runs in: who, which database,
//! and its settings (shared with the gateway's session, so `set_config()` in a query and
//! `SET` as a statement change the same values).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use auth::{Grants, GrantsVersion, Principal, TableName};
use datafusion::execution::{SessionState, TaskContext};

use crate::pg_catalog::{SERVER_VERSION, SERVER_VERSION_NUM};

/// The session a statement is planned for.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The user name the client sent.
    pub user: String,
    /// The database name the client asked for.
    pub database: String,
    pub settings: Settings,
    /// The id the session's cancel key carries (`pg_backend_pid()`).
    pub backend_pid: i32,
    /// What the session may read: the planner refuses plans that read anything else, and
    /// pg_catalog / information_schema list only what it may read.
    pub access: Access,
    /// The session's open cursors (`pg_cursors`).
    pub cursors: Vec<CursorInfo>,
    /// The front-end the session came through (`pg`, `flight`, `hs2`, `rest`; empty for
    /// sluice's own planning): what a result's columns are sent as depends on it.
    pub protocol: &'static str,
    /// The state the session's statements are planned in, kept between them.
    pub planning: StateCache,
    /// The session's warehouse, as EXPLAIN asks it whether it would distribute a plan
    /// (None: planning only, as for sluice's own statements).
    pub distribution: Option<Arc<dyn crate::distributed::Distributor>>,
}

/// An open cursor, as `pg_cursors` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorInfo {
    pub name: String,
    /// The DECLARE statement as the client sent it.
    pub statement: String,
    /// Declared `WITH HOLD`.
    pub holdable: bool,
    /// Declared `BINARY`.
    pub binary: bool,
    pub created: std::time::SystemTime,
}

/// What a session may read.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// Every table (sluice's own planning, tests).
    #[default]
    All,
    /// The tables the grants give this principal.
    Granted {
        principal: Arc<Principal>,
        grants: Arc<Grants>,
    },
}

impl Access {
    pub fn granted(principal: Principal, grants: Arc<Grants>) -> Self {
        Self::Granted {
            principal: Arc::new(principal),
            grants,
        }
    }

    /// The same access: the same principal under the same grants (handles compared).
    fn same(&self, other: &Access) -> bool {
        match (self, other) {
            (Self::All, Self::All) => true,
            (
                Self::Granted { principal, grants },
                Self::Granted {
                    principal: p,
                    grants: g,
                },
            ) => Arc::ptr_eq(principal, p) && Arc::ptr_eq(grants, g),
            _ => false,
        }
    }

    /// The set of grants in force, if grants decide.
    pub fn grants_version(&self) -> Option<GrantsVersion> {
        match self {
            Self::All => None,
            Self::Granted { grants, .. } => Some(grants.version()),
        }
    }

    /// May the session read every table?
    pub fn reads_all(&self) -> bool {
        match self {
            Self::All => true,
            Self::Granted { principal, grants } => grants.allows_all(principal),
        }
    }

    /// May the session read `catalog.schema.table`?
    pub fn can_read(&self, catalog: &str, schema: &str, table: &str) -> bool {
        match self {
            Self::All => true,
            Self::Granted { principal, grants } => grants.allows(
                principal,
                &TableName {
                    catalog: catalog.to_string(),
                    schema: schema.to_string(),
                    table: table.to_string(),
                },
            ),
        }
    }

    /// May the session see every principal's queries and use the admin page (the
    /// `MONITOR` privilege; the operator's admin tokens have it)?
    pub fn monitors(&self) -> bool {
        match self {
            Self::All => true,
            Self::Granted { principal, grants } => grants.has_privilege(principal, auth::MONITOR),
        }
    }

    /// Who the session is, for error messages.
    pub fn who(&self) -> String {
        match self {
            Self::All => "sluice".into(),
            Self::Granted { principal, .. } => principal.name.clone(),
        }
    }
}

impl Default for SessionInfo {
    fn default() -> Self {
        Self {
            user: crate::pg_catalog::OWNER_NAME.into(),
            database: crate::catalog().into(),
            settings: Settings::default(),
            backend_pid: 0,
            access: Access::All,
            cursors: Vec::new(),
            protocol: "",
            planning: StateCache::default(),
            distribution: None,
        }
    }
}

impl SessionInfo {
    /// Whether the session speaks Databricks SQL (it came through HS2 or the Statement
    /// Execution API); the others speak PostgreSQL's dialect.
    pub fn databricks_sql(&self) -> bool {
        Self::databricks_sql_protocol(self.protocol)
    }

    /// Whether sessions of a front-end (`protocol`) speak Databricks SQL.
    pub fn databricks_sql_protocol(protocol: &str) -> bool {
        matches!(protocol, "hs2" | "rest")
    }

    /// Whether a planning state made for `other` serves this session too: the same values,
    /// the same settings and access (the handles themselves, as the state holds them).
    fn plans_like(&self, other: &SessionInfo) -> bool {
        self.user == other.user
            && self.database == other.database
            && self.backend_pid == other.backend_pid
            && self.protocol == other.protocol
            && self.cursors == other.cursors
            && Arc::ptr_eq(&self.settings.0, &other.settings.0)
            && self.access.same(&other.access)
    }

    /// Schemas unqualified names are looked up in, from `search_path` (`"$user"` and
    /// schemas that do not exist are skipped, as in PostgreSQL).
    pub fn search_path(&self) -> Vec<String> {
        let path = self.settings.get("search_path").unwrap_or_default();
        path.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() && s != "$user")
            .collect()
    }
}

/// Session settings: those `SET` in the session over the server defaults.
#[derive(Debug, Clone, Default)]
pub struct Settings(Arc<Mutex<BTreeMap<String, String>>>);

/// The most settings one session may set (see [`Settings::set_checked`]).
pub const MAX_SESSION_SETTINGS: usize = 256;

impl Settings {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A setting's current value: set in this session, else the server default.
    pub fn get(&self, name: &str) -> Option<String> {
        let name = canonical_name(name);
        self.lock()
            .get(&name)
            .cloned()
            .or_else(|| default_setting(&name).map(str::to_string))
    }

    /// Whether the session set `name` itself (rather than reading the server default).
    pub fn is_set(&self, name: &str) -> bool {
        self.lock().contains_key(&canonical_name(name))
    }

    /// An independent copy (for planning ahead of statements that change settings).
    pub fn snapshot(&self) -> Settings {
        Settings(Arc::new(Mutex::new(self.lock().clone())))
    }

    pub fn set(&self, name: &str, value: String) {
        self.lock().insert(canonical_name(name), value);
    }

    /// `set`, for a name a client chose (SET, `set_config`): at most
    /// [`MAX_SESSION_SETTINGS`] distinct names per session, since any name is accepted and
    /// every copy of the settings (a statement planned ahead of a SET) copies them all.
    pub fn set_checked(&self, name: &str, value: String) -> Result<(), crate::QueryError> {
        let name = canonical_name(name);
        let mut settings = self.lock();
        if settings.len() >= MAX_SESSION_SETTINGS && !settings.contains_key(&name) {
            return Err(crate::QueryError::new(
                crate::ErrorKind::ResourcesExhausted,
                format!(
                    "a session sets at most {MAX_SESSION_SETTINGS} settings: RESET one before setting {name:?}"
                ),
            ));
        }
        settings.insert(name, value);
        Ok(())
    }

    pub fn reset(&self, name: &str) {
        self.lock().remove(&canonical_name(name));
    }

    pub fn reset_all(&self) {
        self.lock().clear();
    }

    /// Every setting with its value and where it comes from (`default` or `session`).
    pub fn all(&self) -> Vec<(String, String, &'static str)> {
        let set = self.lock().clone();
        let mut all: BTreeMap<String, (String, &'static str)> = DEFAULTS
            .iter()
            .map(|(n, v)| (n.to_string(), (v.to_string(), "default")))
            .collect();
        for (name, value) in set {
            all.insert(name, (value, "session"));
        }
        all.into_iter().map(|(n, (v, s))| (n, v, s)).collect()
    }
}

fn canonical_name(name: &str) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        // `SHOW TRANSACTION ISOLATION LEVEL` is the SQL-standard spelling.
        "transaction isolation level" => "transaction_isolation".to_string(),
        "time zone" => "timezone".to_string(),
        "session authorization" => "session_authorization".to_string(),
        other => other.to_string(),
    }
}

/// The column PostgreSQL names `SHOW <name>`'s answer: the setting's own spelling
/// (`SHOW TIME ZONE` and `SHOW timezone` both answer `TimeZone`).
pub fn show_column(name: &str) -> String {
    let canonical = canonical_name(name);
    match canonical.as_str() {
        "timezone" => "TimeZone".to_string(),
        "datestyle" => "DateStyle".to_string(),
        "intervalstyle" => "IntervalStyle".to_string(),
        _ => canonical,
    }
}

/// Server defaults of the settings clients read.
const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", SERVER_VERSION_NUM),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("extra_float_digits", "1"),
    ("search_path", "\"$user\", public"),
    ("application_name", ""),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("block_size", "8192"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
    ("lc_messages", "C.UTF-8"),
    ("statement_timeout", "0"),
    ("jit", "on"),
    ("is_superuser", "off"),
    ("in_hot_standby", "off"),
    ("bytea_output", "hex"),
    ("escape_string_warning", "on"),
    ("client_min_messages", "notice"),
    // What pgAdmin and SQLAlchemy read; sluice creates nothing with them.
    ("default_tablespace", ""),
    ("default_table_access_method", "heap"),
];

pub fn default_setting(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// A session's planning state, kept from one statement to the next. DataFusion's
/// `SessionState` holds its function maps (hundreds of entries) by value: copying them for
/// each statement was a fifth of the gateway's CPU on `SELECT 1`. Made again when the
/// planner, the session (see [`SessionInfo::plans_like`]) or the grants in force change.
#[derive(Clone, Default)]
pub struct StateCache(Arc<Mutex<Option<Arc<CachedState>>>>);

/// A session's state, what it was made from, and the context catalog queries run in.
pub(crate) struct CachedState {
    planner: u64,
    session: SessionInfo,
    grants: Option<GrantsVersion>,
    /// search_path when it was made (the settings handle is shared: its values change).
    search_path: Option<String>,
    pub(crate) state: Arc<SessionState>,
    pub(crate) task: Arc<TaskContext>,
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCache")
    }
}

impl StateCache {
    /// The state `planner` made for `session`, made now by `make` if there is none or it
    /// was made from something else.
    pub(crate) fn get_or_make<E>(
        session: &SessionInfo,
        planner: u64,
        make: impl FnOnce(&SessionInfo) -> Result<SessionState, E>,
    ) -> Result<Arc<CachedState>, E> {
        let grants = session.access.grants_version();
        let search_path = session.settings.get("search_path");
        let slot = &session.planning.0;
        if let Some(cached) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if cached.planner == planner
                && cached.grants == grants
                && cached.search_path == search_path
                && cached.session.plans_like(session)
            {
                return Ok(cached.clone());
            }
        }
        // The state holds this copy of the session (no cache in it: no cycle).
        let copy = SessionInfo {
            planning: StateCache::default(),
            distribution: None,
            ..session.clone()
        };
        let state = make(&copy)?;
        let cached = Arc::new(CachedState {
            planner,
            session: copy,
            grants,
            search_path,
            task: Arc::new(TaskContext::from(&state)),
            state: Arc::new(state),
        });
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(cached.clone());
        Ok(cached)
    }
}

//! A client session: who it is, where it points, and the settings it changed.

use auth::Principal;
use planner::{Access, SessionInfo, Settings, StateCache};

use crate::cursors::Cursors;

/// The setting that picks a session's warehouse (`SET warehouse = etl`, pg
/// `options=-c warehouse=etl`).
pub const WAREHOUSE_SETTING: &str = "warehouse";

/// Per-connection state shared by every front-end.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// What the principal may read (decided by the handler at login).
    pub access: Access,
    /// The user name the client sent (BI tools make users type one; the principal decides
    /// what the session may do).
    pub user: String,
    /// The pg database / HS2 path the session asked for.
    pub database: String,
    /// `SET` variables over the server defaults (shared with the planner, which reads them
    /// in `current_setting()` and changes them in `set_config()`).
    pub settings: Settings,
    /// The process id the client was given in BackendKeyData (`pg_backend_pid()`).
    pub backend_pid: i32,
    /// The warehouse the session was routed to at login (`SET warehouse` overrides it).
    pub warehouse: String,
    /// The front-end the session came through: `pg`, `flight`, `hs2`.
    pub protocol: &'static str,
    /// Inside `BEGIN … COMMIT` (cursors declared without HOLD live until its end).
    pub in_transaction: bool,
    /// `DECLARE … CURSOR`s open in this session.
    pub cursors: Cursors,
    /// The planner's state for this session's statements, kept between them.
    pub planning: StateCache,
}

impl Session {
    pub fn new(
        principal: Principal,
        access: Access,
        user: String,
        database: String,
        warehouse: String,
    ) -> Self {
        Self {
            principal,
            access,
            user,
            database,
            settings: Settings::default(),
            backend_pid: 0,
            warehouse,
            protocol: "",
            in_transaction: false,
            cursors: Cursors::default(),
            planning: StateCache::default(),
        }
    }

    /// A setting's current value: set in this session, else the server default.
    /// `warehouse` is the routed warehouse unless the session set another.
    pub fn setting(&self, name: &str) -> Option<String> {
        match self.settings.get(name) {
            Some(value) => Some(value),
            None if name.eq_ignore_ascii_case(WAREHOUSE_SETTING) => Some(self.warehouse.clone()),
            None => None,
        }
    }

    /// The warehouse this session's next query runs on.
    pub fn warehouse(&self) -> String {
        self.settings
            .get(WAREHOUSE_SETTING)
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| self.warehouse.clone())
    }

    /// Whether the session speaks Databricks SQL (it came through HS2 or the Statement
    /// Execution API); the others speak PostgreSQL's dialect.
    pub fn databricks_sql(&self) -> bool {
        planner::SessionInfo::databricks_sql_protocol(self.protocol)
    }

    /// What the planner needs to know about this session.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            user: self.user.clone(),
            database: self.database.clone(),
            settings: self.settings.clone(),
            backend_pid: self.backend_pid,
            access: self.access.clone(),
            cursors: if self.cursors.is_empty() {
                Vec::new()
            } else {
                self.cursors.list()
            },
            protocol: self.protocol,
            planning: self.planning.clone(),
            distribution: None,
        }
    }
}

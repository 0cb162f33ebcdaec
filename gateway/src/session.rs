//! A client session: who it is, where it points, and the settings it changed.

use std::collections::BTreeMap;

use auth::Principal;

/// Per-connection state shared by every front-end.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The user name the client sent (BI tools make users type one; the principal decides
    /// what the session may do).
    pub user: String,
    /// The pg database / HS2 path the session asked for.
    pub database: String,
    /// `SET` variables, lower-cased names.
    pub settings: BTreeMap<String, String>,
}

impl Session {
    pub fn new(principal: Principal, user: String, database: String) -> Self {
        Self {
            principal,
            user,
            database,
            settings: BTreeMap::new(),
        }
    }

    /// A setting's current value: set in this session, else the server default.
    pub fn setting(&self, name: &str) -> Option<String> {
        let name = match name.to_ascii_lowercase().as_str() {
            // `SHOW TRANSACTION ISOLATION LEVEL` is the SQL-standard spelling.
            "transaction isolation level" => "transaction_isolation".to_string(),
            other => other.to_string(),
        };
        self.settings
            .get(&name)
            .cloned()
            .or_else(|| default_setting(&name).map(str::to_string))
    }
}

/// Server defaults of the settings clients commonly `SHOW`.
pub fn default_setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => crate::SERVER_VERSION,
        "server_version_num" => "160000",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "integer_datetimes" => "on",
        "standard_conforming_strings" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "extra_float_digits" => "1",
        "search_path" => "\"$user\", public",
        "application_name" => "",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        "statement_timeout" => "0",
        _ => return None,
    })
}

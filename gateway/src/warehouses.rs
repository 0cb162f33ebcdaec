//! The gateway's warehouses: each a [`workers::Warehouse`] by name, the rules that route
//! a session to one, and their reload on SIGHUP.
//!
//! A session's warehouse is, in order: `SET warehouse = <name>` (also `options=-c
//! warehouse=<name>` at pg startup), the name it connected with (pg database, HS2 path
//! `/sql/1.0/warehouses/<name>`, Flight SQL header `x-sluice-warehouse`) when a warehouse
//! has that name, the first `[[routing]]` rule matching the principal, else `default`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use auth::Principal;
use planner::{ErrorKind, QueryError};
use workers::{Warehouse, WarehouseConfig};

/// The warehouse every session falls back to.
pub const DEFAULT: &str = "default";

/// `[[routing]]`: principals, roles or groups whose sessions go to a warehouse.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub warehouse: String,
}

impl Route {
    fn matches(&self, p: &Principal) -> bool {
        auth::names(p, &self.principals, &self.roles, &self.groups)
    }
}

/// All warehouses of a gateway.
pub struct Warehouses {
    by_name: RwLock<BTreeMap<String, Arc<Warehouse>>>,
    routes: RwLock<Vec<Route>>,
}

impl Warehouses {
    /// Start every configured warehouse (concurrently).
    pub async fn start(
        configs: Vec<WarehouseConfig>,
        routes: Vec<Route>,
    ) -> Result<Arc<Self>, QueryError> {
        let started = futures::future::join_all(configs.into_iter().map(|c| async move {
            let name = c.name.clone();
            Warehouse::start(c)
                .await
                .map_err(|e| QueryError::new(e.kind, format!("warehouse {name}: {}", e.message)))
        }))
        .await;
        let mut by_name = BTreeMap::new();
        for warehouse in started {
            let warehouse = warehouse?;
            by_name.insert(warehouse.name().to_string(), warehouse);
        }
        Ok(Arc::new(Self {
            by_name: RwLock::new(by_name),
            routes: RwLock::new(routes),
        }))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Warehouse>> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every warehouse, `default` first.
    pub fn all(&self) -> Vec<Arc<Warehouse>> {
        let mut all: Vec<Arc<Warehouse>> = self
            .by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|w| w.name() != DEFAULT);
        all
    }

    pub fn default_warehouse(&self) -> Option<Arc<Warehouse>> {
        self.get(DEFAULT)
    }

    /// The warehouse a new session of `principal` uses, asking for `requested` (pg
    /// database, HS2 path, Flight header): that warehouse when it exists, else the first
    /// matching route, else `default`. (psql names the database after the user, so an
    /// unknown name is not an error.)
    pub fn route(&self, principal: &Principal, requested: &str) -> String {
        if !requested.is_empty() && self.get(requested).is_some() {
            return requested.to_string();
        }
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .find(|r| r.matches(principal) && self.get(&r.warehouse).is_some())
            .map(|r| r.warehouse.clone())
            .unwrap_or_else(|| DEFAULT.to_string())
    }

    /// The warehouse `name`, or an error naming the ones that exist.
    pub fn named(&self, name: &str) -> Result<Arc<Warehouse>, QueryError> {
        self.get(name).ok_or_else(|| {
            QueryError::new(
                ErrorKind::UndefinedObject,
                format!(
                    "warehouse {name:?} does not exist (warehouses: {})",
                    self.names().join(", ")
                ),
            )
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Apply a reloaded config: changed warehouses take their new settings, new ones
    /// start, removed ones stop (their sessions fall back to `default` at their next
    /// query); routes are replaced. Sessions stay connected.
    pub async fn reload(
        &self,
        configs: Vec<WarehouseConfig>,
        routes: Vec<Route>,
    ) -> Result<(), QueryError> {
        let mut keep = Vec::new();
        for config in configs {
            keep.push(config.name.clone());
            match self.get(&config.name) {
                Some(existing) => existing.reconfigure(config),
                None => {
                    let name = config.name.clone();
                    let warehouse = Warehouse::start(config).await?;
                    tracing::info!(warehouse = %name, "warehouse added by reload");
                    self.by_name
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, warehouse);
                }
            }
        }
        let removed: Vec<Arc<Warehouse>> = {
            let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = by_name
                .keys()
                .filter(|n| !keep.contains(n))
                .cloned()
                .collect();
            gone.iter().filter_map(|n| by_name.remove(n)).collect()
        };
        for warehouse in removed {
            tracing::info!(warehouse = %warehouse.name(), "warehouse removed by reload; stopping it");
            warehouse.stop();
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
        Ok(())
    }

    pub fn stop(&self) {
        for warehouse in self.all() {
            warehouse.stop();
        }
    }
}

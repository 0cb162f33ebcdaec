//! The catalog a gateway plans against: the config file's tables (and the demo's), which
//! SQL cannot change, and the objects created with SQL (`CREATE EXTERNAL TABLE`,
//! `CREATE VIEW`, `CREATE SCHEMA`, `DROP`), kept in the metadata store. Every change
//! builds a new [`Planner`] and puts it in place here, with a new generation: statements
//! already planned keep the one they began with, and the handler, seeing the generation
//! move, plans them again and drops answers over the old catalog.
//!
//! Gateways that share a PostgreSQL metadata store share these objects: each re-reads
//! them every [`REFRESH`] and takes another gateway's change then.

use std::sync::Arc;
use std::time::Duration;

use planner::ddl::{self, CatalogChange, CatalogObject, DropKind, Managed};
use planner::{ErrorKind, Planner, QueryError, SessionInfo, TableDef};

use crate::metadata::{Store, StoreError};

/// How often a gateway looks for another gateway's catalog changes.
pub const REFRESH: Duration = Duration::from_secs(1);

/// What a planner is built from, besides the tables.
pub struct Catalog {
    store: Arc<Store>,
    threads: usize,
    system: Arc<dyn planner::system::SystemSource>,
    storage: Arc<planner::storage::Registry>,
    /// What one statement may ask (`[limits]`).
    limits: planner::Limits,
    /// Where `CREATE EXTERNAL TABLE` may point (`[storage] allowed_locations`).
    locations: planner::locations::LocationPolicy,
    current: tokio::sync::Mutex<Current>,
    /// The planner in place, and its generation (bumped at every new planner). Replaced
    /// whole; a statement keeps the one it began with.
    in_place: std::sync::RwLock<(Arc<Planner>, u64)>,
}

/// What the planner in place was built from.
struct Current {
    config: Vec<TableDef>,
    managed: Managed,
}

/// A planner for new config tables, built but not yet in place (see [`Catalog::prepare_config`]).
pub struct PreparedConfig {
    config: Vec<TableDef>,
    managed: Managed,
    planner: Planner,
}

fn store_error(e: StoreError) -> QueryError {
    QueryError::new(ErrorKind::Unavailable, e.to_string())
}

impl Catalog {
    /// The catalog of a starting gateway, with its first planner in place.
    pub async fn open(
        store: Arc<Store>,
        threads: usize,
        system: Arc<dyn planner::system::SystemSource>,
        storage: Arc<planner::storage::Registry>,
        limits: planner::Limits,
        locations: planner::locations::LocationPolicy,
        config: Vec<TableDef>,
    ) -> Result<Arc<Self>, QueryError> {
        let managed = Managed::from_objects(store.catalog_objects().await.map_err(store_error)?);
        let planner = Planner::new(
            &config,
            &managed,
            threads,
            Some(system.clone()),
            storage.clone(),
            limits,
        )
        .await?;
        if !managed.schemas.is_empty() || !managed.tables.is_empty() || !managed.views.is_empty() {
            tracing::info!(
                schemas = managed.schemas.len(),
                tables = managed.tables.len(),
                views = managed.views.len(),
                "catalog objects created with SQL loaded"
            );
        }
        Ok(Arc::new(Self {
            store,
            threads,
            system,
            storage,
            limits,
            locations,
            current: tokio::sync::Mutex::new(Current { config, managed }),
            in_place: std::sync::RwLock::new((Arc::new(planner), 0)),
        }))
    }

    /// The planner over the catalog as it is now.
    pub fn planner(&self) -> Arc<Planner> {
        self.current_planner().0
    }

    /// The planner in place and its generation.
    pub fn current_planner(&self) -> (Arc<Planner>, u64) {
        self.in_place
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Plan against `planner` from now on.
    fn put_in_place(&self, planner: Planner) {
        let mut in_place = self.in_place.write().unwrap_or_else(|e| e.into_inner());
        let generation = in_place.1 + 1;
        *in_place = (Arc::new(planner), generation);
    }

    async fn build(&self, config: &[TableDef], managed: &Managed) -> Result<Planner, QueryError> {
        Planner::new(
            config,
            managed,
            self.threads,
            Some(self.system.clone()),
            self.storage.clone(),
            self.limits,
        )
        .await
    }

    /// Reload: a planner over other config tables (None: they did not change). Nothing
    /// changes until [`Catalog::apply_config`].
    pub async fn prepare_config(
        &self,
        config: Vec<TableDef>,
    ) -> Result<Option<PreparedConfig>, QueryError> {
        let managed = {
            let current = self.current.lock().await;
            if current.config == config {
                return Ok(None);
            }
            current.managed.clone()
        };
        let planner = self.build(&config, &managed).await?;
        Ok(Some(PreparedConfig {
            config,
            managed,
            planner,
        }))
    }

    /// Put a reload's planner in place (built again if SQL changed the catalog meanwhile).
    pub async fn apply_config(&self, prepared: PreparedConfig) -> Result<(), QueryError> {
        let mut current = self.current.lock().await;
        let planner = if current.managed == prepared.managed {
            prepared.planner
        } else {
            self.build(&prepared.config, &current.managed).await?
        };
        current.config = prepared.config;
        self.put_in_place(planner);
        Ok(())
    }

    /// Take the changes another gateway made to the shared objects.
    pub async fn refresh(&self) -> Result<(), QueryError> {
        // Read under the lock: objects read before a DDL of this gateway committed, then
        // compared after it, would put the catalog of before the DDL back in place.
        let mut current = self.current.lock().await;
        let stored =
            Managed::from_objects(self.store.catalog_objects().await.map_err(store_error)?);
        if current.managed == stored {
            return Ok(());
        }
        let planner = self.build(&current.config, &stored).await?;
        tracing::info!("catalog changed by another gateway; planning against it");
        current.managed = stored;
        self.put_in_place(planner);
        Ok(())
    }

    /// Run the refresh every [`REFRESH`] until `stop`.
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
            match self.refresh().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e.message, "could not read the catalog objects; retrying");
                }
                Err(_) => {}
            }
        }
    }

    /// Apply a DDL statement of `session` (whose `MANAGE` privilege the caller checked):
    /// checked against the catalog, kept in the store, then planned against.
    pub async fn change(
        &self,
        change: &CatalogChange,
        session: &SessionInfo,
    ) -> Result<(), QueryError> {
        let mut current = self.current.lock().await;
        // What other gateways created counts too.
        let mut managed =
            Managed::from_objects(self.store.catalog_objects().await.map_err(store_error)?);
        let config_names: Vec<String> = current
            .config
            .iter()
            .filter_map(|t| t.qualified_name().ok().map(|(s, n)| format!("{s}.{n}")))
            .collect();
        // Schemas of the config file's (and the demo's) tables: the operator's, closed to
        // SQL. `public` cannot be dropped either.
        let config_schemas: Vec<String> = config_names
            .iter()
            .filter_map(|n| n.split_once('.').map(|(s, _)| s.to_string()))
            .collect();
        let undroppable = |schema: &str| {
            config_schemas.iter().any(|s| s == schema) || schema == planner::DEFAULT_SCHEMA
        };
        let read_only = |name: &str| {
            QueryError::new(
                ErrorKind::ReadOnly,
                format!("{name} is defined in the config file: change it there, not with SQL"),
            )
        };
        let exists = |what: &str, name: &str| {
            QueryError::new(
                ErrorKind::DuplicateObject,
                format!("{what} {name} already exists"),
            )
        };
        match change {
            CatalogChange::Create {
                object,
                if_not_exists,
                or_replace,
            } => {
                // A view keeps the tables its creator meant: names qualified as the
                // creator's session resolves them.
                let bound;
                let object = match object {
                    CatalogObject::View(view) => {
                        bound = CatalogObject::View(ddl::ViewDef {
                            name: view.name.clone(),
                            sql: self.planner().bind_view(view, session)?,
                            databricks: view.databricks,
                        });
                        &bound
                    }
                    other => other,
                };
                let key = object.key();
                let there = stored(&managed, &key);
                match object {
                    CatalogObject::Schema { name } => {
                        if undroppable(name) || there.is_some() {
                            return if *if_not_exists {
                                Ok(())
                            } else {
                                Err(exists("schema", name))
                            };
                        }
                    }
                    CatalogObject::Table(TableDef { name, .. })
                    | CatalogObject::View(ddl::ViewDef { name, .. }) => {
                        if config_names.contains(name) {
                            return if *if_not_exists {
                                Ok(())
                            } else {
                                Err(read_only(name))
                            };
                        }
                        let schema = name.split_once('.').map_or("", |(s, _)| s);
                        if config_schemas.iter().any(|s| s == schema) {
                            return Err(read_only(&format!("schema {schema}")));
                        }
                        let what = match object {
                            CatalogObject::View(_) => "view",
                            _ => "table",
                        };
                        match there {
                            Some(old)
                                if *or_replace
                                    && std::mem::discriminant(&old)
                                        != std::mem::discriminant(object) =>
                            {
                                return Err(QueryError::new(
                                    ErrorKind::DuplicateObject,
                                    format!("{name} exists and is not a {what}: drop it first"),
                                ));
                            }
                            Some(_) if *or_replace => {}
                            Some(_) if *if_not_exists => return Ok(()),
                            Some(_) => return Err(exists(what, name)),
                            None => {}
                        }
                        match object {
                            CatalogObject::View(view) => {
                                self.planner().check_view(view, session).await?;
                            }
                            CatalogObject::Table(table) => {
                                self.check_location(table, &current, &managed, session)?;
                            }
                            CatalogObject::Schema { .. } => {}
                        }
                    }
                }
                managed = Managed::from_objects(
                    objects(&managed)
                        .into_iter()
                        .filter(|o| o.key() != key)
                        .chain([object.clone()]),
                );
                let planner = self.build(&current.config, &managed).await?;
                if let CatalogObject::Table(TableDef { name, .. }) = object {
                    // A table that cannot be read now is refused, not kept broken.
                    if let Some(e) = planner.unavailable(name) {
                        return Err(e);
                    }
                    // So are keys that do not fit it.
                    if let Some(e) = planner.key_error(name) {
                        return Err(e);
                    }
                }
                if !self
                    .store
                    .put_object(object, *or_replace)
                    .await
                    .map_err(store_error)?
                {
                    // Another gateway created it just now.
                    return Err(exists("object", &key));
                }
                current.managed = managed;
                self.put_in_place(planner);
            }
            CatalogChange::Drop {
                kind,
                name,
                if_exists,
            } => {
                let key = match kind {
                    DropKind::Schema => ddl::schema_key(name),
                    _ => ddl::relation_key(name),
                };
                let missing = || {
                    if *if_exists {
                        Ok(())
                    } else {
                        let (kind, what) = match kind {
                            DropKind::Schema => (ErrorKind::UndefinedObject, "schema"),
                            DropKind::Table => (ErrorKind::UndefinedTable, "table"),
                            DropKind::View => (ErrorKind::UndefinedTable, "view"),
                        };
                        Err(QueryError::new(
                            kind,
                            format!("{what} {name} does not exist"),
                        ))
                    }
                };
                let prefix = format!("{name}.");
                let has_objects = managed.tables.iter().any(|t| t.name.starts_with(&prefix))
                    || managed.views.iter().any(|v| v.name.starts_with(&prefix));
                let not_empty = || {
                    Err(QueryError::new(
                        ErrorKind::InvalidValue,
                        format!("schema {name} is not empty: drop its tables and views first"),
                    ))
                };
                match (kind, stored(&managed, &key)) {
                    (DropKind::Schema, _) if undroppable(name) => {
                        return Err(read_only(&format!("schema {name}")))
                    }
                    // Tables created in a schema nobody created are in it all the same.
                    (DropKind::Schema, _) if has_objects => return not_empty(),
                    (_, None) if config_names.contains(name) => return Err(read_only(name)),
                    (_, None) => return missing(),
                    (DropKind::Table, Some(CatalogObject::View(_))) => {
                        return Err(QueryError::new(
                            ErrorKind::InvalidValue,
                            format!("{name} is a view: use DROP VIEW"),
                        ))
                    }
                    (DropKind::View, Some(CatalogObject::Table(_))) => {
                        return Err(QueryError::new(
                            ErrorKind::InvalidValue,
                            format!("{name} is a table: use DROP TABLE"),
                        ))
                    }
                    _ => {}
                }
                managed =
                    Managed::from_objects(objects(&managed).into_iter().filter(|o| o.key() != key));
                let planner = self.build(&current.config, &managed).await?;
                if !self.store.remove_object(&key).await.map_err(store_error)? {
                    return missing();
                }
                current.managed = managed;
                self.put_in_place(planner);
            }
            CatalogChange::Rename {
                name,
                new_name,
                if_exists,
            } => {
                let key = ddl::relation_key(name);
                let renamed = match stored(&managed, &key) {
                    Some(CatalogObject::Table(mut table)) => {
                        table.name = new_name.clone();
                        CatalogObject::Table(table)
                    }
                    Some(CatalogObject::View(mut view)) => {
                        view.name = new_name.clone();
                        CatalogObject::View(view)
                    }
                    _ if config_names.contains(name) => return Err(read_only(name)),
                    _ if *if_exists => return Ok(()),
                    _ => {
                        return Err(QueryError::new(
                            ErrorKind::UndefinedTable,
                            format!("relation {name} does not exist"),
                        ))
                    }
                };
                // Grants name tables: renaming one the session may not read to a name it
                // may read would hand it the data. Only a reader renames (as only a reader
                // may point a new table at another's files).
                let (schema, table) = name
                    .split_once('.')
                    .unwrap_or((planner::DEFAULT_SCHEMA, name));
                if !session.access.can_read(planner::catalog(), schema, table) {
                    return Err(QueryError::new(
                        ErrorKind::PermissionDenied,
                        format!("{name}: renaming a relation needs SELECT on it"),
                    ));
                }
                if config_names.contains(new_name)
                    || stored(&managed, &ddl::relation_key(new_name)).is_some()
                {
                    return Err(exists("relation", new_name));
                }
                managed = Managed::from_objects(
                    objects(&managed)
                        .into_iter()
                        .filter(|o| o.key() != key)
                        .chain([renamed.clone()]),
                );
                // Keys name the tables they reference: one that referenced the old name
                // no longer fits, and the rename is refused before anything is stored.
                let planner = self.build(&current.config, &managed).await?;
                let tables = config_names
                    .iter()
                    .chain(managed.tables.iter().map(|t| &t.name));
                if let Some(e) = tables.filter_map(|t| planner.key_error(t)).next() {
                    return Err(e);
                }
                if !self
                    .store
                    .put_object(&renamed, false)
                    .await
                    .map_err(store_error)?
                {
                    return Err(exists("relation", new_name));
                }
                if !self.store.remove_object(&key).await.map_err(store_error)? {
                    // Another gateway dropped or renamed it just now: undo ours.
                    let _ = self.store.remove_object(&renamed.key()).await;
                    return Err(QueryError::new(
                        ErrorKind::UndefinedTable,
                        format!("relation {name} does not exist"),
                    ));
                }
                current.managed = managed;
                self.put_in_place(planner);
            }
        }
        Ok(())
    }
}

impl Catalog {
    /// Whether `session` may put a table where `table` says: within the allowed
    /// locations, and over no other table's files unless it may read that table.
    fn check_location(
        &self,
        table: &TableDef,
        current: &Current,
        managed: &Managed,
        session: &SessionInfo,
    ) -> Result<(), QueryError> {
        let place = self.locations.check(&table.location)?;
        for other in current.config.iter().chain(&managed.tables) {
            if other.name == table.name {
                continue;
            }
            if !place.overlaps(&planner::locations::Place::of(&other.location)) {
                continue;
            }
            let Ok((schema, name)) = other.qualified_name() else {
                continue;
            };
            if !session.access.can_read(planner::catalog(), &schema, &name) {
                return Err(QueryError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "permission denied: LOCATION {:?} holds files of table {schema}.{name}, \
                         which {} may not read",
                        table.location,
                        session.access.who()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The objects of a managed set.
fn objects(managed: &Managed) -> Vec<CatalogObject> {
    let schemas = managed
        .schemas
        .iter()
        .map(|name| CatalogObject::Schema { name: name.clone() });
    let tables = managed.tables.iter().cloned().map(CatalogObject::Table);
    let views = managed.views.iter().cloned().map(CatalogObject::View);
    schemas.chain(tables).chain(views).collect()
}

fn stored(managed: &Managed, key: &str) -> Option<CatalogObject> {
    objects(managed).into_iter().find(|o| o.key() == key)
}

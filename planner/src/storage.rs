//! Where table data lives: local files and object storage (Azure Blob Storage and ADLS Gen2
//! through `object_store`).
//!
//! The gateway and every worker resolve a table's URL through one [`Registry`]: `file://`
//! is the local disk; `az://`, `abfs[s]://`, `adl://`, `azure://` and
//! `https://<account>.{blob,dfs}.core.windows.net` reach Azure. An Azure store is built on
//! first use from the standard `AZURE_STORAGE_*` environment variables, with the
//! `[storage.azure]` options of the config file on top. Credentials never come from SQL text
//! and never reach a message: [`describe`] turns a storage failure into its cause, and
//! [`scrub`] removes query strings (SAS signatures) and configured secrets from any text.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::SpawnedReqwestConnector;
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use url::Url;

/// The environment variable a gateway passes its storage options to the workers it starts
/// in (JSON). Remote workers read the `AZURE_STORAGE_*` variables of their own environment.
pub const STORAGE_ENV: &str = "SLUICE_STORAGE_OPTIONS";

/// Option names whose values are secrets.
const SECRET_KEYS: &[AzureConfigKey] = &[
    AzureConfigKey::AccessKey,
    AzureConfigKey::SasKey,
    AzureConfigKey::ClientSecret,
    AzureConfigKey::Token,
];

/// `[storage.azure]`: `object_store` Azure options by name (`account_name`,
/// `account_key`, `sas_token`, `client_id`, `client_secret`, `tenant_id`, `msi_endpoint`,
/// `use_emulator`, `endpoint`, …). Its `Debug` shows no secret.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageOptions {
    #[serde(default)]
    pub azure: BTreeMap<String, String>,
}

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .azure
            .iter()
            .map(|(k, v)| {
                let secret = k
                    .parse::<AzureConfigKey>()
                    .map(|key| SECRET_KEYS.contains(&key))
                    .unwrap_or(true);
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("StorageOptions")
            .field("azure", &shown)
            .finish()
    }
}

impl StorageOptions {
    /// Every option name must be one `object_store` knows.
    pub fn validate(&self) -> Result<(), String> {
        for key in self.azure.keys() {
            if key.parse::<AzureConfigKey>().is_err() {
                return Err(format!(
                    "[storage.azure]: unknown option {key:?} (use object_store's Azure names: \
                     account_name, account_key, sas_token, client_id, client_secret, tenant_id, \
                     msi_endpoint, use_emulator, endpoint, …)"
                ));
            }
        }
        Ok(())
    }

    /// The options a gateway hands to the workers it starts.
    pub fn to_env(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The options handed down by the gateway, if any.
    pub fn from_env() -> Self {
        std::env::var(STORAGE_ENV)
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }

    /// The secret values, to keep out of messages: those configured and those of the
    /// environment.
    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .azure
            .iter()
            .filter(|(k, _)| {
                k.parse::<AzureConfigKey>()
                    .is_ok_and(|key| SECRET_KEYS.contains(&key))
            })
            .map(|(_, v)| v.clone())
            .collect();
        for (key, value) in std::env::vars() {
            if key.starts_with("AZURE_")
                && key
                    .to_ascii_lowercase()
                    .parse::<AzureConfigKey>()
                    .is_ok_and(|k| SECRET_KEYS.contains(&k))
            {
                out.push(value);
            }
        }
        out.retain(|s| s.len() >= 4);
        out
    }
}

/// Whether a location is a URL (object storage or `file://`) rather than a local path.
pub fn is_url(location: &str) -> bool {
    location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

fn is_azure(url: &Url) -> bool {
    match url.scheme() {
        "az" | "abfs" | "abfss" | "adl" | "azure" => true,
        "https" | "http" => url.host_str().is_some_and(|h| {
            h.ends_with(".blob.core.windows.net")
                || h.ends_with(".dfs.core.windows.net")
                || h.ends_with(".blob.fabric.microsoft.com")
                || h.ends_with(".dfs.fabric.microsoft.com")
        }),
        _ => false,
    }
}

/// Object stores by `scheme://authority`, built on first use.
pub struct Registry {
    options: StorageOptions,
    secrets: Vec<String>,
    local: Arc<dyn ObjectStore>,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
    /// The runtime remote stores do their HTTP on (the one the registry was made on): a
    /// worker runs each query on a runtime of its own, and a connection kept in a pool
    /// must not live on (and hold up) the runtime of the query that opened it.
    io: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores = self.stores.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Registry")
            .field("options", &self.options)
            .field("stores", &stores.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeUsername..url::Position::AfterPort]
    )
}

impl Registry {
    /// The registry of `options`; call it on the long-lived runtime (see `io`).
    pub fn new(options: StorageOptions) -> Arc<Self> {
        let secrets = options.secrets();
        Arc::new(Self {
            options,
            secrets,
            local: Arc::new(LocalFileSystem::new()),
            stores: RwLock::default(),
            io: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// `text` with configured secrets and URL query strings removed.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }

    fn build(&self, url: &Url) -> Result<Arc<dyn ObjectStore>, DataFusionError> {
        if url.scheme() == "file" {
            return Ok(self.local.clone());
        }
        if !is_azure(url) {
            return Err(DataFusionError::Configuration(format!(
                "no object store for {}:// URLs: sluice reads local paths, file://, and Azure \
                 (az://, abfss://, adl://, https://<account>.blob.core.windows.net)",
                url.scheme()
            )));
        }
        let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
        if let Some(io) = &self.io {
            builder = builder.with_http_connector(SpawnedReqwestConnector::new(io.clone()));
        }
        for (k, v) in &self.options.azure {
            // Validated when the config was read.
            if let Ok(key) = k.parse::<AzureConfigKey>() {
                builder = builder.with_config(key, v);
            }
        }
        // A storage endpoint that is down fails a query in seconds, not after the default
        // three minutes of retries.
        builder = builder
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        let store = builder.build().map_err(|e| {
            DataFusionError::Configuration(format!(
                "cannot use {}: {}",
                key(url),
                self.scrub(&e.to_string())
            ))
        })?;
        Ok(Arc::new(store))
    }
}

impl ObjectStoreRegistry for Registry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(url))
            .ok_or_else(|| DataFusionError::Internal(format!("no object store for {}", key(url))))
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let k = key(url);
        if let Some(store) = self
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k)
        {
            return Ok(store.clone());
        }
        let store = self.build(url)?;
        Ok(self
            .stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k)
            .or_insert(store)
            .clone())
    }
}

/// `text` with every secret replaced and every URL's query string (a SAS token) cut.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), "***");
        }
    }
    // `…://host/path?sv=…&sig=…` → `…://host/path?***`
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at);
        result.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        match url.find('?') {
            Some(q) => {
                result.push_str(&url[..q]);
                result.push_str("?***");
            }
            None => result.push_str(url),
        }
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// What went wrong with object storage, in words that help and hold no secret.
pub fn describe(error: &object_store::Error) -> String {
    use object_store::Error::*;
    let text = error.to_string();
    let has = |s: &str| text.contains(s);
    match error {
        NotFound { path, .. } if has("ContainerNotFound") => {
            format!("the container does not exist (reading {path})")
        }
        NotFound { path, .. } => format!("{path} was not found"),
        PermissionDenied { path, .. } | Unauthenticated { path, .. } => format!(
            "the storage account refused the credentials for {path} (check the account name, \
             key, SAS token or service principal)"
        ),
        _ if has("ContainerNotFound") => "the container does not exist".into(),
        _ if has("AuthenticationFailed")
            || has("AuthorizationFailure")
            || has("403 Forbidden")
            || has("401 Unauthorized") =>
        {
            "the storage account refused the credentials (check the account name, key, SAS \
             token or service principal)"
                .into()
        }
        _ if has("BlobNotFound") || has("404 Not Found") => "a file was not found".into(),
        _ if has("error sending request")
            || has("Connection refused")
            || has("dns error")
            || has("timed out") =>
        {
            "the storage endpoint cannot be reached".into()
        }
        _ => {
            let mut cut = scrub(&text, &[]);
            if cut.len() > 300 {
                let mut end = 300;
                while !cut.is_char_boundary(end) {
                    end -= 1;
                }
                cut.truncate(end);
                cut.push('…');
            }
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_cuts_sas_and_secrets() {
        let text = "Error performing GET http://127.0.0.1:10000/acct/c/f?sv=2021&sig=abc%3D in 1ms - key Eby8vdM02x";
        assert_eq!(
            scrub(text, &["Eby8vdM02x".into()]),
            "Error performing GET http://127.0.0.1:10000/acct/c/f?*** in 1ms - key ***"
        );
    }

    #[test]
    fn options_debug_hides_secrets_and_unknown_keys_are_refused() {
        let mut options = StorageOptions::default();
        options.azure.insert("account_name".into(), "acct".into());
        options.azure.insert("account_key".into(), "hunter2".into());
        let shown = format!("{options:?}");
        assert!(
            shown.contains("acct") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(options.validate().is_ok());
        options.azure.insert("acount_key".into(), "x".into());
        assert!(options
            .validate()
            .expect_err("refused")
            .contains("acount_key"));
    }

    #[test]
    fn urls_and_paths() {
        assert!(is_url("az://c/p"));
        assert!(is_url("abfss://c@a.dfs.core.windows.net/p"));
        assert!(!is_url("/data/x.parquet"));
        assert!(!is_url("data/x:y"));
        let url = Url::parse("abfss://c@a.dfs.core.windows.net/p/q").expect("valid");
        assert_eq!(key(&url), "abfss://c@a.dfs.core.windows.net");
        assert!(is_azure(&url));
    }
}

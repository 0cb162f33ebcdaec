//! OIDC issuers: discovery, a JWKS cache per issuer, and JWT access-token validation.
//!
//! Each configured issuer URL (an Entra ID tenant's v1 or v2 issuer, or any OIDC
//! provider) gets its keys from `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
//! Keys are fetched once at start and every `refresh_interval`; a token signed with a key
//! we do not hold causes one refetch (one in flight per issuer, at most one per
//! `min_refetch_interval`), so a key rotation costs one fetch and junk `kid`s cost
//! nothing more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{unix_now, AuthError, Principal};

/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// Largest discovery document or key set we read.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest claim value quoted back in an error.
const MAX_QUOTED: usize = 120;

/// How OIDC tokens are checked.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Trusted issuers, e.g. `https://login.microsoftonline.com/<tenant>/v2.0`. For an
    /// Entra tenant both its v1 (`https://sts.windows.net/<tenant>/`) and v2 issuers are
    /// accepted, whichever form is configured.
    pub issuers: Vec<String>,
    /// Accepted audiences: the App ID URI and/or the client-id GUID.
    pub audiences: Vec<String>,
    /// If set, a token must carry at least one of these in `roles` or `scp`.
    pub required_roles: Vec<String>,
    /// How often keys are refreshed in the background.
    pub refresh_interval: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    pub min_refetch_interval: Duration,
    /// Timeout of one discovery or JWKS request.
    pub http_timeout: Duration,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            required_roles: Vec::new(),
            refresh_interval: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(10),
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// What an issuer's key cache has done (metrics, tests, benchmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStats {
    pub issuer: String,
    /// JWKS requests made so far.
    pub jwks_fetches: u64,
    /// Keys held now.
    pub keys: usize,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
}

/// A token that passed every check.
pub(crate) struct Validated {
    pub principal: Principal,
    pub exp: u64,
    pub issuer: usize,
    pub kid: String,
}

pub(crate) struct Oidc {
    issuers: Vec<Arc<Issuer>>,
    audiences: Vec<String>,
    required_roles: Vec<String>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Self, String> {
        if settings.audiences.is_empty() {
            return Err("an OIDC issuer needs at least one audience (--oidc-audience)".into());
        }
        let client = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .connect_timeout(settings.http_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("OIDC HTTP client: {e}"))?;
        let issuers = settings
            .issuers
            .iter()
            .map(|url| Issuer::new(url, &settings, client.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            issuers,
            audiences: settings.audiences,
            required_roles: settings.required_roles,
        })
    }

    pub fn start_refresh(&self) {
        for issuer in &self.issuers {
            let weak = Arc::downgrade(issuer);
            tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    let Some(issuer) = weak.upgrade() else { return };
                    let ok = {
                        let _flight = issuer.fetch_lock.lock().await;
                        issuer.refresh().await
                    };
                    let wait = if ok {
                        failures = 0;
                        issuer.refresh_interval
                    } else {
                        failures = failures.saturating_add(1);
                        Duration::from_secs(5u64 << failures.min(6)).min(Duration::from_secs(300))
                    };
                    drop(issuer);
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }

    pub fn stats(&self) -> Vec<IssuerStats> {
        self.issuers
            .iter()
            .map(|i| {
                let state = i.state.read().unwrap_or_else(|p| p.into_inner());
                IssuerStats {
                    issuer: i.url.clone(),
                    jwks_fetches: i.fetches.load(Ordering::Relaxed),
                    keys: state.keys.len(),
                    last_error: state.last_error.clone(),
                }
            })
            .collect()
    }

    pub fn has_key(&self, issuer: usize, kid: &str) -> bool {
        self.issuers.get(issuer).is_some_and(|i| {
            let state = i.state.read().unwrap_or_else(|p| p.into_inner());
            state.keys.contains_key(kid)
        })
    }

    pub async fn validate(&self, token: &str) -> Result<Validated, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let header: RawHeader = decode_part(header, "header")?;
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(AuthError::Algorithm(quote(other))),
        };
        let claims: Claims = decode_part(payload, "payload")?;
        let iss = claims
            .iss
            .as_deref()
            .ok_or_else(|| AuthError::MissingClaim("iss".into()))?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.accepts(iss))
            .ok_or_else(|| AuthError::UntrustedIssuer(quote(iss)))?;
        if let Some(tenant) = &issuer.tenant {
            match claims.tid.as_deref() {
                Some(tid) if tid.eq_ignore_ascii_case(tenant) => {}
                Some(tid) => return Err(AuthError::WrongTenant(quote(tid))),
                None => return Err(AuthError::MissingClaim("tid".into())),
            }
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::MissingClaim("kid (header)".into()))?;
        let (key, key_alg) = issuer.key(&kid).await?;
        if key_alg != alg {
            return Err(AuthError::Algorithm(format!(
                "{} with a {key_alg:?} key",
                header.alg
            )));
        }

        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "aud"]);
        // The issuer was checked above (with Entra's v1/v2 equivalence).
        validation.iss = None;
        let checked = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            let now = unix_now();
            match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => {
                    AuthError::Expired(now.saturating_sub(claims.exp.unwrap_or(now)))
                }
                ErrorKind::ImmatureSignature => {
                    AuthError::NotYetValid(claims.nbf.unwrap_or(now).saturating_sub(now))
                }
                ErrorKind::InvalidAudience => AuthError::WrongAudience(
                    quote(&audience_text(claims.aud.as_ref())),
                    self.audiences.join(" or "),
                ),
                ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm => AuthError::Algorithm(header.alg.clone()),
                ErrorKind::InvalidClaimFormat(c) => {
                    AuthError::Malformed(format!("claim {c} has the wrong type"))
                }
                // The header and payload decoded above: what is left is the signature.
                ErrorKind::Base64(_) => AuthError::BadSignature,
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    AuthError::Malformed("not base64url-encoded JSON".into())
                }
                _ => AuthError::BadSignature,
            }
        })?;
        let claims = checked.claims;
        let principal = claims.principal(&issuer.identity)?;
        if !self.required_roles.is_empty()
            && !self
                .required_roles
                .iter()
                .any(|r| principal.roles.contains(r) || principal.scopes.contains(r))
        {
            return Err(AuthError::MissingRole(self.required_roles.join(", ")));
        }
        Ok(Validated {
            exp: claims.exp.unwrap_or(0),
            principal,
            issuer: index,
            kid,
        })
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// The claims sluice reads (Entra v1 and v2 names).
#[derive(Deserialize, Default)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<u64>,
    nbf: Option<u64>,
    upn: Option<String>,
    preferred_username: Option<String>,
    unique_name: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    scp: Option<String>,
    #[serde(rename = "_claim_names")]
    claim_names: Option<serde_json::Value>,
}

impl Claims {
    /// The principal of a validated token, vouched for by `issuer`. A token that names no
    /// subject (neither `oid` nor `sub`) is refused: it could not be told from another.
    fn principal(&self, issuer: &str) -> Result<Principal, AuthError> {
        fn nonempty(claim: &Option<String>) -> Option<&str> {
            claim.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let id = match (nonempty(&self.oid), nonempty(&self.sub)) {
            (Some(oid), _) => format!("oid:{}", oid.to_ascii_lowercase()),
            (None, Some(sub)) => format!("sub:{sub}"),
            (None, None) => return Err(AuthError::MissingClaim("oid or sub".into())),
        };
        let name = [
            &self.upn,
            &self.preferred_username,
            &self.unique_name,
            &self.appid,
            &self.azp,
            &self.client_id,
        ]
        .into_iter()
        .find_map(|c| c.clone())
        .unwrap_or_else(|| id.clone());
        let groups_overage = self
            .claim_names
            .as_ref()
            .and_then(|c| c.get("groups"))
            .is_some();
        // An app acting as itself: no user, no delegated scopes.
        let app_only = self.scp.is_none() && self.upn.is_none();
        let app = app_only
            .then(|| {
                [&self.appid, &self.azp, &self.client_id]
                    .into_iter()
                    .find_map(|c| c.clone())
            })
            .flatten();
        Ok(Principal {
            id,
            name,
            upn: self.upn.clone(),
            app,
            tenant: self.tid.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            groups_overage,
            scopes: self
                .scp
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            issuer: issuer.to_string(),
        })
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed(format!("the {what} is not the expected JSON")))
}

fn audience_text(aud: Option<&serde_json::Value>) -> String {
    match aud {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(none)".into(),
    }
}

/// A claim value as it may appear in an error: bounded and printable.
fn quote(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        format!("\"{clean}…\"")
    } else {
        format!("\"{clean}\"")
    }
}

/// One trusted issuer and its key cache.
struct Issuer {
    /// As configured.
    url: String,
    /// What its principals name as their issuer: an Entra tenant's v2 issuer (its v1
    /// tokens are the same principals), else the URL as configured.
    identity: String,
    /// `iss` values this issuer stands for, without trailing slashes.
    accepted: Vec<String>,
    /// The Entra tenant in the issuer URL: tokens must carry the same `tid`.
    tenant: Option<String>,
    discovery_url: String,
    client: reqwest::Client,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    state: RwLock<KeyState>,
    /// One fetch in flight at a time.
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct KeyState {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

const ENTRA_V2_HOST: &str = "login.microsoftonline.com";
const ENTRA_V1_HOST: &str = "sts.windows.net";

impl Issuer {
    fn new(url: &str, settings: &OidcSettings, client: reqwest::Client) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("OIDC issuer {url:?}: {e}"))?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1");
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "OIDC issuer {url:?}: keys must be fetched over https (plain http only on loopback)"
                ))
            }
        }
        let tenant = parsed
            .path_segments()
            .and_then(|mut s| s.find(|seg| is_guid(seg)))
            .map(|t| t.to_ascii_lowercase());
        let base = url.trim_end_matches('/').to_string();
        let mut accepted = vec![base.clone()];
        let entra = host == ENTRA_V2_HOST || host == ENTRA_V1_HOST;
        let discovery_url = match (&tenant, entra) {
            (Some(tid), true) => {
                accepted.push(format!("https://{ENTRA_V1_HOST}/{tid}"));
                accepted.push(format!("https://{ENTRA_V2_HOST}/{tid}/v2.0"));
                // Both issuers of a tenant sign with the same keys.
                format!("https://{ENTRA_V2_HOST}/{tid}/v2.0/.well-known/openid-configuration")
            }
            _ => format!("{base}/.well-known/openid-configuration"),
        };
        accepted.dedup();
        let identity = match (&tenant, entra) {
            (Some(tid), true) => format!("https://{ENTRA_V2_HOST}/{tid}/v2.0"),
            _ => base.clone(),
        };
        Ok(Self {
            identity,
            url: url.to_string(),
            accepted,
            tenant,
            discovery_url,
            client,
            refresh_interval: settings.refresh_interval,
            min_refetch_interval: settings.min_refetch_interval,
            state: RwLock::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        })
    }

    fn accepts(&self, iss: &str) -> bool {
        let iss = iss.trim_end_matches('/');
        self.accepted.iter().any(|a| a.eq_ignore_ascii_case(iss))
    }

    fn lookup(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.keys.get(kid).cloned()
    }

    /// The key a token names, refetching the key set once if it is new to us.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let _flight = self.fetch_lock.lock().await;
        // Someone else's fetch may have brought it while we waited.
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let (recent, have_keys) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            (
                state
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < self.min_refetch_interval),
                !state.keys.is_empty(),
            )
        };
        if !recent {
            self.refresh().await;
        }
        let have_keys = have_keys || self.state.read().is_ok_and(|s| !s.keys.is_empty());
        self.lookup(kid).ok_or_else(|| {
            if have_keys {
                AuthError::UnknownKey(quote(kid))
            } else {
                AuthError::IssuerUnavailable(self.url.clone())
            }
        })
    }

    /// Fetch the key set now (the caller holds `fetch_lock`). Keeps the old keys on failure.
    async fn refresh(&self) -> bool {
        let jwks_uri = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.last_attempt = Some(Instant::now());
            state.jwks_uri.clone()
        };
        let result = async {
            let jwks_uri = match jwks_uri {
                Some(uri) => uri,
                None => self.discover().await?,
            };
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let body = self.get(&jwks_uri).await;
            if body.is_err() {
                // Discover again next time: the key set may have moved.
                self.state
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .jwks_uri = None;
            }
            let set: JwkSet = serde_json::from_slice(&body?)
                .map_err(|e| format!("{jwks_uri}: not a JWK set: {e}"))?;
            Ok::<_, String>(usable_keys(&set))
        }
        .await;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(keys) => {
                let removed: Vec<&String> = state
                    .keys
                    .keys()
                    .filter(|k| !keys.contains_key(*k))
                    .collect();
                let added: Vec<&String> = keys
                    .keys()
                    .filter(|k| !state.keys.contains_key(*k))
                    .collect();
                if !removed.is_empty() || !added.is_empty() {
                    tracing::info!(issuer = %self.url, ?added, ?removed, keys = keys.len(), "OIDC signing keys updated");
                }
                state.keys = keys;
                state.last_error = None;
                true
            }
            Err(error) => {
                tracing::warn!(issuer = %self.url, %error, "cannot fetch OIDC signing keys");
                state.last_error = Some(error);
                false
            }
        }
    }

    async fn discover(&self) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: Option<String>,
            jwks_uri: String,
        }
        let body = self.get(&self.discovery_url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{}: not an OpenID configuration: {e}", self.discovery_url))?;
        if let Some(issuer) = &doc.issuer {
            if !self.accepts(issuer) && !issuer.contains("{tenantid}") {
                tracing::warn!(configured = %self.url, discovered = %issuer, "the OIDC discovery document names another issuer");
            }
        }
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .jwks_uri = Some(doc.jwks_uri.clone());
        Ok(doc.jwks_uri)
    }

    /// GET with a bounded body.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(format!(
                "{url}: the response is larger than {MAX_BODY_BYTES} bytes"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!(
                    "{url}: the response is larger than {MAX_BODY_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Signing keys we can verify with: RSA (RS256) and P-256 (ES256), each with a `kid`.
fn usable_keys(set: &JwkSet) -> HashMap<String, (DecodingKey, Algorithm)> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), (key, alg));
            }
            Err(e) => tracing::warn!(%kid, error = %e, "skipping an unusable signing key"),
        }
    }
    keys
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "11111111-2222-3333-4444-555555555555";

    fn issuer(url: &str) -> Result<Issuer, String> {
        Issuer::new(url, &OidcSettings::default(), reqwest::Client::new())
    }

    #[test]
    fn entra_issuers_accept_both_forms_of_their_tenant() {
        let v2 = issuer(&format!("https://login.microsoftonline.com/{TID}/v2.0")).expect("ok");
        assert_eq!(v2.tenant.as_deref(), Some(TID));
        assert!(v2.accepts(&format!("https://sts.windows.net/{TID}/")));
        assert!(v2.accepts(&format!("https://login.microsoftonline.com/{TID}/v2.0")));
        assert!(!v2.accepts("https://sts.windows.net/99999999-2222-3333-4444-555555555555/"));
        let v1 = issuer(&format!("https://sts.windows.net/{TID}/")).expect("ok");
        assert!(v1.accepts(&format!("https://login.microsoftonline.com/{TID}/v2.0")));
        assert!(v1
            .discovery_url
            .starts_with("https://login.microsoftonline.com/"));
    }

    #[test]
    fn a_principal_is_its_issuer_and_subject() {
        // v1 and v2 tokens of a tenant are the same principals.
        let v1 = issuer(&format!("https://sts.windows.net/{TID}/")).expect("ok");
        let v2 = issuer(&format!("https://login.microsoftonline.com/{TID}/v2.0")).expect("ok");
        assert_eq!(v1.identity, v2.identity);
        let claims = |oid: Option<&str>, sub: Option<&str>| Claims {
            oid: oid.map(Into::into),
            sub: sub.map(Into::into),
            preferred_username: Some("svc".into()),
            azp: Some("app-1".into()),
            ..Claims::default()
        };
        let p = claims(Some("AAAA-1"), Some("s"))
            .principal(&v2.identity)
            .expect("oid");
        assert_eq!(
            (p.id.as_str(), p.issuer.as_str()),
            ("oid:aaaa-1", v2.identity.as_str())
        );
        assert_eq!(p.name, "svc");
        assert_eq!(p.app.as_deref(), Some("app-1"));
        assert!(!p.is_static());
        let p = claims(None, Some("s-1"))
            .principal("https://idp")
            .expect("sub");
        assert_eq!(p.id, "sub:s-1");
        // No subject: refused, never an empty id shared by everyone.
        for (oid, sub) in [(None, None), (Some(""), Some(" "))] {
            assert_eq!(
                claims(oid, sub).principal("https://idp"),
                Err(AuthError::MissingClaim("oid or sub".into()))
            );
        }
        // A user acting through an app is not the app.
        let delegated = Claims {
            scp: Some("user_impersonation".into()),
            ..claims(Some("u"), None)
        };
        assert_eq!(delegated.principal("https://idp").expect("ok").app, None);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(issuer("http://127.0.0.1:8700/x/v2.0").is_ok());
        let err = issuer("http://idp.example.com/x").err().expect("refused");
        assert!(err.contains("https"), "{err}");
        assert!(issuer("not a url").is_err());
    }

    #[test]
    fn guids() {
        assert!(is_guid(TID));
        assert!(!is_guid("v2.0"));
        assert!(!is_guid("11111111-2222-3333-4444-55555555555g"));
    }

    #[test]
    fn quoted_claims_are_bounded_and_printable() {
        assert_eq!(quote("a\nb"), "\"ab\"");
        assert!(quote(&"x".repeat(1000)).len() < MAX_QUOTED + 10);
    }

    /// A fixed P-256 key for the fuzz target's own tokens (a test key, nothing else).
    const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxah+j5D6lF58565O
6ZU/q5iZgeBPmJ/mt1T9rBJAFHOhRANCAAQgwES116l5R1Qjo04/yezpBmC+aSAt
JUuwWy8noOyK3Qz78GRQIXjBECMSSPwIShUr5InKNgygxlWgzzZ8u82P
-----END PRIVATE KEY-----
";
    const TEST_KEY_X: &str = "IMBEtdepeUdUI6NOP8ns6QZgvmkgLSVLsFsvJ6Dsit0";
    const TEST_KEY_Y: &str = "DPvwZFAheMEQIxJI_AhKFSvkico2DKDGVaDPNny7zY8";

    /// A claim value of any JSON shape.
    fn json_value(rng: &mut fuzz::StdRng, depth: usize) -> serde_json::Value {
        use fuzz::Rng;
        use serde_json::{json, Value};
        match rng.random_range(0..if depth > 4 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => json!(rng.random::<bool>()),
            2 => json!(rng.random::<i64>()),
            3 => json!(rng.random::<f64>()),
            4 => {
                let longest = if rng.random_ratio(1, 20) { 70_000 } else { 40 };
                json!("x".repeat(rng.random_range(0..longest)))
            }
            5 => json!(["Warehouse.Read", "", "\u{0}"][rng.random_range(0..3)]),
            6 => Value::Array(
                (0..rng.random_range(0..8))
                    .map(|_| json_value(rng, depth + 1))
                    .collect(),
            ),
            7 => Value::Object(
                (0..rng.random_range(0..5))
                    .map(|i| (format!("k{i}"), json_value(rng, depth + 1)))
                    .collect(),
            ),
            _ => json!(unix_now() as i64 + rng.random_range(-7200..7200)),
        }
    }

    /// Tokens: signed with the issuer's key (claims of every shape, so the checks after the
    /// signature run), their bytes mutated, or any text with two dots.
    #[test]
    fn fuzz_token_parser() {
        use fuzz::Rng;
        let issuer = format!("http://127.0.0.1:1/{TID}/v2.0");
        let oidc = Oidc::new(OidcSettings {
            issuers: vec![issuer.clone()],
            audiences: vec!["api://warehouse".into()],
            min_refetch_interval: Duration::from_secs(3600),
            ..OidcSettings::default()
        })
        .expect("oidc");
        {
            let key = DecodingKey::from_ec_components(TEST_KEY_X, TEST_KEY_Y).expect("key");
            let mut state = oidc.issuers[0].state.write().expect("state");
            state.keys.insert("k1".into(), (key, Algorithm::ES256));
            // A key set is held and was fetched just now: an unknown kid costs no fetch.
            state.last_attempt = Some(Instant::now());
        }
        let signing = jsonwebtoken::EncodingKey::from_ec_pem(TEST_KEY_PEM.as_bytes()).expect("pem");
        let sign = |claims: &serde_json::Value, kid: &str| {
            let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
            header.kid = Some(kid.into());
            jsonwebtoken::encode(&header, claims, &signing).expect("signs")
        };
        let now = unix_now() as i64;
        let good = serde_json::json!({
            "iss": issuer, "aud": "api://warehouse", "tid": TID, "oid": "o-1", "sub": "s-1",
            "exp": now + 600, "nbf": now - 10, "roles": ["Warehouse.Read"], "groups": ["g"],
            "scp": "a b", "upn": "u@x", "azp": "app",
        });
        let seeds: Vec<Vec<u8>> = vec![
            sign(&good, "k1").into_bytes(),
            sign(&good, "other").into_bytes(),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let report = fuzz::generated(
            "token_parser",
            |rng| match rng.random_range(0..3) {
                0 => {
                    let mut claims = good.clone();
                    for _ in 0..rng.random_range(1..4) {
                        let keys = [
                            "iss",
                            "aud",
                            "tid",
                            "oid",
                            "sub",
                            "exp",
                            "nbf",
                            "roles",
                            "groups",
                            "scp",
                            "upn",
                            "azp",
                            "_claim_names",
                            "extra",
                        ];
                        let key = keys[rng.random_range(0..keys.len())];
                        if rng.random_ratio(1, 4) {
                            claims.as_object_mut().expect("object").remove(key);
                        } else {
                            claims[key] = json_value(rng, 0);
                        }
                    }
                    sign(&claims, "k1")
                }
                1 => String::from_utf8_lossy(&fuzz::mutated(rng, &seeds)).into_owned(),
                _ => {
                    let part = |rng: &mut fuzz::StdRng| {
                        let bytes = fuzz::mutated(rng, &seeds);
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).replace('.', "")
                    };
                    format!("{}.{}.{}", part(rng), part(rng), part(rng))
                }
            },
            |token| {
                let result = runtime.block_on(oidc.validate(token));
                // Whatever it says, it never repeats the token back.
                if let Err(e) = result {
                    let message = e.to_string();
                    assert!(
                        token.len() < 24 || !message.contains(token.as_str()),
                        "{message}"
                    );
                }
            },
        );
        assert!(report.runs > 0);
    }
}

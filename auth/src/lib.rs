//! # auth — who is asking, and what they may read
//!
//! Turns the token a client presents (as a pg password, a Flight SQL bearer token or a
//! Databricks access token) into a [`Principal`], and answers whether a principal may read
//! a table ([`Grants`]). Every front-end authenticates through
//! [`Authenticator::authenticate`]; none of them looks at a token itself.
//!
//! ```text
//!  token ──► Authenticator ──► static tokens (SHA-256 hashes, constant-time compare)
//!                 │       └──► token cache (SHA-256 → principal, until `exp`)
//!                 └──────────► OIDC issuers (Entra ID v1/v2 or any OIDC provider):
//!                              discovery → JWKS cache (refetch on unknown kid, single
//!                              flight, rate-limited) → RS256/ES256 signature, iss, tid,
//!                              aud, exp/nbf (60 s skew), required roles
//!        ◄── Principal { issuer, id, name, roles, groups, … }  or  AuthError (reason, never
//!            the token)
//! ```
//!
//! Tokens never appear in errors or logs: use [`fingerprint`] to refer to one.

mod grants;
mod oidc;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use grants::{
    check_principal_name, names, Grant, GrantError, Grants, GrantsVersion, TableName, MANAGE,
    MONITOR,
};
pub use oidc::{IssuerStats, OidcSettings};

/// The authenticated identity a session acts as: who vouched for it ([`Principal::issuer`])
/// and the subject it vouched for ([`Principal::id`]). Two principals are the same only
/// when both agree ([`Principal::key`]); grants and routing rules name principals by kind
/// ([`grants::names`]), so a token's claims can never pass for a static token's name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// The subject, with its kind: `oid:<object id>` (Entra), `sub:<subject>` (other
    /// OIDC providers, or Entra tokens without `oid`), `token:<name>` (static tokens).
    pub id: String,
    /// Human-readable name for logs and query history (`upn`, `preferred_username`,
    /// `appid`, `azp`, else the id).
    pub name: String,
    /// Entra tenant (`tid`), when the token has one.
    pub tenant: Option<String>,
    /// App roles (`roles`); grants may be given to roles.
    pub roles: Vec<String>,
    /// Group object ids (`groups`); grants may be given to groups.
    pub groups: Vec<String>,
    /// The token said the principal is in more groups than fit in it (Entra's groups
    /// overage). Its `groups` are then incomplete: grants to groups do not see them.
    pub groups_overage: bool,
    /// Delegated scopes (`scp`).
    pub scopes: Vec<String>,
    /// Who vouched for the principal: the configured issuer that accepted the token (an
    /// Entra tenant's v1 and v2 tokens both count as its v2 issuer), or [`STATIC_ISSUER`].
    pub issuer: String,
    /// The `upn` claim (Entra user tokens), for grants that name `upn:…`.
    pub upn: Option<String>,
    /// The client id of an app-only token (client credentials: `appid`/`azp`/`client_id`
    /// with no delegated scopes), for grants that name `app:…`.
    pub app: Option<String>,
}

/// The issuer of static (service and development) tokens.
pub const STATIC_ISSUER: &str = "static";

impl Principal {
    /// A principal of a static (service or development) token.
    pub fn service(name: &str, roles: &[&str]) -> Self {
        Self {
            id: format!("token:{name}"),
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            issuer: STATIC_ISSUER.into(),
            ..Self::default()
        }
    }

    /// Whether a static token (the operator's own) stands for it.
    pub fn is_static(&self) -> bool {
        self.issuer == STATIC_ISSUER
    }

    /// One string for (issuer, subject): what ownership, history and `system.queries`
    /// compare.
    pub fn key(&self) -> String {
        if self.is_static() {
            self.id.clone()
        } else {
            format!("{}@{}", self.id, self.issuer)
        }
    }
}

/// Why a token was refused. The message is safe to show to the client: it names the
/// reason, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token was presented")]
    Missing,
    #[error("the token is too long ({0} bytes; at most {MAX_TOKEN_BYTES})")]
    TooLong(usize),
    #[error("the token is neither a known service token nor a JWT")]
    UnknownToken,
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("tokens signed with {0} are not accepted (RS256 or ES256 only)")]
    Algorithm(String),
    #[error("JWT access tokens are not accepted: no OIDC issuer is configured (--oidc-issuer)")]
    NoIssuers,
    #[error("the token's issuer {0} is not trusted")]
    UntrustedIssuer(String),
    #[error("the token's tenant {0} is not the issuer's tenant")]
    WrongTenant(String),
    #[error("the token was signed with key {0}, which its issuer does not publish")]
    UnknownKey(String),
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token expired {0} s ago")]
    Expired(u64),
    #[error("the token is not valid yet (nbf is {0} s in the future)")]
    NotYetValid(u64),
    #[error("the token's audience {0} is not this server's (expected {1})")]
    WrongAudience(String, String),
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token carries none of the required roles or scopes ({0})")]
    MissingRole(String),
    #[error("the signing keys of {0} cannot be fetched right now; try again shortly")]
    IssuerUnavailable(String),
}

impl AuthError {
    /// A short word for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::TooLong(_) => "too_long",
            Self::UnknownToken => "unknown_token",
            Self::Malformed(_) => "malformed",
            Self::Algorithm(_) => "algorithm",
            Self::NoIssuers => "no_issuers",
            Self::UntrustedIssuer(_) => "untrusted_issuer",
            Self::WrongTenant(_) => "wrong_tenant",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired(_) => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::WrongAudience(..) => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::MissingRole(_) => "missing_role",
            Self::IssuerUnavailable(_) => "issuer_unavailable",
        }
    }

    /// The server, not the token, is at fault (the issuer's keys are out of reach): the
    /// client may retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::IssuerUnavailable(_))
    }
}

/// Longest token we look at (a pg password message may be 64 KiB). Entra access tokens
/// with many groups stay well below this; anything larger is refused before it is hashed
/// or parsed.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Most validated tokens kept; beyond it the expired ones go, then all of them.
const MAX_CACHED_TOKENS: usize = 100_000;

/// A service or development token, kept only as its SHA-256 hash.
#[derive(Clone)]
pub struct StaticToken {
    hash: [u8; 32],
    principal: Principal,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl StaticToken {
    /// A static token from its clear text (the hash is all that is kept).
    pub fn from_secret(secret: &str, principal: Principal) -> Self {
        Self {
            hash: sha256(secret.trim().as_bytes()),
            principal,
        }
    }

    /// A static token from a hex SHA-256 hash, as written in the config file.
    pub fn from_hash_hex(hash_hex: &str, principal: Principal) -> Result<Self, String> {
        let bytes = hex::decode(hash_hex.trim()).map_err(|e| format!("bad token hash: {e}"))?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a token hash is 64 hex digits (SHA-256)".to_string())?;
        Ok(Self { hash, principal })
    }
}

/// A validated JWT, remembered until it expires.
struct Cached {
    principal: Principal,
    /// Unix seconds.
    exp: u64,
    issuer: usize,
    kid: String,
}

/// Validates tokens. Cheap to share (`Arc`) between all front-ends.
pub struct Authenticator {
    static_tokens: Vec<StaticToken>,
    oidc: Option<oidc::Oidc>,
    cache: RwLock<HashMap<[u8; 32], Cached>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("static_tokens", &self.static_tokens.len())
            .field("oidc", &self.oidc.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Static tokens only.
    pub fn new(static_tokens: Vec<StaticToken>) -> Self {
        Self {
            static_tokens,
            oidc: None,
            cache: RwLock::default(),
        }
    }

    /// Static tokens and OIDC issuers. Fails on a setting that cannot work (no audience, a
    /// plain-HTTP issuer that is not on loopback, …); fetches nothing yet.
    pub fn with_oidc(
        static_tokens: Vec<StaticToken>,
        settings: OidcSettings,
    ) -> Result<Self, String> {
        let oidc = if settings.issuers.is_empty() {
            None
        } else {
            Some(oidc::Oidc::new(settings)?)
        };
        Ok(Self {
            static_tokens,
            oidc,
            cache: RwLock::default(),
        })
    }

    /// Fetch every issuer's keys now and keep them fresh in the background. Needs a tokio
    /// runtime; without it keys are fetched when the first token arrives.
    pub fn start_refresh(self: &Arc<Self>) {
        if let Some(oidc) = &self.oidc {
            oidc.start_refresh();
        }
    }

    /// Per-issuer key fetch counts (for metrics and tests).
    pub fn issuer_stats(&self) -> Vec<IssuerStats> {
        self.oidc.as_ref().map(|o| o.stats()).unwrap_or_default()
    }

    /// The principal a token stands for, or why it was refused.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong(token.len()));
        }
        let presented = sha256(token.as_bytes());
        if let Some(principal) = self.static_token(&presented) {
            return Ok(principal);
        }
        if let Some(principal) = self.cached(&presented) {
            return Ok(principal);
        }
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(AuthError::UnknownToken);
        }
        let oidc = self.oidc.as_ref().ok_or(AuthError::NoIssuers)?;
        let valid = oidc.validate(token).await?;
        self.remember(presented, &valid);
        Ok(valid.principal)
    }

    /// Whether `text` is one of the static tokens (to keep it out of what is recorded).
    pub fn is_static_token(&self, text: &str) -> bool {
        let text = text.trim();
        !text.is_empty()
            && text.len() <= MAX_TOKEN_BYTES
            && !self.static_tokens.is_empty()
            && self.static_token(&sha256(text.as_bytes())).is_some()
    }

    fn static_token(&self, presented: &[u8; 32]) -> Option<Principal> {
        // Compare against every entry, without an early exit, so the time taken does not
        // tell which entry (if any) nearly matched.
        let mut found: Option<&StaticToken> = None;
        for entry in &self.static_tokens {
            if bool::from(entry.hash.ct_eq(presented)) {
                found = Some(entry);
            }
        }
        found.map(|entry| entry.principal.clone())
    }

    fn cached(&self, presented: &[u8; 32]) -> Option<Principal> {
        let now = unix_now();
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(presented)?;
        // A token signed by a key its issuer no longer publishes is validated again (and
        // refused): rotation must not leave old tokens working from the cache.
        let key_current = self
            .oidc
            .as_ref()
            .is_some_and(|o| o.has_key(entry.issuer, &entry.kid));
        (entry.exp > now && key_current).then(|| entry.principal.clone())
    }

    fn remember(&self, presented: [u8; 32], valid: &oidc::Validated) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_TOKENS {
            let now = unix_now();
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(
            presented,
            Cached {
                principal: valid.principal.clone(),
                exp: valid.exp,
                issuer: valid.issuer,
                kid: valid.kid.clone(),
            },
        );
    }
}

/// A random token suitable as a development or service token (URL- and shell-safe).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

const TOKEN_PREFIX: &str = "sluice_";

/// Whether text has the shape of a token [`generate_token`] makes.
pub fn looks_like_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A short, non-reversible name for a token, for logs ("sha256:1a2b3c4d5e6f").
pub fn fingerprint(token: &str) -> String {
    format!(
        "sha256:{}",
        &hex::encode(sha256(token.trim().as_bytes()))[..12]
    )
}

/// The hex SHA-256 of a token, as `[[auth.tokens]]` entries store it.
pub fn token_hash_hex(token: &str) -> String {
    hex::encode(sha256(token.trim().as_bytes()))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Principal {
        Principal::service("dev", &["admin"])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn static_token_round_trip() {
        let token = generate_token();
        let auth = Authenticator::new(vec![StaticToken::from_secret(&token, dev())]);
        block_on(async {
            assert_eq!(auth.authenticate(&token).await, Ok(dev()));
            assert_eq!(auth.authenticate(&format!(" {token}\n")).await, Ok(dev()));
            assert_eq!(
                auth.authenticate("nope").await,
                Err(AuthError::UnknownToken)
            );
            assert_eq!(auth.authenticate("").await, Err(AuthError::Missing));
            assert_eq!(auth.authenticate("a.b.c").await, Err(AuthError::NoIssuers));
            let huge = "x".repeat(MAX_TOKEN_BYTES + 1);
            assert_eq!(
                auth.authenticate(&huge).await,
                Err(AuthError::TooLong(MAX_TOKEN_BYTES + 1))
            );
        });
    }

    #[test]
    fn hash_from_config() {
        let token = "service-secret";
        let entry = StaticToken::from_hash_hex(&token_hash_hex(token), dev()).expect("valid");
        let auth = Authenticator::new(vec![entry]);
        assert!(block_on(auth.authenticate(token)).is_ok());
        assert!(StaticToken::from_hash_hex("abcd", dev()).is_err());
    }

    #[test]
    fn fingerprint_does_not_contain_token() {
        let token = generate_token();
        let fp = fingerprint(&token);
        assert!(!fp.contains(&token[7..20]));
        assert_eq!(fp.len(), "sha256:".len() + 12);
    }
}

//! # auth — who is asking
//!
//! Turns the token a client presents (as a pg password, a Flight SQL bearer token or a
//! Databricks access token) into a [`Principal`]. Every front-end authenticates through
//! [`Authenticator::authenticate`]; none of them looks at a token itself.
//!
//! ```text
//!  token ──► Authenticator ──► static tokens (SHA-256 hashes, constant-time compare)
//!                         └──► (OIDC / Entra ID JWT validation: the auth issue)
//!        ◄── Principal { id, name, roles }  or  AuthError (reason, never the token)
//! ```
//!
//! Tokens never appear in errors or logs: use [`fingerprint`] to refer to one.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The authenticated identity a session acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable identifier (Entra `oid`, else `sub`; for static tokens the configured name).
    pub id: String,
    /// Human-readable name for logs and query history.
    pub name: String,
    /// Roles the principal holds; grants may be given to roles.
    pub roles: Vec<String>,
}

/// Why a token was refused. The message is safe to show to the client: it names the
/// reason, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token was presented")]
    Missing,
    #[error("the token is not valid for this server")]
    UnknownToken,
    #[error("the token is too long ({0} bytes; at most {MAX_TOKEN_BYTES})")]
    TooLong(usize),
}

/// Longest token we look at. Entra access tokens with many groups stay well below this;
/// anything larger is refused before it is hashed or parsed.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

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
            hash: sha256(secret.as_bytes()),
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

/// Validates tokens. Cheap to share (`Arc`) between all front-ends.
#[derive(Debug, Default)]
pub struct Authenticator {
    static_tokens: Vec<StaticToken>,
}

impl Authenticator {
    pub fn new(static_tokens: Vec<StaticToken>) -> Self {
        Self { static_tokens }
    }

    /// The principal a token stands for, or why it was refused.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong(token.len()));
        }
        let presented = sha256(token.as_bytes());
        // Compare against every entry, without an early exit, so the time taken does not
        // tell which entry (if any) nearly matched.
        let mut found: Option<&StaticToken> = None;
        for entry in &self.static_tokens {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found
            .map(|entry| entry.principal.clone())
            .ok_or(AuthError::UnknownToken)
    }
}

/// A random token suitable as a development or service token (URL- and shell-safe).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sluice_{}", hex::encode(bytes))
}

/// A short, non-reversible name for a token, for logs ("token sha256:1a2b3c4d").
pub fn fingerprint(token: &str) -> String {
    format!("sha256:{}", &hex::encode(sha256(token.as_bytes()))[..12])
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Principal {
        Principal {
            id: "dev".into(),
            name: "dev".into(),
            roles: vec!["admin".into()],
        }
    }

    #[test]
    fn static_token_round_trip() {
        let token = generate_token();
        let auth = Authenticator::new(vec![StaticToken::from_secret(&token, dev())]);
        assert_eq!(auth.authenticate(&token), Ok(dev()));
        assert_eq!(auth.authenticate(&format!(" {token}\n")), Ok(dev()));
        assert_eq!(auth.authenticate("nope"), Err(AuthError::UnknownToken));
        assert_eq!(auth.authenticate(""), Err(AuthError::Missing));
        let huge = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            auth.authenticate(&huge),
            Err(AuthError::TooLong(MAX_TOKEN_BYTES + 1))
        );
    }

    #[test]
    fn hash_from_config() {
        let token = "service-secret";
        let hash = hex::encode(sha256(token.as_bytes()));
        let entry = StaticToken::from_hash_hex(&hash, dev()).expect("valid hash");
        let auth = Authenticator::new(vec![entry]);
        assert!(auth.authenticate(token).is_ok());
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

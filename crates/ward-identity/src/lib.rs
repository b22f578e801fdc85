//! Who a caller is, when it is a person: roles, built-in users, sign-in tokens.
//!
//! Owns: built-in users and their
//! Argon2id passwords ([`users`], [`password`]); logins and their throttling ([`login`]);
//! Ward's own short-lived tokens ([`tokens`]); OIDC bearer tokens of a configured issuer
//! ([`oidc`]). [`Identity::verify_bearer`] turns any bearer token into a [`SignedIn`].
//! Deliberately does not: decide what a role may do (that is the API's policy table), or
//! know HTTP beyond fetching an issuer's keys.

pub mod login;
pub mod oidc;
pub mod password;
pub mod tokens;
pub mod users;

pub use login::{LoginError, Logins};
pub use oidc::{ClaimMapping, OidcSettings, OidcVerifier};
pub use tokens::{IssuedToken, WARD_ISSUER, WardTokens};
pub use users::{User, UserChange, UserError, Users};
pub use ward_domain::{Link, Role};

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ward_domain::ProviderId;
use ward_store::{StoreError, Table};

/// How a person signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// A built-in user's password (a token of Ward's own).
    Password,
    /// A token of the configured OpenID provider.
    Oidc,
}

impl SignInMethod {
    /// The method's name in `GET /v1/me` and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Oidc => "oidc",
        }
    }
}

/// A person whose token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The provider.
    pub provider: ProviderId,
    /// The user id (built-in users) or the issuer's `sub`.
    pub subject: String,
    /// The role.
    pub role: Role,
    /// What the role is linked to.
    pub link: Link,
    /// How it signed in.
    pub method: SignInMethod,
    /// When the token expires (Unix seconds).
    pub expires_at: i64,
}

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;

/// Every way a person signs in.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Built-in users.
    pub users: Users,
    /// Their logins.
    pub logins: Logins,
    /// Ward's own tokens.
    pub tokens: WardTokens,
    /// The configured OpenID provider, if any.
    pub oidc: Option<Arc<OidcVerifier>>,
}

impl Identity {
    /// Built-in users of `table` with tokens of `token_ttl_seconds`, and optionally an
    /// OpenID provider.
    pub fn new(table: Arc<dyn Table>, token_ttl_seconds: i64, oidc: Option<OidcSettings>) -> Self {
        let users = Users::new(table.clone());
        let tokens = WardTokens::new(table, token_ttl_seconds);
        Self {
            logins: Logins::new(users.clone(), tokens.clone()),
            users,
            tokens,
            oidc: oidc.map(|settings| Arc::new(OidcVerifier::new(settings))),
        }
    }

    /// The person a bearer JWT names, if it verifies: Ward's own tokens by their issuer,
    /// the configured OpenID provider's by its. `Ok(None)` for anything else (logged with
    /// the reason, never the token).
    pub async fn verify_bearer(&self, token: &str) -> Result<Option<SignedIn>, StoreError> {
        match unverified_issuer(token).as_deref() {
            Some(WARD_ISSUER) => self.tokens.verify(token, DEFAULT_LEEWAY_SECONDS).await,
            Some(issuer) => match &self.oidc {
                Some(oidc) if oidc.issuer() == issuer => match oidc.verify(token).await {
                    Ok(signed_in) => Ok(Some(signed_in)),
                    Err(refusal) => {
                        tracing::warn!(%refusal, "OIDC token refused");
                        Ok(None)
                    }
                },
                _ => {
                    tracing::warn!("bearer token of an issuer that is not configured");
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }
}

/// Whether a bearer token has a JWT's shape (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() <= 16 * 1024
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The `iss` a JWT claims, before any check: only to pick which issuer's rules to check
/// it by. Nothing else is read from an unverified token.
fn unverified_issuer(token: &str) -> Option<String> {
    if !looks_like_jwt(token) {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests;

//! Who a request comes from: the one extractor every authenticated route takes. It reads
//! the `Authorization` header once: the operator key, or a provider's API key (checked
//! against its stored hash); anything else is refused with 401 before the handler runs.
//! A route then asks for what it needs: [`Principal::provider`] (a provider's routes),
//! [`Principal::operator`] (operator routes), [`Principal::actor`] (the audit trail's
//! name for the caller). The next step of access control (roles) extends this type.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;
use ward_domain::ProviderId;
use ward_emr::Actor;
use ward_ports::tenants::{hash_secret, is_key_id};

use crate::AppState;
use crate::problem::ApiError;

/// What the credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A provider's API key.
    ProviderKey {
        /// The tenant.
        provider: ProviderId,
        /// The key's id (never its secret).
        key_id: String,
    },
    /// The operator key.
    Operator,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The credentials the request carried.
    pub credential: Credential,
    /// The request id, if the client sent a well-formed one.
    pub request_id: Option<String>,
    /// The client's address.
    pub client_address: Option<String>,
    /// The route template, for the log line of a refusal.
    route: String,
}

impl Principal {
    /// The provider of a provider key; any other caller is refused (401, as for an
    /// unknown key: a provider route does not say which keys exist).
    pub fn provider(&self) -> Result<&ProviderId, ApiError> {
        match &self.credential {
            Credential::ProviderKey { provider, .. } => Ok(provider),
            Credential::Operator => Err(refuse(&self.route, "unknown key")),
        }
    }

    /// Succeeds for the operator key; any other caller is refused (401).
    pub fn operator(&self) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Operator => Ok(()),
            Credential::ProviderKey { .. } => Err(refuse(&self.route, "not the operator key")),
        }
    }

    /// The caller as the audit trail names it (a provider key only).
    pub fn actor(&self) -> Result<Actor, ApiError> {
        let Credential::ProviderKey { provider, key_id } = &self.credential else {
            return Err(refuse(&self.route, "unknown key"));
        };
        Ok(Actor {
            provider: provider.clone(),
            actor: format!("key:{key_id}"),
            request_id: self.request_id.clone(),
            client_address: self.client_address.clone(),
        })
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("?", |path| path.as_str())
            .to_owned();
        let token = bearer(parts).ok_or_else(|| refuse(&route, "missing key"))?;
        let credential = if is_operator_key(state, token) {
            Credential::Operator
        } else {
            match state.tenants.verify_key(token).await? {
                Some(provider) => Credential::ProviderKey {
                    provider,
                    // `ward.{provider}.{keyId}.{secret}`: verified, so the id is well formed.
                    key_id: token
                        .split('.')
                        .nth(2)
                        .filter(|id| is_key_id(id))
                        .unwrap_or("unknown")
                        .to_owned(),
                },
                None => return Err(refuse(&route, "unknown key")),
            }
        };
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(str::to_owned);
        let client_address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(Self {
            credential,
            request_id,
            client_address,
            route,
        })
    }
}

/// Whether the token is the operator key (compared by hash, in constant time).
fn is_operator_key(state: &AppState, token: &str) -> bool {
    let given = hash_secret(token);
    state
        .operator_key_hash
        .as_bytes()
        .ct_eq(given.as_bytes())
        .into()
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn refuse(route: &str, why: &'static str) -> ApiError {
    tracing::warn!(route, why, "request refused: unauthenticated");
    ApiError::Unauthorized
}

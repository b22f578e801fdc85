//! Who a request comes from: the one extractor every authenticated route takes. It reads
//! the `Authorization` header once: the operator key, or a provider's API key (checked
//! against its stored hash); anything else is refused with 401 before the handler runs.
//! Then the route's rule in the [`policy`](crate::policy) decides, before the handler
//! runs too: a route without a rule is refused, a provider route refuses the operator and
//! an operator route a provider (401, as for an unknown key: neither learns which
//! credentials exist), and a role the rule does not name is refused with 403.
//! A route then asks for what it needs: [`Principal::provider`] (a provider's routes),
//! [`Principal::operator`] (operator routes), [`Principal::actor`] (the audit trail's
//! name for the caller).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;
use ward_domain::ProviderId;
use ward_emr::Actor;
use ward_ports::tenants::hash_secret;

use crate::AppState;
use crate::policy::{self, Admits, Role, Scope};
use crate::problem::ApiError;

/// What the credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A provider's API key: a full key (acts as its administrator) or a machine client's
    /// scoped key.
    ProviderKey {
        /// The tenant.
        provider: ProviderId,
        /// The key's id (never its secret).
        key_id: String,
        /// A scoped key's scopes (`None`: a full key). A scope Ward does not know is left
        /// out: it grants nothing.
        scopes: Option<Vec<Scope>>,
    },
    /// The operator key.
    Operator,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The credentials the request carried.
    pub credential: Credential,
    /// The role it acts in (`None` for the operator). A provider's API key acts as
    /// [`Role::ProviderAdmin`].
    pub role: Option<Role>,
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
        let Credential::ProviderKey {
            provider, key_id, ..
        } = &self.credential
        else {
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
                Some(key) => Credential::ProviderKey {
                    provider: key.provider,
                    key_id: key.key_id,
                    scopes: key
                        .scopes
                        .map(|scopes| scopes.iter().filter_map(|s| Scope::parse(s)).collect()),
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
        let role = match &credential {
            Credential::ProviderKey { scopes: None, .. } => Some(Role::ProviderAdmin),
            Credential::ProviderKey {
                scopes: Some(_), ..
            }
            | Credential::Operator => None,
        };
        admit(parts.method.as_str(), &route, &credential, role)?;
        Ok(Self {
            credential,
            role,
            request_id,
            client_address,
            route,
        })
    }
}

/// The policy's answer for this route and caller.
fn admit(
    method: &str,
    route: &str,
    credential: &Credential,
    role: Option<Role>,
) -> Result<(), ApiError> {
    let Some(rule) = policy::rule_for(method, route) else {
        tracing::warn!(
            method,
            route,
            "request refused: the route has no policy entry"
        );
        return Err(ApiError::Forbidden(
            "the route has no entry in the access policy",
        ));
    };
    match (rule.admits, credential) {
        (Admits::Anyone | Admits::SignedUrl | Admits::Authenticated, _) => Ok(()),
        (Admits::Operator, Credential::Operator) => Ok(()),
        (Admits::Operator, Credential::ProviderKey { .. }) => {
            Err(refuse(route, "not the operator key"))
        }
        (Admits::Provider { .. }, Credential::Operator) => Err(refuse(route, "unknown key")),
        (Admits::Provider { roles, scope }, Credential::ProviderKey { scopes, .. }) => {
            let allowed = match scopes {
                None => role.is_some_and(|role| roles.contains(&role)),
                Some(scopes) => scope.is_some_and(|scope| scopes.contains(&scope)),
            };
            if allowed {
                Ok(())
            } else {
                tracing::warn!(method, route, role = ?role.map(Role::as_str), "request refused: the policy does not allow it");
                Err(ApiError::Forbidden(
                    "the caller's role or the key's scopes do not allow this",
                ))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Credential {
        Credential::ProviderKey {
            provider: ProviderId::parse("PROV001").unwrap(),
            key_id: "abc".into(),
            scopes: None,
        }
    }

    fn scoped(scopes: &[Scope]) -> Credential {
        Credential::ProviderKey {
            provider: ProviderId::parse("PROV001").unwrap(),
            key_id: "abc".into(),
            scopes: Some(scopes.to_vec()),
        }
    }

    #[test]
    fn the_policy_decides_before_the_handler() {
        let admin = Some(Role::ProviderAdmin);
        assert!(admit("GET", "/v1/audit", &key(), admin).is_ok());
        // The router's parameter names differ from the document's; the rule still applies.
        assert!(admit("GET", "/v1/uploads/{upload_id}", &key(), admin).is_ok());
        assert!(matches!(
            admit("GET", "/v1/audit", &key(), Some(Role::Clinician)),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            admit(
                "POST",
                "/v1/patients/{mrn}/clinical-records",
                &key(),
                Some(Role::FrontDesk)
            ),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            admit("DELETE", "/v1/audit", &key(), admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            admit("GET", "/v1/patients/{mrn}", &Credential::Operator, None),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            admit("GET", "/v1/admin/dlq", &key(), admin),
            Err(ApiError::Unauthorized)
        ));
        assert!(admit("GET", "/v1/admin/dlq", &Credential::Operator, None).is_ok());
        // A scoped key: its scopes, nothing else, and never the keys.
        let uploader = scoped(&[Scope::UploadsWrite]);
        assert!(admit("POST", "/v1/uploads", &uploader, None).is_ok());
        for (method, route) in [
            ("GET", "/v1/uploads"),
            ("GET", "/v1/audit"),
            ("GET", "/v1/keys"),
        ] {
            assert!(
                matches!(
                    admit(method, route, &uploader, None),
                    Err(ApiError::Forbidden(_))
                ),
                "{method} {route}"
            );
        }
        assert!(admit("GET", "/v1/me", &scoped(&[]), None).is_ok());
    }
}

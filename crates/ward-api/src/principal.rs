//! Who a request comes from: the one extractor every authenticated route takes. It reads
//! the `Authorization` header once: the operator key, a provider's API key (checked
//! against its stored hash), or a person's bearer token (a JWT: Ward's own, from a built-in
//! user's login, or the configured OpenID provider's); anything else is refused with 401
//! before the handler runs.
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
use ward_domain::Link;
use ward_domain::ProviderId;
use ward_emr::Actor;
use ward_identity::SignInMethod;
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
    /// A person of a provider, signed in (its role is the principal's).
    User {
        /// The tenant.
        provider: ProviderId,
        /// The user id (built-in) or the OpenID provider's subject.
        subject: String,
        /// How it signed in.
        method: SignInMethod,
        /// What its role is linked to.
        link: Link,
    },
    /// The operator key.
    Operator,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The credentials the request carried.
    pub credential: Credential,
    /// The role it acts in (`None` for the operator and scoped keys). A provider's full
    /// API key acts as [`Role::ProviderAdmin`]; a person in the role it signed in with.
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
            Credential::ProviderKey { provider, .. } | Credential::User { provider, .. } => {
                Ok(provider)
            }
            Credential::Operator => Err(refuse(&self.route, "unknown key")),
        }
    }

    /// Succeeds for the operator key; any other caller is refused (401).
    pub fn operator(&self) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Operator => Ok(()),
            Credential::ProviderKey { .. } | Credential::User { .. } => {
                Err(refuse(&self.route, "not the operator key"))
            }
        }
    }

    /// The caller as the audit trail names it, with what its role reaches (a provider's
    /// principals only).
    pub fn actor(&self) -> Result<Actor, ApiError> {
        let (provider, actor, link, sign_in) = match &self.credential {
            Credential::ProviderKey {
                provider,
                key_id,
                scopes,
            } => (
                provider,
                format!("key:{key_id}"),
                Link::None,
                if scopes.is_some() {
                    "scoped_key"
                } else {
                    "api_key"
                },
            ),
            Credential::User {
                provider,
                subject,
                method,
                link,
            } => (
                provider,
                match method {
                    SignInMethod::Password => format!("user:{subject}"),
                    SignInMethod::Oidc => format!("oidc:{subject}"),
                },
                link.clone(),
                method.as_str(),
            ),
            Credential::Operator => return Err(refuse(&self.route, "unknown key")),
        };
        Ok(Actor {
            provider: provider.clone(),
            actor,
            role: self.role,
            link,
            sign_in,
            emergency: None,
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
        let mut person_role = None;
        let credential = if is_operator_key(state, token) {
            Credential::Operator
        } else if ward_identity::looks_like_jwt(token) {
            match state.identity.verify_bearer(token).await? {
                Some(person) => {
                    person_role = Some(person.role);
                    Credential::User {
                        provider: person.provider,
                        subject: person.subject,
                        method: person.method,
                        link: person.link,
                    }
                }
                None => return Err(refuse(&route, "invalid token")),
            }
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
        let client_address = client_ip(parts).map(|ip| ip.to_string());
        let role = match &credential {
            Credential::ProviderKey { scopes: None, .. } => Some(Role::ProviderAdmin),
            Credential::User { .. } => person_role,
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
        (Admits::Operator, Credential::ProviderKey { .. } | Credential::User { .. }) => {
            Err(refuse(route, "not the operator key"))
        }
        (Admits::Provider { .. }, Credential::Operator) => Err(refuse(route, "unknown key")),
        (Admits::Provider { roles, scope }, credential) => {
            let allowed = match credential {
                Credential::ProviderKey {
                    scopes: Some(scopes),
                    ..
                } => scope.is_some_and(|scope| scopes.contains(&scope)),
                _ => role.is_some_and(|role| roles.contains(&role)),
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

/// The address of the client the request came from, when the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts)))
    }
}

fn client_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
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

//! Who the caller is (`GET /v1/me`), and a provider's API keys: machine clients' scoped
//! keys made, listed and revoked one by one by the provider's administrator.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use ward_domain::UtcInstant;
use ward_ports::tenants::{KeyInfo, KeyRequest};

use crate::policy::{Role, Scope};
use crate::principal::{Credential, Principal};
use crate::{ApiError, AppState};

/// The longest a key's name may be, in characters.
const MAX_NAME_CHARS: usize = 100;
/// The longest a key may live, in days.
const MAX_KEY_DAYS: i64 = 3650;

/// `GET /v1/me`: the caller, its provider, role and scopes (a person: how it signed in
/// and what its role is linked to).
pub(crate) async fn me(principal: Principal) -> Json<Json_> {
    Json(match &principal.credential {
        Credential::Operator => json!({
            "kind": "operator",
            "providerId": null,
            "keyId": null,
            "role": null,
            "scopes": null,
        }),
        Credential::ProviderKey {
            provider,
            key_id,
            scopes,
        } => json!({
            "kind": if scopes.is_some() { "scoped_key" } else { "api_key" },
            "providerId": provider.as_str(),
            "keyId": key_id,
            "role": principal.role.map(Role::as_str),
            "scopes": scopes.as_ref().map(|scopes| scope_names(scopes)),
        }),
        Credential::User {
            provider,
            subject,
            method,
            link,
        } => json!({
            "kind": "user",
            "providerId": provider.as_str(),
            "userId": subject,
            "keyId": null,
            "role": principal.role.map(Role::as_str),
            "scopes": null,
            "signIn": method.as_str(),
            "clinicianId": link.clinician().map(|id| id.as_str()),
            "mrn": link.mrn().map(|mrn| mrn.as_str()),
        }),
    })
}

fn scope_names(scopes: &[Scope]) -> Vec<&'static str> {
    scopes.iter().map(|scope| scope.as_str()).collect()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewKey {
    name: Option<String>,
    scopes: Vec<String>,
    expires_in_days: Option<i64>,
}

/// `POST /v1/keys`: a scoped key for a machine client, shown once.
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    let body: NewKey = crate::problem::small_json_body(&headers, &body, false, "key request")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    if body.scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "must name at least one scope"));
    }
    let mut scopes = Vec::with_capacity(body.scopes.len());
    for name in &body.scopes {
        let scope = Scope::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
            ApiError::invalid(
                "scopes",
                format!(
                    "{:?} is not a scope; use {}",
                    crate::problem::shortened(name),
                    known.join(", ")
                ),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if let Some(name) = &body.name
        && (name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1-{MAX_NAME_CHARS} characters without control characters"),
        ));
    }
    let now = UtcInstant::now().unix_seconds();
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days @ 1..=MAX_KEY_DAYS) => Some(now + days * 86_400),
        Some(_) => {
            return Err(ApiError::invalid(
                "expiresInDays",
                format!("must be between 1 and {MAX_KEY_DAYS}"),
            ));
        }
    };
    let request = KeyRequest {
        name: body.name,
        scopes: scope_names(&scopes)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        expires_at,
    };
    let (info, issued) = state.tenants.create_key(&provider, &request, now).await?;
    tracing::info!(provider_id = %provider, key_id = %info.key_id, "scoped key created");
    crate::reads::audit_admin(&state, &principal, "CREATE", "API_KEY", &info.key_id).await?;
    let mut view = key_view(&info);
    view["apiKey"] = json!(issued.0);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/keys`: the provider's live keys, never their secrets.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let keys = state.tenants.list_keys(&provider).await?;
    Ok(Json(
        json!({ "keys": keys.iter().map(key_view).collect::<Vec<_>>() }),
    ))
}

/// `DELETE /v1/keys/{keyId}`: revokes one key.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    if !state.tenants.revoke_key(&provider, &key_id).await? {
        return Err(ApiError::NotFound("the key"));
    }
    tracing::info!(provider_id = %provider, key_id = %key_id, "key revoked");
    crate::reads::audit_admin(&state, &principal, "DELETE", "API_KEY", &key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn key_view(info: &KeyInfo) -> Json_ {
    let instant = |seconds: Option<i64>| {
        seconds
            .map(|s| UtcInstant::from_unix_nanos(i128::from(s) * 1_000_000_000).rfc3339_seconds())
    };
    json!({
        "keyId": info.key_id,
        "name": info.name,
        "scopes": info.scopes,
        "createdAt": instant(info.created_at),
        "expiresAt": instant(info.expires_at),
    })
}

//! Operator routes: providers, key rotation, the dead-letter queue.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use ward_domain::ProviderId;
use ward_domain::time::ProviderTimeZone;

use crate::principal::Principal;
use crate::problem::small_json_body;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewProvider {
    provider_id: String,
    time_zone: Option<String>,
}

pub(crate) async fn create_provider(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    principal.operator()?;
    let body: NewProvider = crate::problem::small_json_body(&headers, &body, false, "provider")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let provider =
        ProviderId::parse(&body.provider_id).map_err(|e| ApiError::invalid("providerId", e))?;
    let zone = body
        .time_zone
        .as_deref()
        .map(|zone| ProviderTimeZone::parse(zone).map_err(|e| ApiError::invalid("timeZone", e)))
        .transpose()?;
    let key = state.tenants.create(&provider, zone.as_ref()).await?;
    tracing::info!(provider_id = %provider, "provider created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "providerId": provider.as_str(), "apiKey": key.0 })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewFullKey {
    #[serde(default)]
    revoke_others: bool,
}

/// `POST /v1/admin/providers/{providerId}/keys`: a new full key for a provider; the older
/// keys stay unless the body says `{"revokeOthers": true}` (a reset after a leak).
pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(provider_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    principal.operator()?;
    let provider =
        ProviderId::parse(&provider_id).map_err(|_| ApiError::NotFound("the provider"))?;
    let revoke_others = small_json_body::<NewFullKey>(&headers, &body, true, "key request")?
        .is_some_and(|body| body.revoke_others);
    let key = state
        .tenants
        .issue_full_key(&provider, revoke_others)
        .await?;
    tracing::info!(provider_id = %provider, revoke_others, "provider key issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "providerId": provider.as_str(), "apiKey": key.0 })),
    )
        .into_response())
}

pub(crate) async fn list_dead(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.operator()?;
    let dead = state
        .ctx
        .queue
        .list_dead(100)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({ "jobs": dead })).into_response())
}

pub(crate) async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    principal.operator()?;
    match ward_ingest::replay_dead_job(&state.ctx, &job_id).await {
        Ok(Some(job)) => Ok(Json(json!({ "replayed": job.id() })).into_response()),
        Ok(None) => Err(ApiError::NotFound("the dead-lettered job")),
        Err(error) => Err(ApiError::Internal(error.to_string())),
    }
}

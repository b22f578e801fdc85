//! Operator routes: providers, key rotation, the dead-letter queue.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use ward_domain::ProviderId;
use ward_domain::time::ProviderTimeZone;

use crate::auth::{self, Operator};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewProvider {
    provider_id: String,
    time_zone: Option<String>,
}

pub(crate) async fn create_provider(
    State(state): State<AppState>,
    _operator: Operator,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: NewProvider = crate::problem::small_json_body(&headers, &body, false, "provider")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let provider =
        ProviderId::parse(&body.provider_id).map_err(|e| ApiError::invalid("providerId", e))?;
    if let Some(zone) = &body.time_zone {
        ProviderTimeZone::parse(zone).map_err(|e| ApiError::invalid("timeZone", e))?;
    }
    let key =
        auth::create_provider(state.table.as_ref(), &provider, body.time_zone.as_deref()).await?;
    tracing::info!(provider_id = %provider, "provider created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "providerId": provider.as_str(), "apiKey": key.0 })),
    )
        .into_response())
}

pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    _operator: Operator,
    Path(provider_id): Path<String>,
) -> Result<Response, ApiError> {
    let provider =
        ProviderId::parse(&provider_id).map_err(|_| ApiError::NotFound("the provider"))?;
    let key = auth::rotate_key(state.table.as_ref(), &provider).await?;
    tracing::info!(provider_id = %provider, "provider key rotated");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "providerId": provider.as_str(), "apiKey": key.0 })),
    )
        .into_response())
}

pub(crate) async fn list_dead(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Response, ApiError> {
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
    _operator: Operator,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    match ward_ingest::replay_dead_job(&state.ctx, &job_id).await {
        Ok(Some(job)) => Ok(Json(json!({ "replayed": job.id() })).into_response()),
        Ok(None) => Err(ApiError::NotFound("the dead-lettered job")),
        Err(error) => Err(ApiError::Internal(error.to_string())),
    }
}

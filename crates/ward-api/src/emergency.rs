//! Break-glass (a clinician's audited, time-bound access to a patient it does not care
//! for) and a patient's access log (who read or changed its record).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::paging::limit_of;
use crate::principal::Principal;
use crate::problem::small_json_body;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BreakGlassBody {
    reason: String,
}

/// `POST /v1/patients/{mrn}/break-glass`: opens a grant for the configured time.
pub(crate) async fn open(
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body: BreakGlassBody = small_json_body(&headers, &body, false, "break-glass request")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let grant = state
        .emr
        .break_glass(
            &actor,
            &mrn,
            &body.reason,
            state.settings.break_glass_minutes,
        )
        .await?;
    // Who and for whom is in the audit trail; the log says only that it happened.
    tracing::warn!(provider_id = %actor.provider, grant_id = %grant.grant_id, "break-glass grant opened");
    Ok((StatusCode::CREATED, Json(json!(grant))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl PageParams {
    /// The cursor; an empty one is the first page.
    fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref().filter(|cursor| !cursor.is_empty())
    }
}

/// `GET /v1/break-glass`: the provider's grants, newest first, for review.
pub(crate) async fn sessions(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let limit = limit_of(params.limit, 100)?;
    let (grants, next) = state
        .emr
        .break_glass_sessions(&provider, limit, params.cursor())
        .await?;
    Ok(Json(json!({ "items": grants, "nextCursor": next })))
}

/// `GET /v1/me/access-log`: who accessed the calling patient's record, newest first.
pub(crate) async fn access_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    // The policy admits patients only; each is linked to its MRN.
    let Some(mrn) = actor.link.mrn().cloned() else {
        return Err(ApiError::Forbidden(
            "only a patient has an access log of its own; staff read /v1/audit?patient=",
        ));
    };
    let limit = limit_of(params.limit, 100)?;
    let (events, next) = state
        .emr
        .access_log(&actor, mrn.as_str(), limit, params.cursor())
        .await?;
    Ok(Json(json!({ "items": events, "nextCursor": next })))
}

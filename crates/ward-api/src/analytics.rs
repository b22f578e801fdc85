//! Facility analytics routes: start a run, list and read runs, download result files, and
//! ad hoc SQL over the caller's own datasets. The provider always comes from the key.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use ward_domain::{ProviderId, RunId, UtcInstant};
use ward_ports::{AnalyticsRun, Job, NO_ANALYTICS, RunRequest, SqlError};

use crate::paging::{PageParams, cursor_of, limit_of};
use crate::principal::Principal;
use crate::uploads::download;
use crate::{ApiError, AppState};

fn run_view(run: &AnalyticsRun) -> Json_ {
    let results: Vec<Json_> = run
        .results
        .iter()
        .map(|result| {
            let base = format!(
                "/v1/analytics/runs/{}/results/{}",
                run.run_id, result.query_id
            );
            json!({
                "queryId": result.query_id,
                "rowCount": result.row_count,
                "executionMs": result.execution_ms,
                "jsonFile": result.json_file,
                "csvFile": result.csv_file,
                "json": format!("{base}.json"),
                "csv": format!("{base}.csv"),
            })
        })
        .collect();
    json!({
        "runId": run.run_id,
        "status": run.status,
        "asOf": run.request.as_of,
        "monthsAhead": run.request.months_ahead,
        "sourceUpload": run.source_upload,
        "sourceFile": run.source_file,
        "createdAt": run.created_at,
        "finishedAt": run.finished_at,
        "attempts": run.attempts,
        "results": results,
        "failure": run.failure,
    })
}

fn require_analytics(state: &AppState) -> Result<(), ApiError> {
    match state.ctx.analytics {
        Some(_) => Ok(()),
        None => Err(ApiError::NotBuilt(NO_ANALYTICS)),
    }
}

/// The body of `POST /v1/analytics/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StartRun {
    as_of: Option<String>,
    months_ahead: Option<u32>,
}

pub(crate) async fn start(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    // The request is read first: a malformed one is the caller's to fix in any build.
    let request: StartRun =
        crate::problem::small_json_body(&headers, &body, true, "run request")?.unwrap_or_default();
    require_analytics(&state)?;
    let now = UtcInstant::now();
    let as_of = match request.as_of {
        Some(date) if ward_domain::time::parse_date(&date).is_some() => date,
        Some(_) => {
            return Err(ApiError::invalid(
                "asOf",
                "must be a date written YYYY-MM-DD",
            ));
        }
        None => now.civil_date(),
    };
    let months_ahead = match request.months_ahead {
        None => 6,
        Some(months @ 1..=120) => months,
        Some(_) => {
            return Err(ApiError::invalid(
                "monthsAhead",
                "must be between 1 and 120",
            ));
        }
    };
    let id = RunId::new(now, rand::random());
    let run = AnalyticsRun::queued(
        &provider,
        &id,
        RunRequest {
            as_of,
            months_ahead,
        },
        None,
    );
    state.ctx.runs.create(&run).await?;
    let job = Job::AnalyticsRun {
        provider: provider.clone(),
        run: id.clone(),
    };
    if let Err(error) = state.ctx.queue.enqueue(job).await {
        tracing::error!(provider_id = %provider, run_id = %id, error = %error, "could not queue the run");
        return Err(ApiError::Unavailable);
    }
    tracing::info!(provider_id = %provider, run_id = %id, "analytics run queued");
    Ok((StatusCode::ACCEPTED, Json(run_view(&run))).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let limit = limit_of(params.limit, 50)?;
    let cursor = cursor_of(params.cursor.as_deref())?;
    let (runs, next) = state.ctx.runs.list(&provider, limit, cursor).await?;
    Ok(Json(json!({
        "runs": runs.iter().map(run_view).collect::<Vec<_>>(),
        "nextCursor": next.map(|c| c.encode()),
    })))
}

async fn load(state: &AppState, provider: &ProviderId, id: &str) -> Result<AnalyticsRun, ApiError> {
    let id = RunId::parse(id).map_err(|_| ApiError::NotFound("the run"))?;
    state
        .ctx
        .runs
        .get(provider, &id)
        .await?
        .ok_or(ApiError::NotFound("the run"))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(run_id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let run = load(&state, &provider, &run_id).await?;
    Ok(Json(run_view(&run)))
}

pub(crate) async fn result_file(
    State(state): State<AppState>,
    principal: Principal,
    Path((run_id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    let run = load(&state, &provider, &run_id).await?;
    let (query, extension) = file
        .rsplit_once('.')
        .ok_or(ApiError::NotFound("the result file"))?;
    let result = run
        .results
        .iter()
        .find(|r| r.query_id == query)
        .ok_or(ApiError::NotFound("the result file"))?;
    let (key, media_type) = match extension {
        "json" => (&result.json_file, "application/json"),
        "csv" => (&result.csv_file, "text/csv; charset=utf-8"),
        _ => return Err(ApiError::NotFound("the result file")),
    };
    let filename = format!("{}-{file}", run.run_id);
    download(&state, key, media_type, &filename).await
}

/// The body of `POST /v1/analytics/sql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    sql: String,
    limit: Option<usize>,
}

pub(crate) async fn sql(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let request: SqlRequest = crate::problem::small_json_body(
        &headers,
        &body,
        false,
        "query request (it must be {\"sql\": \"SELECT ...\"})",
    )?
    .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let Some(analytics) = state.ctx.analytics.clone() else {
        return Err(ApiError::NotBuilt(NO_ANALYTICS));
    };
    let limit = match request.limit {
        None => 1_000,
        Some(limit @ 1..=10_000) => limit,
        Some(_) => return Err(ApiError::invalid("limit", "must be between 1 and 10000")),
    };
    let answer = analytics
        .sql(&state.ctx.storage(), &provider, &request.sql, limit)
        .await
        .map_err(|error| match error {
            SqlError::Refused(reason) => ApiError::Sql {
                kind: "sql-refused",
                detail: reason,
            },
            SqlError::Invalid(reason) => ApiError::Sql {
                kind: "sql-invalid",
                detail: reason,
            },
            SqlError::Timeout(seconds) => ApiError::Sql {
                kind: "sql-timeout",
                detail: format!("the query ran longer than {seconds} s"),
            },
            SqlError::NoData => ApiError::NotReady("no facilities have been uploaded yet"),
            SqlError::Busy(reason) => ApiError::Busy(reason),
            SqlError::Unavailable => ApiError::Unavailable,
            SqlError::Internal(detail) => ApiError::Internal(detail),
        })?;
    tracing::info!(provider_id = %provider, rows = answer.rows.len(), execution_ms = answer.execution_ms, "ad hoc query");
    Ok(Json(json!(answer)))
}

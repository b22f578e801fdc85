//! Upload routes: ask for a URL, send the file through it, follow its status and report.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use tokio::io::AsyncWriteExt;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, SourceFileName, UploadId, UtcInstant};
use ward_ports::{Job, Upload, UploadStatus};

use crate::paging::{PageParams, cursor_of, limit_of};
use crate::principal::Principal;
use crate::reads::audit_read;
use crate::{ApiError, AppState};

/// The JSON view of an upload.
pub fn upload_view(upload: &Upload) -> Json_ {
    let file_name = upload.file_name.as_ref().map(SourceFileName::as_str);
    let mut report = json!(upload.report);
    if let (Some(name), Some(report)) = (file_name, report.as_object_mut()) {
        report.insert("fileName".into(), json!(name));
    }
    json!({
        "uploadId": upload.id.as_str(),
        "kind": upload.kind.as_str(),
        "status": upload.status.as_str(),
        "createdAt": upload.created_at.rfc3339_seconds(),
        "urlExpiresAt": upload.url_expires_at.rfc3339_seconds(),
        "bytes": upload.bytes,
        "finishedAt": upload.finished_at.map(|t| t.rfc3339_seconds()),
        "file": upload.object_key(),
        "fileName": file_name,
        "report": report,
    })
}

pub(crate) fn parse_upload_id(text: &str) -> Result<UploadId, ApiError> {
    // An id that cannot exist is simply not found (as for another provider's id).
    UploadId::parse(text).map_err(|_| ApiError::NotFound("the upload"))
}

pub(crate) async fn load(
    state: &AppState,
    provider: &ProviderId,
    id: &str,
) -> Result<Upload, ApiError> {
    let id = parse_upload_id(id)?;
    state
        .ctx
        .uploads
        .get(provider, &id)
        .await?
        .ok_or(ApiError::NotFound("the upload"))
}

/// The optional body of `POST /v1/uploads`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUpload {
    /// `visits` (the default) or `facilities`.
    kind: Option<String>,
    /// The provider's own name for the file (kept for the audit trail only).
    #[serde(rename = "fileName")]
    file_name: Option<String>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    let request: CreateUpload =
        crate::problem::small_json_body(&headers, &body, true, "upload request")?
            .unwrap_or_default();
    let kind = match request.kind.as_deref() {
        None => UploadKind::Visits,
        Some(name) => UploadKind::parse(name)
            .ok_or_else(|| ApiError::invalid("kind", "must be \"visits\" or \"facilities\""))?,
    };
    let file_name = request
        .file_name
        .as_deref()
        .map(SourceFileName::parse)
        .transpose()
        .map_err(|error| ApiError::invalid("fileName", error))?;
    if kind == UploadKind::Facilities && state.ctx.analytics.is_none() {
        return Err(ApiError::NotBuilt(ward_ports::NO_ANALYTICS));
    }
    let now = UtcInstant::now();
    let id = UploadId::new(now, rand::random());
    let mut upload = Upload::pending(
        provider.clone(),
        id.clone(),
        now,
        state.settings.upload_url_ttl_seconds,
    );
    upload.kind = kind;
    upload.file_name = file_name;
    state.ctx.uploads.create(&upload).await?;
    let presigned = state
        .upload_urls
        .presign_put(&provider, &id, kind, upload.url_expires_at)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    tracing::info!(provider_id = %provider, upload_id = %id, "upload URL issued");
    let headers: serde_json::Map<String, Json_> = presigned
        .headers
        .into_iter()
        .map(|(name, value)| (name, Json_::String(value)))
        .collect();
    let body = json!({
        "uploadId": id.as_str(),
        "kind": kind.as_str(),
        "url": presigned.url,
        "method": "PUT",
        "headers": headers,
        "expiresAt": upload.url_expires_at.rfc3339_seconds(),
        "maxBytes": state.settings.max_upload_bytes,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let limit = limit_of(params.limit, 50)?;
    let cursor = cursor_of(params.cursor.as_deref())?;
    let (uploads, next) = state.ctx.uploads.list(&provider, limit, cursor).await?;
    Ok(Json(json!({
        "uploads": uploads.iter().map(upload_view).collect::<Vec<_>>(),
        "nextCursor": next.map(|c| c.encode()),
    })))
}

/// An upload's status and report (the report's problems quote rows: audited).
pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(upload_id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let result = load(&state, &actor.provider, &upload_id)
        .await
        .map(|upload| Json(upload_view(&upload)));
    audit_read(
        &state,
        &actor,
        "READ",
        "UPLOAD_REPORT",
        &upload_id,
        None,
        result,
    )
    .await
}

/// Every rejected or conflicting row of an upload (patient data: audited).
pub(crate) async fn errors_csv(
    State(state): State<AppState>,
    principal: Principal,
    Path(upload_id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let result = errors_csv_of(&state, &actor.provider, &upload_id).await;
    audit_read(
        &state,
        &actor,
        "READ",
        "UPLOAD_ERRORS",
        &upload_id,
        None,
        result,
    )
    .await
}

async fn errors_csv_of(
    state: &AppState,
    provider: &ProviderId,
    upload_id: &str,
) -> Result<Response, ApiError> {
    let upload = load(state, provider, upload_id).await?;
    if upload.status != UploadStatus::Completed {
        return Err(ApiError::NotReady(
            "the error list exists once the upload is completed",
        ));
    }
    let key = key_layout::errors_object_key(provider, ObjectStage::Completed, &upload.id);
    let filename = format!("{}.errors.csv", upload.id);
    download(state, &key, "text/csv; charset=utf-8", &filename).await
}

/// Streams a stored object as an attachment.
pub(crate) async fn download(
    state: &AppState,
    key: &str,
    media_type: &str,
    filename: &str,
) -> Result<Response, ApiError> {
    let stream = state
        .ctx
        .objects
        .get(&ObjectPath::from(key))
        .await?
        .into_stream();
    Ok((
        [
            (header::CONTENT_TYPE, media_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignedParams {
    expires: Option<String>,
    signature: Option<String>,
}

/// The signed PUT endpoint: the signature is the credential. Checks signature, expiry,
/// method (by route) and key before a byte is written; writes create-only; enforces the
/// size limit while streaming and keeps nothing of a refused body.
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path((provider_id, upload_id)): Path<(String, String)>,
    Query(params): Query<SignedParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(signer) = &state.signer else {
        // The AWS shape: clients upload to S3, never here.
        return Err(ApiError::NotFound("the upload endpoint"));
    };
    let (Some(expires), Some(signature)) = (params.expires, params.signature) else {
        return Err(ApiError::BadSignature);
    };
    let expires: i64 = expires.parse().map_err(|_| ApiError::BadSignature)?;
    let provider = ProviderId::parse(&provider_id).map_err(|_| ApiError::BadSignature)?;
    let id = UploadId::parse(&upload_id).map_err(|_| ApiError::BadSignature)?;
    // The URL names no kind; the signature covers the object key, which does.
    let Some((kind, object_key)) = [UploadKind::Visits, UploadKind::Facilities]
        .into_iter()
        .map(|kind| {
            let key = key_layout::upload_object_key(&provider, ObjectStage::Uploaded, &id, kind);
            (kind, key)
        })
        .find(|(_, key)| signer.verify("PUT", key, expires, &signature))
    else {
        return Err(ApiError::BadSignature);
    };
    if UtcInstant::now().unix_seconds() > expires {
        return Err(ApiError::UrlExpired);
    }
    let limit = state.settings.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let upload = state
        .ctx
        .uploads
        .get(&provider, &id)
        .await?
        .ok_or(ApiError::NotFound("the upload"))?;
    if upload.kind != kind {
        return Err(ApiError::BadSignature);
    }
    if upload.status != UploadStatus::Pending {
        return Err(ApiError::AlreadyUploaded);
    }
    // Claim the upload: only one PUT can move it out of `pending`.
    let receiving = match state.ctx.uploads.claim_for_receiving(&upload).await {
        Ok(receiving) => receiving,
        Err(ward_store::StoreError::ConditionFailed { .. }) => {
            return Err(ApiError::AlreadyUploaded);
        }
        Err(error) => return Err(error.into()),
    };
    let path = ObjectPath::from(object_key);
    // The upload as this request last wrote it (what a release must name).
    let mut current = receiving;
    let received = async {
        let n_bytes = stream_to_object(&state, &path, body, limit).await?;
        // Marked received before its job is queued: the worker that takes the job finds
        // the upload as this request left it. (Queued first, the two raced to change it,
        // and a worker that lost failed its attempt on the upload's version.) A crash in
        // between leaves a received upload whose file is stored: the recovery at start
        // queues it.
        current = state.ctx.uploads.mark_received(&current, n_bytes).await?;
        let job = Job::for_upload(&provider, &id, kind);
        if let Err(error) = state.ctx.queue.enqueue(job).await {
            tracing::error!(provider_id = %provider, upload_id = %id, error = %error, "could not queue the upload");
            return Err(ApiError::Unavailable);
        }
        Ok(n_bytes)
    }
    .await;
    match received {
        Ok(n_bytes) => {
            state
                .metrics
                .uploads_received
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(provider_id = %provider, upload_id = %id, n_bytes, "upload received");
            Ok(
                Json(json!({ "uploadId": id.as_str(), "status": "received", "bytes": n_bytes }))
                    .into_response(),
            )
        }
        Err(error) => {
            // Nothing is kept (refused, interrupted, or not queued): the URL can be used again.
            let _ = state.ctx.objects.delete(&path).await;
            let _ = state.ctx.uploads.release(&current).await;
            Err(error)
        }
    }
}

pub(crate) async fn stream_to_object(
    state: &AppState,
    path: &ObjectPath,
    body: Body,
    limit: u64,
) -> Result<u64, ApiError> {
    // Two 10 MiB parts in flight at most (the default, 8, holds up to 90 MiB per upload).
    let mut writer =
        object_store::buffered::BufWriter::new(state.ctx.objects.clone(), path.clone())
            .with_max_concurrency(2);
    let mut stream = body.into_data_stream();
    let mut n_bytes: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) => {
                let _ = writer.abort().await;
                return Err(ApiError::invalid("body", "the upload was interrupted"));
            }
        };
        n_bytes += chunk.len() as u64;
        if n_bytes > limit {
            let _ = writer.abort().await;
            return Err(ApiError::TooLarge { limit });
        }
        if let Err(error) = writer.write_all(&chunk).await {
            let _ = writer.abort().await;
            return Err(ApiError::Internal(format!("writing the upload: {error}")));
        }
    }
    writer
        .shutdown()
        .await
        .map_err(|e| ApiError::Internal(format!("finishing the upload: {e}")))?;
    Ok(n_bytes)
}

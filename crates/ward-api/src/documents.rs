//! Document bytes: a pre-signed, create-only upload whose size and SHA-256 are checked
//! against the metadata before the document becomes `AVAILABLE`, and downloads through a
//! short-lived signed URL.
//!
//! Embedded shape: the URLs point at Ward's own signed endpoint
//! (`/v1/document-objects/{provider}/documents/{patient key}/{id}`), which checks the bytes as
//! they arrive. AWS shape: they are S3 pre-signed URLs, and the client asks Ward to check
//! the uploaded object (`POST .../documents/{id}/check`).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use ward_domain::{DocumentId, Mrn, PatientKey, ProviderId, UtcInstant, key_layout};
use ward_emr::model::DocumentStatus;
use ward_emr::{Actor, DOCUMENT_UPLOAD_WINDOW_SECONDS, Kind, Stored};

use crate::principal::Principal;
use crate::{ApiError, AppState};

/// How long a download URL lasts.
const DOWNLOAD_URL_SECONDS: i64 = 300;

/// Where a document's bytes are kept (its path names the patient by pseudonym).
fn object_key(state: &AppState, actor: &Actor, mrn: &str, id: &str) -> Result<String, ApiError> {
    let mrn = Mrn::parse(mrn).map_err(|e| ApiError::invalid("mrn", e))?;
    let id = DocumentId::parse(id).map_err(|_| ApiError::NotFound("the document"))?;
    let patient = state.emr.pseudonyms().patient(&actor.provider, &mrn);
    Ok(key_layout::document_object_key(
        &actor.provider,
        &patient,
        &id,
    ))
}

/// The answer to a document's creation: its metadata and where to send the bytes.
pub(crate) async fn with_upload(
    state: &AppState,
    actor: &Actor,
    mrn: &str,
    stored: Stored,
    location: String,
) -> Result<Response, ApiError> {
    let key = object_key(state, actor, mrn, &stored.id)?;
    let media_type = stored
        .document()
        .map(|file| file.media_type)
        .unwrap_or_default();
    // The URL lapses well before the pending item expires.
    let expires_at = UtcInstant::now().plus_seconds(
        state
            .settings
            .upload_url_ttl_seconds
            .min(DOCUMENT_UPLOAD_WINDOW_SECONDS - 60),
    );
    let put = state
        .upload_urls
        .presign_object_put(&key, &media_type, expires_at)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let headers: serde_json::Map<String, serde_json::Value> = put
        .headers
        .into_iter()
        .map(|(name, value)| (name, json!(value)))
        .collect();
    let mut body = stored.representation();
    body["upload"] = json!({
        "url": put.url,
        "method": "PUT",
        "headers": headers,
        "expiresAt": expires_at.rfc3339_seconds(),
        "check": format!("{location}/check"),
    });
    let status = if stored.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", stored.version))
            .unwrap_or(HeaderValue::from_static("\"0\"")),
    );
    Ok(response)
}

/// Reads the stored object and settles the document: `AVAILABLE` when size and SHA-256
/// match the metadata, otherwise `REJECTED` (and the object is deleted).
async fn check_object(
    state: &AppState,
    actor: &Actor,
    mrn: &str,
    id: &str,
    from: &[DocumentStatus],
) -> Result<Stored, ApiError> {
    let file = state.emr.document_file(actor, mrn, id).await?;
    let path = ObjectPath::from(object_key(state, actor, mrn, id)?);
    let expected_size = file.size_bytes;
    let expected_sha = file.sha256;
    let verdict = match state.ctx.objects.get(&path).await {
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ApiError::NotReady(
                "no file has been uploaded for this document yet",
            ));
        }
        Err(error) => return Err(error.into()),
        Ok(found) => {
            let mut stream = found.into_stream();
            let mut hash = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > expected_size {
                    break;
                }
                hash.update(&chunk);
            }
            if size != expected_size {
                Err(format!(
                    "the file has {} bytes, not the {expected_size} declared",
                    if size > expected_size {
                        format!("more than {expected_size}")
                    } else {
                        size.to_string()
                    }
                ))
            } else if hex::encode(hash.finalize()) != expected_sha {
                Err("the file's SHA-256 does not match the declared sha256".to_owned())
            } else {
                Ok(())
            }
        }
    };
    let (status, rejection) = match &verdict {
        Ok(()) => (DocumentStatus::Available, None),
        Err(reason) => (DocumentStatus::Rejected, Some(reason.clone())),
    };
    if verdict.is_err() {
        let _ = state.ctx.objects.delete(&path).await;
    }
    Ok(state
        .emr
        .document_status(actor, mrn, id, from, status, rejection)
        .await?)
}

/// `POST /v1/patients/{mrn}/documents/{id}/check`: check an object uploaded straight to
/// object storage (the AWS shape).
pub(crate) async fn check(
    State(state): State<AppState>,
    principal: Principal,
    Path((mrn, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let stored = check_object(&state, &actor, &mrn, &id, &[DocumentStatus::PendingUpload]).await?;
    Ok(axum::Json(stored.representation()).into_response())
}

/// `GET /v1/patients/{mrn}/documents/{id}/content`: a 303 to a short-lived signed URL.
pub(crate) async fn content(
    State(state): State<AppState>,
    principal: Principal,
    Path((mrn, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let stored = state
        .emr
        .get_child(&actor, Kind::Document, &mrn, &id)
        .await?;
    if stored.document().map(|file| file.status) != Some(DocumentStatus::Available) {
        return Err(ApiError::NotReady(
            "the document's file has not been uploaded and checked",
        ));
    }
    let key = object_key(&state, &actor, &mrn, &id)?;
    let url = state
        .upload_urls
        .presign_object_get(&key, UtcInstant::now().plus_seconds(DOWNLOAD_URL_SECONDS))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    let location = HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(e.to_string()))?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignedParams {
    expires: Option<String>,
    signature: Option<String>,
}

/// Verifies a signed document-object URL: returns the provider, MRN and document id (the
/// URL names the patient by its key; the document's item says whose it is).
async fn verify(
    state: &AppState,
    method: &str,
    provider: &str,
    patient: &str,
    id: &str,
    params: &SignedParams,
) -> Result<(ProviderId, String, String), ApiError> {
    let Some(signer) = &state.signer else {
        return Err(ApiError::NotFound("the document endpoint"));
    };
    let (Some(expires), Some(signature)) = (&params.expires, &params.signature) else {
        return Err(ApiError::BadSignature);
    };
    let expires: i64 = expires.parse().map_err(|_| ApiError::BadSignature)?;
    let provider = ProviderId::parse(provider).map_err(|_| ApiError::BadSignature)?;
    let patient_key = PatientKey::parse(patient).ok_or(ApiError::BadSignature)?;
    let doc = DocumentId::parse(id).map_err(|_| ApiError::BadSignature)?;
    let key = key_layout::document_object_key(&provider, &patient_key, &doc);
    if !signer.verify(method, &key, expires, signature) {
        return Err(ApiError::BadSignature);
    }
    if UtcInstant::now().unix_seconds() > expires {
        return Err(ApiError::UrlExpired);
    }
    let mrn = state.emr.document_patient(&provider, patient, id).await?;
    Ok((provider, mrn, id.to_owned()))
}

fn url_actor(provider: ProviderId) -> Actor {
    Actor::provider_wide(provider, "signed-url", None, "signed_url")
}

/// The embedded shape's signed PUT of a document's bytes: one upload wins, the bytes are
/// checked as soon as they are stored.
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path((provider, patient, id)): Path<(String, String, String)>,
    Query(params): Query<SignedParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (provider, mrn, id) = verify(&state, "PUT", &provider, &patient, &id, &params).await?;
    let actor = url_actor(provider);
    let document = state
        .emr
        .get_child(&actor, Kind::Document, &mrn, &id)
        .await?
        .document()
        .ok_or(ApiError::NotFound("the document"))?;
    let media_type = document.media_type.as_str();
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if sent_type != media_type {
        return Err(ApiError::invalid(
            "Content-Type",
            format!("must be {media_type}, as the document's metadata says"),
        ));
    }
    let limit = document.size_bytes;
    // Claim the document: a second PUT is refused.
    state
        .emr
        .document_status(
            &actor,
            &mrn,
            &id,
            &[DocumentStatus::PendingUpload],
            DocumentStatus::Receiving,
            None,
        )
        .await
        .map_err(|_| ApiError::AlreadyUploaded)?;
    let path = ObjectPath::from(object_key(&state, &actor, &mrn, &id)?);
    match crate::uploads::stream_to_object(&state, &path, body, limit).await {
        Ok(_) => {
            let stored =
                check_object(&state, &actor, &mrn, &id, &[DocumentStatus::Receiving]).await?;
            Ok(axum::Json(stored.representation()).into_response())
        }
        Err(error) => {
            let _ = state.ctx.objects.delete(&path).await;
            let _ = state
                .emr
                .document_status(
                    &actor,
                    &mrn,
                    &id,
                    &[DocumentStatus::Receiving],
                    DocumentStatus::PendingUpload,
                    None,
                )
                .await;
            Err(error)
        }
    }
}

/// The embedded shape's signed GET of a document's bytes.
pub(crate) async fn send(
    State(state): State<AppState>,
    Path((provider, patient, id)): Path<(String, String, String)>,
    Query(params): Query<SignedParams>,
) -> Result<Response, ApiError> {
    let (provider, mrn, id) = verify(&state, "GET", &provider, &patient, &id, &params).await?;
    let actor = url_actor(provider);
    let document = state.emr.document_file(&actor, &mrn, &id).await?;
    let path = ObjectPath::from(object_key(&state, &actor, &mrn, &id)?);
    let found = match state.ctx.objects.get(&path).await {
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ApiError::NotFound("the document"));
        }
        other => other?,
    };
    let stream = found.into_stream();
    let mut response = Body::from_stream(stream).into_response();
    let (media_type, file_name) = (&document.media_type, &document.file_name);
    if let Ok(value) = HeaderValue::from_str(media_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

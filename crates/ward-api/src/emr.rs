//! EMR routes: patients, clinicians, a patient's appointments, clinical records, documents
//! and bills, the index lists (clinic day, clinic patients, by type), the patient
//! timeline and the audit trail. Every handler turns the request into one call of
//! `ward_emr::Emr`, which audits it; the provider always comes from the API key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use sha2::{Digest, Sha256};
use ward_domain::{Mrn, UtcInstant};
use ward_emr::audit::{AuditQuery, MAX_AUDIT_DAYS};
use ward_emr::{
    Actor, EmrError, Idempotency, Kind, ListFilter, Listed, Stored, Timeline, TimelineEntry,
};
use ward_store::Order;

use crate::paging::limit_of;
use crate::principal::Principal;
use crate::{ApiError, AppState};

impl From<EmrError> for ApiError {
    fn from(error: EmrError) -> Self {
        match error {
            EmrError::Invalid(errors) => Self::Fields(errors),
            EmrError::NotFound(what) => Self::NotFound(what),
            EmrError::PreconditionFailed { current } => Self::PreconditionFailed { current },
            EmrError::Conflict(conflict) => Self::Conflict(conflict.to_string()),
            EmrError::Gone { erased_at } => Self::Gone(erased_at),
            EmrError::Store(error) => error.into(),
        }
    }
}

/// A request body as bytes, or the reason it could not be read.
pub(crate) type BodyBytes = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The largest JSON body accepted (axum's default limit).
const MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

fn bytes_of(body: BodyBytes) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: MAX_BODY_BYTES,
            }
        } else {
            ApiError::invalid("body", "could not be read")
        }
    })
}

/// The JSON body of a create or update: sent as `application/json` or another `+json`
/// type (a merge patch as `application/merge-patch+json`), else 415.
fn body_json(headers: &HeaderMap, body: &Bytes) -> Result<Json_, ApiError> {
    crate::problem::require_json(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("is not valid JSON: {e}")))
}

fn idempotency(
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key", "must be 1-255 visible ASCII characters")
        })?;
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    Ok(Some(Idempotency {
        key: key.to_owned(),
        fingerprint: hex::encode(hash.finalize()),
    }))
}

fn if_match(headers: &HeaderMap) -> Result<i64, ApiError> {
    let value = headers
        .get(header::IF_MATCH)
        .ok_or(ApiError::PreconditionRequired)?;
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "If-Match",
                "must be the ETag of the version read, such as \"3\"",
            )
        })
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn one(stored: Stored) -> Response {
    let mut response = Json(stored.representation()).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(stored.version));
    response
}

fn created(stored: Stored, location: String) -> Response {
    let status = if stored.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let version = stored.version;
    let mut response = (status, Json(stored.representation())).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if status == StatusCode::OK {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn page(listed: Listed) -> Json<Json_> {
    let items: Vec<Json_> = listed.items.iter().map(Stored::representation).collect();
    Json(json!({"items": items, "nextCursor": listed.next}))
}

/// A timeline page: each entry `{kind, at, item}`.
fn timeline_page(timeline: Timeline) -> Json<Json_> {
    let items: Vec<Json_> = timeline
        .entries
        .iter()
        .map(TimelineEntry::representation)
        .collect();
    Json(json!({"items": items, "nextCursor": timeline.next}))
}

/// Query parameters of lists.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    item_type: Option<String>,
    status: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    email: Option<String>,
    clinic: Option<String>,
    date: Option<String>,
    patient: Option<String>,
    actor: Option<String>,
}

fn instant_param(
    field: &'static str,
    text: &Option<String>,
) -> Result<Option<UtcInstant>, ApiError> {
    text.as_deref()
        .map(|t| UtcInstant::parse_rfc3339(t).map_err(|e| ApiError::invalid(field, e)))
        .transpose()
}

impl ListParams {
    fn filter(&self) -> Result<ListFilter, ApiError> {
        let order = match self.order.as_deref() {
            None | Some("asc") => Order::Forward,
            Some("desc") => Order::Reverse,
            Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
        };
        Ok(ListFilter {
            from: instant_param("from", &self.from)?,
            to: instant_param("to", &self.to)?,
            item_type: self.item_type.clone(),
            status: self.status.clone(),
            order,
            limit: limit_of(self.limit, 50)?,
            cursor: self.cursor.clone(),
        })
    }
}

/// The collections under a patient: path segment and kind.
pub(crate) const PATIENT_COLLECTIONS: [(&str, Kind); 4] = [
    ("appointments", Kind::Appointment),
    ("clinical-records", Kind::ClinicalRecord),
    ("documents", Kind::Document),
    ("bills", Kind::Bill),
];

fn segment_of(kind: Kind) -> &'static str {
    PATIENT_COLLECTIONS
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("", |(segment, _)| *segment)
}

/// The routes of one collection under a patient (and, for appointments and records, under
/// a clinician).
pub(crate) fn collection_routes(
    router: axum::Router<AppState>,
    segment: &str,
    kind: Kind,
) -> axum::Router<AppState> {
    use axum::routing::get;
    let router = router
        .route(
            &format!("/v1/patients/{{mrn}}/{segment}"),
            get(
                move |state: State<AppState>,
                      caller: Principal,
                      path: Path<String>,
                      query: Query<ListParams>| {
                    list_children(kind, state, caller, path, query)
                },
            )
            .post(
                move |state: State<AppState>,
                      caller: Principal,
                      path: Path<String>,
                      headers: HeaderMap,
                      body: BodyBytes| {
                    create_child(kind, state, caller, path, headers, body)
                },
            ),
        )
        .route(
            &format!("/v1/patients/{{mrn}}/{segment}/{{id}}"),
            get(
                move |state: State<AppState>, caller: Principal, path: Path<(String, String)>| {
                    get_child(kind, state, caller, path)
                },
            )
            .patch(
                move |state: State<AppState>,
                      caller: Principal,
                      path: Path<(String, String)>,
                      headers: HeaderMap,
                      body: BodyBytes| {
                    patch_child(kind, state, caller, path, headers, body)
                },
            ),
        );
    match kind {
        Kind::Appointment | Kind::ClinicalRecord => router.route(
            &format!("/v1/clinicians/{{id}}/{segment}"),
            get(
                move |state: State<AppState>,
                      caller: Principal,
                      path: Path<String>,
                      query: Query<ListParams>| {
                    clinician_items(kind, state, caller, path, query)
                },
            ),
        ),
        _ => router,
    }
}

// ---------- Patients ----------

pub(crate) async fn create_patient(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let idem = idempotency(&headers, &Method::POST, "/v1/patients", &body)?;
    let stored = state
        .emr
        .create_patient(&actor, &body_json(&headers, &body)?, idem.as_ref())
        .await?;
    let location = format!("/v1/patients/{}", stored.id);
    Ok(created(stored, location))
}

/// `?email=` finds one patient; `?clinic=` lists a clinic's patients.
pub(crate) async fn find_patients(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    match (&params.email, &params.clinic) {
        (Some(email), None) => {
            let stored = state.emr.patient_by_email(&actor, email).await?;
            Ok(page(Listed {
                items: vec![stored],
                next: None,
            })
            .into_response())
        }
        (None, Some(clinic)) => {
            let limit = limit_of(params.limit, 50)?;
            let listed = state
                .emr
                .clinic_patients(&actor, clinic, limit, params.cursor.as_deref())
                .await?;
            Ok(page(listed).into_response())
        }
        _ => Err(ApiError::invalid(
            "email",
            "give exactly one of email or clinic",
        )),
    }
}

pub(crate) async fn get_patient(
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    Ok(one(state.emr.get_patient(&actor, &mrn).await?))
}

pub(crate) async fn patch_patient(
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let version = if_match(&headers)?;
    let patch = body_json(&headers, &body)?;
    Ok(one(state
        .emr
        .update_patient(&actor, &mrn, version, &patch)
        .await?))
}

/// `DELETE /v1/patients/{mrn}` (`{"reason": "..."}`): erases the patient (see
/// `ward_emr::Emr::erase`); its document objects go with it, each taking its key.
pub(crate) async fn erase_patient(
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let request = body_json(&headers, &body)?;
    let Some(fields) = request.as_object() else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|name| name.as_str() != "reason") {
        return Err(ApiError::invalid(
            "body",
            format!("has a field `{unknown}` that an erasure does not take (only `reason`)"),
        ));
    }
    let reason = request
        .get("reason")
        .and_then(Json_::as_str)
        .ok_or_else(|| ApiError::invalid("reason", "is required: why the patient is erased"))?;
    let parsed = Mrn::parse(&mrn).map_err(|e| ApiError::invalid("mrn", e))?;
    let patient = state.emr.pseudonyms().patient(&actor.provider, &parsed);
    let prefix = object_store::path::Path::from(ward_domain::key_layout::patient_documents_prefix(
        &actor.provider,
        &patient,
    ));
    let objects = std::sync::Arc::clone(&state.ctx.objects);
    let users = &state.identity.users;
    let provider = actor.provider.clone();
    let elsewhere = Box::pin(async move {
        use futures::TryStreamExt as _;
        use object_store::ObjectStoreExt as _;
        let listed: Vec<_> = objects
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        for object in &listed {
            match objects.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        // Its sign-in accounts: they name it, and could sign in to nothing.
        let mut removed_users = 0;
        let linked = users
            .linked_to(&provider, &ward_domain::Link::Patient(parsed))
            .await
            .map_err(|e| e.to_string())?;
        for user in linked {
            if users
                .delete(&provider, &user)
                .await
                .map_err(|e| e.to_string())?
            {
                removed_users += 1;
            }
        }
        Ok(ward_emr::RemovedElsewhere {
            documents: listed.len() as u64,
            users: removed_users,
        })
    });
    let erasure = state.emr.erase(&actor, &mrn, reason, elsewhere).await?;
    Ok(Json(json!({
        "patientKey": erasure.patient_key.as_str(),
        "erasedAt": erasure.erased_at,
        "itemsRemoved": erasure.items,
        "documentsRemoved": erasure.documents,
        "usersRemoved": erasure.users,
    })))
}

pub(crate) async fn timeline(
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    Ok(timeline_page(
        state.emr.timeline(&actor, &mrn, params.filter()?).await?,
    ))
}

// ---------- A patient's items ----------

async fn create_child(
    kind: Kind,
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let segment = segment_of(kind);
    let path = format!("/v1/patients/{mrn}/{segment}");
    let idem = idempotency(&headers, &Method::POST, &path, &body)?;
    let stored = state
        .emr
        .create_child(
            &actor,
            kind,
            &mrn,
            &body_json(&headers, &body)?,
            idem.as_ref(),
        )
        .await?;
    let location = format!("{path}/{}", stored.id);
    if kind == Kind::Document {
        return crate::documents::with_upload(&state, &actor, &mrn, stored, location).await;
    }
    Ok(created(stored, location))
}

async fn list_children(
    kind: Kind,
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    Ok(page(
        state
            .emr
            .list_children(&actor, kind, &mrn, params.filter()?)
            .await?,
    ))
}

async fn get_child(
    kind: Kind,
    State(state): State<AppState>,
    principal: Principal,
    Path((mrn, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    Ok(one(state.emr.get_child(&actor, kind, &mrn, &id).await?))
}

async fn patch_child(
    kind: Kind,
    State(state): State<AppState>,
    principal: Principal,
    Path((mrn, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let version = if_match(&headers)?;
    let patch = body_json(&headers, &body)?;
    Ok(one(state
        .emr
        .update_child(&actor, kind, &mrn, &id, version, &patch)
        .await?))
}

// ---------- Clinicians ----------

pub(crate) async fn create_clinician(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let idem = idempotency(&headers, &Method::POST, "/v1/clinicians", &body)?;
    let stored = state
        .emr
        .create_clinician(&actor, &body_json(&headers, &body)?, idem.as_ref())
        .await?;
    let location = format!("/v1/clinicians/{}", stored.id);
    Ok(created(stored, location))
}

pub(crate) async fn list_clinicians(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let limit = limit_of(params.limit, 50)?;
    Ok(page(
        state
            .emr
            .list_clinicians(&actor, limit, params.cursor.as_deref())
            .await?,
    ))
}

pub(crate) async fn get_clinician(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    Ok(one(state.emr.get_clinician(&actor, &id).await?))
}

pub(crate) async fn patch_clinician(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let body = bytes_of(body)?;
    let version = if_match(&headers)?;
    let patch = body_json(&headers, &body)?;
    Ok(one(state
        .emr
        .update_clinician(&actor, &id, version, &patch)
        .await?))
}

async fn clinician_items(
    kind: Kind,
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    Ok(page(
        state
            .emr
            .clinician_items(&actor, kind, &id, params.filter()?)
            .await?,
    ))
}

// ---------- Indexes ----------

pub(crate) async fn clinic_appointments(
    State(state): State<AppState>,
    principal: Principal,
    Path(clinic): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let date = params.date.as_deref().ok_or_else(|| {
        ApiError::invalid("date", "is required (YYYY-MM-DD, the clinic's local day)")
    })?;
    let limit = limit_of(params.limit, 100)?;
    Ok(page(
        state
            .emr
            .clinic_day(&actor, &clinic, date, limit, params.cursor.as_deref())
            .await?,
    ))
}

/// `GET /v1/clinicians/{id}/patients`: the patients the clinician cares for.
pub(crate) async fn clinician_patients(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let limit = limit_of(params.limit, 50)?;
    Ok(page(
        state
            .emr
            .clinician_patients(&actor, &id, limit, params.cursor.as_deref())
            .await?,
    ))
}

pub(crate) async fn clinic_patients(
    State(state): State<AppState>,
    principal: Principal,
    Path(clinic): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let limit = limit_of(params.limit, 50)?;
    Ok(page(
        state
            .emr
            .clinic_patients(&actor, &clinic, limit, params.cursor.as_deref())
            .await?,
    ))
}

async fn by_type(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    params: ListParams,
) -> Result<Json<Json_>, ApiError> {
    let item_type = params
        .item_type
        .clone()
        .ok_or_else(|| ApiError::invalid("type", "is required"))?;
    let mut filter = params.filter()?;
    filter.item_type = None;
    Ok(page(
        state.emr.by_type(actor, kind, &item_type, filter).await?,
    ))
}

pub(crate) async fn records_by_type(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    by_type(&state, &actor, Kind::ClinicalRecord, params).await
}

pub(crate) async fn documents_by_type(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    by_type(&state, &actor, Kind::Document, params).await
}

// ---------- Audit ----------

/// `GET /v1/audit?from&to&patient&actor`: newest first; the range defaults to the last
/// day and spans at most 31 days.
pub(crate) async fn audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let to = instant_param("to", &params.to)?.unwrap_or_else(UtcInstant::now);
    let from = instant_param("from", &params.from)?.unwrap_or(to.plus_seconds(-86_400));
    if from > to {
        return Err(ApiError::invalid("from", "is after to"));
    }
    if to.unix_seconds() - from.unix_seconds() > MAX_AUDIT_DAYS * 86_400 {
        return Err(ApiError::invalid(
            "from",
            format!("must be at most {MAX_AUDIT_DAYS} days before to"),
        ));
    }
    let page_ = ward_emr::audit::list(
        state.table.as_ref(),
        &actor.provider,
        AuditQuery {
            from,
            to,
            patient: params
                .patient
                .as_deref()
                .map(|mrn| Mrn::parse(mrn).map(|mrn| mrn.as_str().to_owned()))
                .transpose()
                .map_err(|e| ApiError::invalid("patient", e))?,
            actor: match params.actor.as_deref() {
                Some(actor) if actor.is_empty() || actor.chars().count() > 200 => {
                    return Err(ApiError::invalid("actor", "must be 1-200 characters"));
                }
                actor => actor.map(str::to_owned),
            },
            limit: limit_of(params.limit, 100)?,
            cursor: params.cursor.clone(),
        },
    )
    .await?;
    Ok(Json(
        json!({"items": page_.events, "nextCursor": page_.next}),
    ))
}

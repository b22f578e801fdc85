//! Record routes: a patient's visits in time order; the records an upload created.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use ward_domain::{Mrn, UtcInstant};
use ward_ports::visits::{VisitRange, VisitReadError};
use ward_store::Order;

use crate::paging::limit_of;
use crate::principal::Principal;
use crate::reads::audit_read;
use crate::uploads::load;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(crate) struct PatientParams {
    from: Option<String>,
    to: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A patient's visits (audited), when the caller reaches the patient; without their
/// notes for a role that does not see clinical content.
pub(crate) async fn by_patient(
    State(state): State<AppState>,
    principal: Principal,
    Path(mrn): Path<String>,
    Query(params): Query<PatientParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let actor = match state.emr.admit(&actor, &mrn).await {
        Ok(actor) => actor,
        Err(error) => {
            let refused = Err(error.into());
            return audit_read(&state, &actor, "LIST", "VISIT", &mrn, Some(&mrn), refused).await;
        }
    };
    let result = patient_visits(&state, &actor, &mrn, params).await;
    audit_read(&state, &actor, "LIST", "VISIT", &mrn, Some(&mrn), result).await
}

async fn patient_visits(
    state: &AppState,
    actor: &ward_emr::Actor,
    mrn: &str,
    params: PatientParams,
) -> Result<Json<Json_>, ApiError> {
    let provider = &actor.provider;
    let mrn = Mrn::parse(mrn).map_err(|e| ApiError::invalid("mrn", e))?;
    let instant = |field: &'static str, text: &Option<String>| {
        text.as_deref()
            .map(|t| UtcInstant::parse_rfc3339(t).map_err(|e| ApiError::invalid(field, e)))
            .transpose()
    };
    let range = VisitRange {
        from: instant("from", &params.from)?,
        to: instant("to", &params.to)?,
    };
    if let (Some(from), Some(to)) = (range.from, range.to)
        && from > to
    {
        return Err(ApiError::invalid("from", "is after to"));
    }
    let order = match params.order.as_deref() {
        None | Some("asc") => Order::Forward,
        Some("desc") => Order::Reverse,
        Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
    };
    let limit = limit_of(params.limit, 100)?;
    let page = state
        .visits
        .of_patient(
            provider,
            &mrn,
            range,
            order,
            limit,
            params.cursor.as_deref(),
        )
        .await
        .map_err(read_error)?;
    let mut records = page.records;
    if !actor.sees_clinical_content() {
        records
            .iter_mut()
            .for_each(ward_ports::VisitRecord::withhold_clinical);
    }
    Ok(Json(json!({
        "medicalRecordNumber": mrn.as_str(),
        "records": records,
        "nextCursor": page.next,
    })))
}

fn read_error(error: VisitReadError) -> ApiError {
    match error {
        VisitReadError::EmptyRange => ApiError::invalid("from", "is after to"),
        VisitReadError::BadCursor => ApiError::invalid("cursor", "is not valid for this request"),
        VisitReadError::Store(error) => error.into(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct UploadRecordParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The records an upload created (audited).
pub(crate) async fn by_upload(
    State(state): State<AppState>,
    principal: Principal,
    Path(upload_id): Path<String>,
    Query(params): Query<UploadRecordParams>,
) -> Result<Json<Json_>, ApiError> {
    let actor = principal.actor()?;
    let result = upload_records(&state, &actor.provider, &upload_id, params).await;
    audit_read(
        &state,
        &actor,
        "LIST",
        "UPLOAD_RECORDS",
        &upload_id,
        None,
        result,
    )
    .await
}

/// The upload's visits in index order (patient, then time).
async fn upload_records(
    state: &AppState,
    provider: &ward_domain::ProviderId,
    upload_id: &str,
    params: UploadRecordParams,
) -> Result<Json<Json_>, ApiError> {
    let upload = load(state, provider, upload_id).await?;
    let limit = limit_of(params.limit, 100)?;
    let page = state
        .visits
        .of_upload(provider, &upload.id, limit, params.cursor.as_deref())
        .await
        .map_err(read_error)?;
    Ok(Json(
        json!({ "uploadId": upload.id.as_str(), "records": page.records, "nextCursor": page.next }),
    ))
}

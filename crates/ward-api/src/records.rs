//! Record routes: a patient's visits in time order; the records an upload created.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use ward_domain::key_layout::{
    self, BY_UPLOAD_INDEX, BY_UPLOAD_SK_ATTRIBUTE, UPLOAD_RECORD_SHARDS, VISIT_SK_PREFIX,
};
use ward_domain::{Mrn, UtcInstant};
use ward_emr::merge::{decode_cursor, encode_cursor};
use ward_ingest::VisitRecord;
use ward_store::{Order, SkCondition, Value};

use crate::emr::{EmrCaller, audit_read};
use crate::uploads::{cursor_of, limit_of, load};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(crate) struct PatientParams {
    from: Option<String>,
    to: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A patient's visits (audited).
pub(crate) async fn by_patient(
    State(state): State<AppState>,
    EmrCaller(actor): EmrCaller,
    Path(mrn): Path<String>,
    Query(params): Query<PatientParams>,
) -> Result<Json<Json_>, ApiError> {
    let result = patient_visits(&state, &actor.provider, &mrn, params).await;
    audit_read(&state, &actor, "LIST", "VISIT", &mrn, Some(&mrn), result).await
}

async fn patient_visits(
    state: &AppState,
    provider: &ward_domain::ProviderId,
    mrn: &str,
    params: PatientParams,
) -> Result<Json<Json_>, ApiError> {
    let mrn = Mrn::parse(mrn).map_err(|e| ApiError::invalid("mrn", e))?;
    let instant = |field: &'static str, text: &Option<String>| {
        text.as_deref()
            .map(|t| UtcInstant::parse_rfc3339(t).map_err(|e| ApiError::invalid(field, e)))
            .transpose()
    };
    let from = instant("from", &params.from)?;
    let to = instant("to", &params.to)?;
    let sk = match (from, to) {
        (Some(from), Some(to)) if from > to => {
            return Err(ApiError::invalid("from", "is after to"));
        }
        (Some(from), Some(to)) => {
            SkCondition::Between(key_layout::visit_sk(from), key_layout::visit_sk(to))
        }
        (Some(from), None) => {
            SkCondition::Between(key_layout::visit_sk(from), format!("{VISIT_SK_PREFIX}~"))
        }
        (None, Some(to)) => SkCondition::Between(VISIT_SK_PREFIX.into(), key_layout::visit_sk(to)),
        (None, None) => SkCondition::BeginsWith(VISIT_SK_PREFIX.into()),
    };
    let order = match params.order.as_deref() {
        None | Some("asc") => Order::Forward,
        Some("desc") => Order::Reverse,
        Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
    };
    let cursor = cursor_of(params.cursor.as_deref())?;
    let page = state
        .table
        .query(ward_store::Query {
            index: None,
            pk: key_layout::patient_pk(provider, &mrn),
            sk,
            order,
            limit: limit_of(params.limit, 100)?,
            cursor,
        })
        .await?;
    let records: Vec<VisitRecord> = page
        .items
        .iter()
        .filter_map(VisitRecord::from_item)
        .collect();
    Ok(Json(json!({
        "medicalRecordNumber": mrn.as_str(),
        "records": records,
        "nextCursor": page.next.map(|c| c.encode()),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UploadRecordParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The records an upload created (audited).
pub(crate) async fn by_upload(
    State(state): State<AppState>,
    EmrCaller(actor): EmrCaller,
    Path(upload_id): Path<String>,
    Query(params): Query<UploadRecordParams>,
) -> Result<Json<Json_>, ApiError> {
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

/// Merges the upload's index shards in index order (patient, then time); the cursor is
/// the index sort key of the last record returned.
async fn upload_records(
    state: &AppState,
    provider: &ward_domain::ProviderId,
    upload_id: &str,
    params: UploadRecordParams,
) -> Result<Json<Json_>, ApiError> {
    let upload = load(state, provider, upload_id).await?;
    let limit = limit_of(params.limit, 100)?;
    let after = match params.cursor.as_deref() {
        None => SkCondition::Any,
        Some(token) => SkCondition::Gt(
            decode_cursor(token)
                .map_err(|_| ApiError::invalid("cursor", "is not valid for this request"))?,
        ),
    };
    let shard_queries = (0..UPLOAD_RECORD_SHARDS).map(|shard| {
        state.table.query(ward_store::Query {
            index: Some(BY_UPLOAD_INDEX),
            pk: key_layout::upload_records_pk(provider, &upload.id, shard),
            sk: after.clone(),
            order: Order::Forward,
            limit,
            cursor: None,
        })
    });
    let pages = futures::future::try_join_all(shard_queries).await?;
    let more_in_shards = pages.iter().any(|page| page.next.is_some());
    let mut items: Vec<_> = pages.into_iter().flat_map(|page| page.items).collect();
    let sk_of = |item: &ward_store::Item| {
        item.get(BY_UPLOAD_SK_ATTRIBUTE)
            .and_then(Value::as_s)
            .unwrap_or_default()
            .to_owned()
    };
    items.sort_by_cached_key(sk_of);
    let more = items.len() > limit || more_in_shards;
    items.truncate(limit);
    let next = (more && !items.is_empty()).then(|| encode_cursor(&sk_of(&items[items.len() - 1])));
    let records: Vec<VisitRecord> = items.iter().filter_map(VisitRecord::from_item).collect();
    Ok(Json(
        json!({ "uploadId": upload.id.as_str(), "records": records, "nextCursor": next }),
    ))
}

//! Documents: metadata in the patient's partition, bytes in object storage. A new document
//! is an upload session that expires unless its file arrives; its status then follows
//! [`DocumentStatus`], set by Ward only.

use serde_json::{Value as Json, json};
use ward_domain::key_layout::{self as keys, EMR_INDEX_SHARDS, TYPE_INDEX};
use ward_domain::{DocumentId, Mrn, PatientKey, ProviderId, Pseudonyms, TimeOrderedId, UtcInstant};
use ward_store::{EXPIRES_AT, VERSION, Value, WriteOp};

use super::children::{Changing, NewChild};
use super::{
    Conflict, DocumentFile, Draft, Emr, EmrError, Stored, child_draft, corrupt, parse_entity_id,
    parse_mrn, random_bits, s, stored,
};
use crate::audit::Actor;
use crate::model::{self, DocumentStatus, Kind};

/// How long a document's upload session lasts before the pending item expires.
pub const DOCUMENT_UPLOAD_WINDOW_SECONDS: i64 = 3600;

/// A new document: pending its upload, expiring with the upload session.
pub(super) fn new_document(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    body: &Json,
) -> Result<NewChild, EmrError> {
    let now = UtcInstant::now();
    let info = model::parse(body, model::document).map_err(EmrError::Invalid)?;
    let id = DocumentId::new(now, random_bits());
    let status = DocumentStatus::PendingUpload;
    let mut data = serde_json::to_value(&info).unwrap_or_default();
    data["status"] = json!(status.as_str());
    let mut draft = child_draft(
        pseudonyms,
        provider,
        mrn,
        Kind::Document,
        &id,
        data,
        Some(info.document_type.into()),
        Some(status.as_str().into()),
        vec![],
    );
    // An upload session: gone unless the file arrives in time.
    draft.expires_at = Some(now.unix_seconds() + DOCUMENT_UPLOAD_WINDOW_SECONDS);
    Ok(NewChild::alone(draft))
}

/// A changed document: what describes the file, and its status, are fixed.
pub(super) fn changed_document(
    item: &Changing<'_>,
    if_match: i64,
    patch: &Json,
) -> Result<(Draft, Vec<WriteOp>), EmrError> {
    let locked = "it describes the uploaded file";
    let mut after = Emr::patched(
        item.current,
        patch,
        if_match,
        &[
            ("fileName", locked),
            ("mediaType", locked),
            ("sizeBytes", locked),
            ("sha256", locked),
            ("status", "Ward sets it when the upload is checked"),
        ],
    )?;
    let status = after["status"]
        .as_str()
        .and_then(DocumentStatus::parse)
        .ok_or_else(|| corrupt("document"))?;
    if let Json::Object(map) = &mut after {
        map.remove("status");
        map.remove("rejection");
    }
    let info = model::parse(&after, model::document).map_err(EmrError::Invalid)?;
    let mut data = serde_json::to_value(&info).unwrap_or_default();
    data["status"] = json!(status.as_str());
    let index = document_index(item.provider, item.id, info.document_type, status);
    let mut draft = child_draft(
        item.pseudonyms,
        item.provider,
        item.mrn,
        Kind::Document,
        item.id,
        data,
        Some(info.document_type.into()),
        Some(status.as_str().into()),
        index,
    );
    draft.expires_at = item.current.get(EXPIRES_AT).and_then(Value::as_i64);
    Ok((draft, vec![]))
}

/// A document is in the documents-by-type index once its file is checked.
fn document_index(
    provider: &ProviderId,
    id: &impl TimeOrderedId,
    document_type: &str,
    status: DocumentStatus,
) -> Vec<(&'static str, String)> {
    if status != DocumentStatus::Available {
        return vec![];
    }
    vec![
        (
            TYPE_INDEX.pk,
            keys::documents_by_type_pk(
                provider,
                document_type,
                keys::shard_of(id.as_str(), EMR_INDEX_SHARDS),
            ),
        ),
        (TYPE_INDEX.sk, id.to_string()),
    ]
}

impl Emr {
    /// The MRN of the patient whose document `id` is filed under the patient key
    /// `patient` (a signed object URL names the patient by its key only). Not audited,
    /// like [`Emr::document_file`]; a key or id that names no document is `NotFound`.
    pub async fn document_patient(
        &self,
        provider: &ProviderId,
        patient: &str,
        id: &str,
    ) -> Result<String, EmrError> {
        let not_found = || EmrError::NotFound(Kind::Document.noun());
        let patient = PatientKey::parse(patient).ok_or_else(not_found)?;
        let id = DocumentId::parse(id).map_err(|_| not_found())?;
        let key = ward_store::Key::new(
            keys::patient_pk(provider, &patient),
            keys::emr_sk(super::child_prefix(Kind::Document), &id),
        );
        let item = self.table.get(&key).await?.ok_or_else(not_found)?;
        s(&item, "patientMrn").ok_or_else(|| corrupt("document"))
    }

    /// A document's file, as its metadata describes it. Not audited: the request that
    /// needs it (a check, an upload, a download) is, or is signed.
    pub async fn document_file(
        &self,
        actor: &Actor,
        mrn: &str,
        id: &str,
    ) -> Result<DocumentFile, EmrError> {
        let item = self.child_item(actor, Kind::Document, mrn, id).await?;
        stored(&item).document().ok_or_else(|| corrupt("document"))
    }

    /// Moves a document from one of the `from` states to `to`: `RECEIVING` while its
    /// bytes arrive (one upload wins), back to `PENDING_UPLOAD` if they did not, then
    /// `AVAILABLE` (indexed by type, no longer expiring) when size and SHA-256 match, or
    /// `REJECTED` with the reason.
    pub async fn document_status(
        &self,
        actor: &Actor,
        mrn: &str,
        id: &str,
        from: &[DocumentStatus],
        to: DocumentStatus,
        rejection: Option<String>,
    ) -> Result<Stored, EmrError> {
        let provider = &actor.provider;
        let current = self.child_item(actor, Kind::Document, mrn, id).await?;
        let status = s(&current, "status")
            .as_deref()
            .and_then(DocumentStatus::parse)
            .ok_or_else(|| corrupt("document"))?;
        if !from.contains(&status) {
            return Err(Conflict::DocumentIs(status).into());
        }
        let version = current.get(VERSION).and_then(Value::as_i64).unwrap_or(0);
        let mut data: Json = s(&current, "data")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        data["status"] = json!(to.as_str());
        if let Some(reason) = &rejection {
            data["rejection"] = json!(reason);
        }
        let mrn_id = parse_mrn(mrn)?;
        let entity_id = parse_entity_id(id, Kind::Document)?;
        let document_type = data["type"].as_str().unwrap_or("OTHER").to_owned();
        let index = document_index(provider, &entity_id, &document_type, to);
        let mut draft = child_draft(
            &self.pseudonyms,
            provider,
            &mrn_id,
            Kind::Document,
            &entity_id,
            data,
            Some(document_type),
            Some(to.as_str().into()),
            index,
        );
        if to.awaits_file() {
            draft.expires_at = current.get(EXPIRES_AT).and_then(Value::as_i64);
        }
        match self
            .replace(actor, &current, draft, version, vec![], |_| {
                EmrError::NotFound(Kind::Document.noun())
            })
            .await
        {
            Err(EmrError::PreconditionFailed { .. }) => Err(Conflict::DocumentChanged.into()),
            other => other,
        }
    }
}

//! The EMR service: every read and write of the model, on the table port. One module per
//! entity (`patients`, `clinicians`, `appointments`, `clinical_records`, `documents`,
//! `bills`); `children` dispatches the routes shared by a patient's items to them;
//! `lists` and `timeline` are the reads across entities. This module holds what every
//! write shares.
//!
//! Each write is one `transact_write` holding the entity, the items that keep it
//! consistent (email claims, a clinician's busy slots), existence checks of what it refers
//! to, its audit event and, when the client sent one, its idempotency record. Updates are
//! a JSON merge patch on the stored entity, parsed again as a whole, written only if the
//! version is still the one the client read (`If-Match`).

mod access;
mod answer;
mod appointments;
mod bills;
mod children;
mod clinical_records;
mod clinicians;
mod documents;
mod erasure;
mod lists;
mod locations;
mod patients;
mod timeline;

use locations::{clinician_key, email_claim, email_claim_key, patient_key, patient_pk};

use std::sync::Arc;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use ward_domain::key_layout::{self as keys};
use ward_domain::time::ProviderTimeZone;
use ward_domain::{
    AppointmentId, BillId, ClinicName, ClinicalRecordId, ClinicianId, DocumentId, Mrn, ProviderId,
    Pseudonyms, TimeOrderedId, UtcInstant,
};
use ward_store::{
    Condition, EXPIRES_AT, Item, Key, Order, PK, SK, StoreError, Table, VERSION, Value, WriteOp,
};

use crate::audit::{Actor, AuditLog};
use crate::fields::FieldError;
use crate::model::{self, AppointmentStatus, DocumentStatus, Kind};

pub use access::{BreakGlass, DEFAULT_BREAK_GLASS_MINUTES};
pub use answer::Answer;
pub use documents::DOCUMENT_UPLOAD_WINDOW_SECONDS;
pub use erasure::{Erasure, MAX_ERASURE_REASON_CHARS, RemovedElsewhere};
pub use timeline::{Timeline, TimelineEntry, TimelineItem};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum EmrError {
    /// The body has invalid fields (each named).
    #[error("the request has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// No such resource for this provider.
    #[error("{0} was not found")]
    NotFound(&'static str),
    /// `If-Match` names another version than the stored one.
    #[error("the resource has changed since it was read (now version {current})")]
    PreconditionFailed {
        /// The stored version.
        current: i64,
    },
    /// The write conflicts with stored data (email in use, MRN exists, clinician busy,
    /// a status change that is not allowed).
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The patient was erased (its data is gone for good).
    #[error("the patient was erased ({erased_at})")]
    Gone {
        /// When its erasure began (sortable UTC).
        erased_at: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EmrError {
    fn audit_result(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "INVALID",
            Self::NotFound(_) => "NOT_FOUND",
            Self::PreconditionFailed { .. } => "PRECONDITION_FAILED",
            Self::Conflict(_) => "CONFLICT",
            Self::Gone { .. } => "GONE",
            Self::Store(_) => "ERROR",
        }
    }
}

/// Why a write conflicts with what is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A patient has this MRN already.
    #[error("a patient with MRN {0} already exists")]
    PatientExists(Mrn),
    /// A clinician has this id already.
    #[error("a clinician with id {0} already exists")]
    ClinicianExists(ClinicianId),
    /// Another patient or clinician claims this email address.
    #[error("the email address is already in use by another patient or clinician")]
    EmailInUse,
    /// A new item's id was taken (a collision of random bits).
    #[error("an item with this id already exists; retry")]
    IdTaken,
    /// The clinician's time is held by another appointment (named when it is found).
    #[error("the clinician is already booked for part of that time{}", holder_note(.holder))]
    ClinicianBooked {
        /// The appointment that holds the first contested slot.
        holder: Option<String>,
    },
    /// The idempotency key was sent before with another request.
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A concurrent request with the same idempotency key won, and its answer is gone.
    #[error("a concurrent request conflicted; retry")]
    ConcurrentRequest,
    /// The appointment's life cycle does not allow the change.
    #[error("an appointment cannot go from {from} to {to}")]
    AppointmentTransition {
        /// The stored status.
        from: AppointmentStatus,
        /// The status asked for.
        to: AppointmentStatus,
    },
    /// The document is not in a state the change starts from.
    #[error("the document is {0}")]
    DocumentIs(DocumentStatus),
    /// The document changed while its file was checked.
    #[error("the document changed meanwhile (another upload?)")]
    DocumentChanged,
}

fn holder_note(holder: &Option<String>) -> String {
    holder
        .as_ref()
        .map(|id| format!(" (appointment {id})"))
        .unwrap_or_default()
}

fn invalid(field: &str, reason: impl Into<String>) -> EmrError {
    EmrError::Invalid(vec![FieldError {
        field: field.into(),
        reason: reason.into(),
    }])
}

/// An entity as the service returns it: what it is, its id, patient, times and version
/// typed; its own fields as its model wrote them. The HTTP layer renders it
/// ([`Stored::representation`]) and reads a document's file through [`Stored::document`].
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// What it is.
    pub kind: Kind,
    /// Its id: a patient's MRN, a clinician's id, or the item's time-ordered id.
    pub id: String,
    /// The patient a patient's item belongs to.
    pub patient: Option<String>,
    /// When it was created (sortable UTC).
    pub created_at: String,
    /// When it last changed (sortable UTC).
    pub updated_at: String,
    /// Its version (the `ETag`).
    pub version: i64,
    /// Its fields, as its model serialized them (a document's with its status).
    pub fields: serde_json::Map<String, Json>,
    /// `true` when an idempotency key replayed an earlier answer.
    pub replayed: bool,
}

/// What a document's metadata says of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFile {
    /// Where its file is.
    pub status: DocumentStatus,
    /// The media type the upload must have.
    pub media_type: String,
    /// The size the upload must have.
    pub size_bytes: u64,
    /// The SHA-256 (hex) the upload must have.
    pub sha256: String,
    /// The file's own name, for downloads.
    pub file_name: String,
}

impl Stored {
    /// The API's representation: the fields plus `id`, `patientMrn` (a patient's items),
    /// `createdAt`, `updatedAt` and `version`.
    pub fn representation(&self) -> Json {
        let mut map = self.fields.clone();
        map.insert("id".into(), json!(self.id));
        if let Some(patient) = &self.patient {
            map.insert("patientMrn".into(), json!(patient));
        }
        map.insert("createdAt".into(), json!(self.created_at));
        map.insert("updatedAt".into(), json!(self.updated_at));
        map.insert("version".into(), json!(self.version));
        Json::Object(map)
    }

    /// A document's file, as its metadata describes it (`None` for another kind).
    pub fn document(&self) -> Option<DocumentFile> {
        if self.kind != Kind::Document {
            return None;
        }
        let text = |name: &str| self.fields.get(name).and_then(Json::as_str);
        Some(DocumentFile {
            status: text("status").and_then(DocumentStatus::parse)?,
            media_type: text("mediaType")?.to_owned(),
            size_bytes: self.fields.get("sizeBytes").and_then(Json::as_u64)?,
            sha256: text("sha256")?.to_owned(),
            file_name: text("fileName")?.to_owned(),
        })
    }

    /// An entity read back from its representation (an idempotency record's answer).
    fn from_representation(kind: Kind, representation: Json) -> Self {
        let mut fields = match representation {
            Json::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        let mut text = |name: &str| match fields.remove(name) {
            Some(Json::String(text)) => Some(text),
            _ => None,
        };
        let (id, patient) = (text("id"), text("patientMrn"));
        let (created_at, updated_at) = (text("createdAt"), text("updatedAt"));
        let version = fields.remove("version").and_then(|v| v.as_i64());
        Self {
            kind,
            id: id.unwrap_or_default(),
            patient,
            created_at: created_at.unwrap_or_default(),
            updated_at: updated_at.unwrap_or_default(),
            version: version.unwrap_or(1),
            fields,
            replayed: false,
        }
    }
}

/// A page of entities.
#[derive(Debug)]
pub struct Listed {
    /// The entities.
    pub items: Vec<Stored>,
    /// The next page's cursor.
    pub next: Option<String>,
}

/// A client's idempotency key with a fingerprint of its request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The key as sent (`Idempotency-Key`).
    pub key: String,
    /// SHA-256 of method, path and body: the same key with another request is refused.
    pub fingerprint: String,
}

/// Filters of a list of a patient's items, a clinician's items or items by type.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// From this instant (inclusive).
    pub from: Option<UtcInstant>,
    /// Up to this instant (inclusive).
    pub to: Option<UtcInstant>,
    /// Only items of this type.
    pub item_type: Option<String>,
    /// Only items in this status.
    pub status: Option<String>,
    /// Oldest first (forward) or newest first.
    pub order: Order,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Where to resume.
    pub cursor: Option<String>,
}

/// The EMR service over one table.
#[derive(Clone)]
pub struct Emr {
    table: Arc<dyn Table>,
    pseudonyms: Arc<Pseudonyms>,
    audit: AuditLog,
}

impl std::fmt::Debug for Emr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emr").field("audit", &self.audit).finish()
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_bits() -> u64 {
    rand::random()
}

fn s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_s).map(str::to_owned)
}

fn compact(instant: UtcInstant) -> String {
    instant.compact_seconds()
}

/// A stored item the service cannot read (its attributes are not what it wrote).
fn corrupt(what: &str) -> EmrError {
    EmrError::Store(StoreError::Internal(format!(
        "a stored {what} is unreadable"
    )))
}

/// The child kinds stored in a patient's partition.
fn child_prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Appointment => keys::APPOINTMENT_SK_PREFIX,
        Kind::ClinicalRecord => keys::CLINICAL_RECORD_SK_PREFIX,
        Kind::Document => keys::DOCUMENT_SK_PREFIX,
        Kind::Bill => keys::BILL_SK_PREFIX,
        Kind::Patient | Kind::Clinician => "PROFILE",
    }
}

struct Draft {
    pk: String,
    sk: String,
    kind: Kind,
    id: String,
    patient: Option<String>,
    data: Json,
    item_type: Option<String>,
    status: Option<String>,
    index: Vec<(&'static str, String)>,
    expires_at: Option<i64>,
}

impl Draft {
    /// The patient an event about this entity concerns.
    fn patient_of_event(&self) -> Option<&str> {
        match self.kind {
            Kind::Patient => Some(&self.id),
            _ => self.patient.as_deref(),
        }
    }

    fn item(&self, version: i64, created: &str, updated: &str) -> Item {
        let mut item = Item::new();
        item.insert(PK.into(), Value::s(self.pk.clone()));
        item.insert(SK.into(), Value::s(self.sk.clone()));
        item.insert("entity".into(), Value::s(self.kind.as_str()));
        item.insert("id".into(), Value::s(self.id.clone()));
        item.insert(VERSION.into(), Value::n(version));
        item.insert("createdAt".into(), Value::s(created));
        item.insert("updatedAt".into(), Value::s(updated));
        item.insert("data".into(), Value::s(self.data.to_string()));
        if let Some(patient) = &self.patient {
            item.insert("patientMrn".into(), Value::s(patient.clone()));
        }
        if let Some(item_type) = &self.item_type {
            item.insert("itemType".into(), Value::s(item_type.clone()));
        }
        if let Some(status) = &self.status {
            item.insert("status".into(), Value::s(status.clone()));
        }
        for (name, value) in &self.index {
            item.insert((*name).into(), Value::s(value.clone()));
        }
        if let Some(expires_at) = self.expires_at {
            item.insert(EXPIRES_AT.into(), Value::n(expires_at));
        }
        item
    }
}

/// A stored entity item, read.
fn stored(item: &Item) -> Stored {
    let fields = match s(item, "data").and_then(|text| serde_json::from_str(&text).ok()) {
        Some(Json::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    Stored {
        kind: s(item, "entity")
            .as_deref()
            .and_then(Kind::parse)
            .unwrap_or(Kind::Patient),
        id: s(item, "id").unwrap_or_default(),
        patient: s(item, "patientMrn"),
        created_at: s(item, "createdAt").unwrap_or_default(),
        updated_at: s(item, "updatedAt").unwrap_or_default(),
        version: item.get(VERSION).and_then(Value::as_i64).unwrap_or(0),
        fields,
        replayed: false,
    }
}

/// A clinician id from the path.
fn parse_clinician(field: &str, value: &str) -> Result<ClinicianId, EmrError> {
    ClinicianId::parse(value).map_err(|e| invalid(field, e.to_string()))
}

/// A clinic name from the path.
fn parse_clinic(value: &str) -> Result<ClinicName, EmrError> {
    ClinicName::parse(value).map_err(|e| invalid("clinic", e.to_string()))
}

/// A reason given for an access or an erasure (audited): trimmed, `min`-`max` characters,
/// no control characters.
fn checked_reason(reason: &str, min: usize, max: usize) -> Result<&str, EmrError> {
    let reason = reason.trim();
    if !(min..=max).contains(&reason.chars().count()) {
        return Err(invalid("reason", format!("must be {min}-{max} characters")));
    }
    if reason.chars().any(char::is_control) {
        return Err(invalid("reason", "must not hold control characters"));
    }
    Ok(reason)
}

fn parse_mrn(mrn: &str) -> Result<Mrn, EmrError> {
    Mrn::parse(mrn).map_err(|e| invalid("mrn", e.to_string()))
}

/// The id of one of a patient's items, of its kind's own type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChildId {
    Appointment(AppointmentId),
    ClinicalRecord(ClinicalRecordId),
    Document(DocumentId),
    Bill(BillId),
}

impl std::fmt::Display for ChildId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(TimeOrderedId::as_str(self))
    }
}

impl TimeOrderedId for ChildId {
    fn as_str(&self) -> &str {
        match self {
            Self::Appointment(id) => id.as_str(),
            Self::ClinicalRecord(id) => id.as_str(),
            Self::Document(id) => id.as_str(),
            Self::Bill(id) => id.as_str(),
        }
    }
}

/// An item id from the path: one that cannot exist is simply not found.
fn parse_entity_id(id: &str, kind: Kind) -> Result<ChildId, EmrError> {
    let not_found = |_| EmrError::NotFound(kind.noun());
    Ok(match kind {
        Kind::Appointment => ChildId::Appointment(AppointmentId::parse(id).map_err(not_found)?),
        Kind::ClinicalRecord => {
            ChildId::ClinicalRecord(ClinicalRecordId::parse(id).map_err(not_found)?)
        }
        Kind::Document => ChildId::Document(DocumentId::parse(id).map_err(not_found)?),
        Kind::Bill => ChildId::Bill(BillId::parse(id).map_err(not_found)?),
        Kind::Patient | Kind::Clinician => return Err(not_found(ward_domain::IdError::Empty)),
    })
}

#[allow(clippy::too_many_arguments)]
fn child_draft(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    kind: Kind,
    id: &impl TimeOrderedId,
    data: Json,
    item_type: Option<String>,
    status: Option<String>,
    index: Vec<(&'static str, String)>,
) -> Draft {
    Draft {
        pk: patient_pk(pseudonyms, provider, mrn),
        sk: keys::emr_sk(child_prefix(kind), id),
        kind,
        id: id.to_string(),
        patient: Some(mrn.to_string()),
        data,
        item_type,
        status,
        index,
        expires_at: None,
    }
}

impl Emr {
    /// The service over `table`, naming patients in keys by `pseudonyms`, auditing
    /// through `audit`.
    pub fn new(table: Arc<dyn Table>, pseudonyms: Arc<Pseudonyms>, audit: AuditLog) -> Self {
        Self {
            table,
            pseudonyms,
            audit,
        }
    }

    /// What names patients in keys.
    pub fn pseudonyms(&self) -> &Arc<Pseudonyms> {
        &self.pseudonyms
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The table.
    pub fn table(&self) -> &Arc<dyn Table> {
        &self.table
    }

    /// Records the event of an answer and hands the answer on, without the clinical
    /// content the actor's role does not see: every answer of the service passes here.
    async fn audited<T: Answer>(
        &self,
        actor: &Actor,
        action: &str,
        kind: Kind,
        id: Option<&str>,
        patient: Option<&str>,
        result: Result<T, EmrError>,
    ) -> Result<T, EmrError> {
        let outcome = match &result {
            Ok(_) => "SUCCESS",
            Err(error) => error.audit_result(),
        };
        self.audit
            .record(actor.event(action, kind.as_str(), id, patient, outcome))
            .await;
        result.map(|mut answer| {
            if !actor.sees_clinical_content() {
                answer.withhold_clinical();
            }
            answer
        })
    }

    /// Writes a new entity (and what comes with it) in one transaction, replaying the
    /// earlier answer when the idempotency key was seen with the same request.
    async fn create(
        &self,
        actor: &Actor,
        draft: Draft,
        mut extra: Vec<WriteOp>,
        idempotency: Option<&Idempotency>,
        conflict: impl Fn(usize) -> EmrError,
    ) -> Result<Stored, EmrError> {
        if let Some(replay) = self.replay(actor, draft.kind, idempotency).await? {
            return Ok(replay);
        }
        let now = UtcInstant::now().sortable();
        let item = draft.item(1, &now, &now);
        let answer = stored(&item);
        let mut ops = vec![WriteOp::Put {
            item,
            condition: Condition::NotExists,
        }];
        let extra_count = extra.len();
        ops.append(&mut extra);
        let event = actor.event(
            "CREATE",
            draft.kind.as_str(),
            Some(&draft.id),
            draft.patient_of_event(),
            "SUCCESS",
        );
        ops.push(WriteOp::Put {
            item: event.to_item(&self.pseudonyms),
            condition: Condition::NotExists,
        });
        if let Some(idempotency) = idempotency {
            ops.push(WriteOp::Put {
                item: self.idempotency_item(actor, idempotency, &answer),
                condition: Condition::NotExists,
            });
        }
        match self.table.transact_write(ops).await {
            Ok(()) => Ok(answer),
            Err(StoreError::TransactionCanceled { index }) if index == extra_count + 2 => {
                // Another request with this key won the race: answer as it did.
                match self.replay(actor, draft.kind, idempotency).await? {
                    Some(replay) => Ok(replay),
                    None => Err(Conflict::ConcurrentRequest.into()),
                }
            }
            Err(StoreError::TransactionCanceled { index }) => {
                let error = conflict(index);
                self.audit
                    .record(actor.event(
                        "CREATE",
                        draft.kind.as_str(),
                        Some(&draft.id),
                        draft.patient_of_event(),
                        error.audit_result(),
                    ))
                    .await;
                Err(error)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn idempotency_item(&self, actor: &Actor, idempotency: &Idempotency, answer: &Stored) -> Item {
        let mut item = Item::new();
        item.insert(
            PK.into(),
            Value::s(keys::idempotency_pk(
                &actor.provider,
                &sha256_hex(&idempotency.key),
            )),
        );
        item.insert(SK.into(), Value::s(keys::IDEMPOTENCY_SK));
        item.insert("entity".into(), Value::s("IDEMPOTENCY_KEY"));
        item.insert(
            "fingerprint".into(),
            Value::s(idempotency.fingerprint.clone()),
        );
        item.insert(
            "answer".into(),
            Value::s(answer.representation().to_string()),
        );
        item.insert(
            EXPIRES_AT.into(),
            Value::n(UtcInstant::now().unix_seconds() + IDEMPOTENCY_TTL_SECONDS),
        );
        item
    }

    async fn replay(
        &self,
        actor: &Actor,
        kind: Kind,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<Stored>, EmrError> {
        let Some(idempotency) = idempotency else {
            return Ok(None);
        };
        let key = Key::new(
            keys::idempotency_pk(&actor.provider, &sha256_hex(&idempotency.key)),
            keys::IDEMPOTENCY_SK,
        );
        let Some(item) = self.table.get(&key).await? else {
            return Ok(None);
        };
        if s(&item, "fingerprint").as_deref() != Some(idempotency.fingerprint.as_str()) {
            return Err(Conflict::IdempotencyKeyReused.into());
        }
        let answer: Json = s(&item, "answer")
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Ok(Some(Stored {
            replayed: true,
            ..Stored::from_representation(kind, answer)
        }))
    }

    /// Reads an entity item, or `NotFound`.
    async fn load(&self, key: &Key, kind: Kind) -> Result<Item, EmrError> {
        self.table
            .get(key)
            .await?
            .filter(|item| s(item, "entity").as_deref() == Some(kind.as_str()))
            .ok_or(EmrError::NotFound(kind.noun()))
    }

    /// Replaces an entity if its version is still `expected`, with `extra` operations and
    /// the audit event in the same transaction.
    async fn replace(
        &self,
        actor: &Actor,
        current: &Item,
        draft: Draft,
        expected: i64,
        mut extra: Vec<WriteOp>,
        conflict: impl Fn(usize) -> EmrError,
    ) -> Result<Stored, EmrError> {
        let created = s(current, "createdAt").unwrap_or_default();
        let item = draft.item(expected + 1, &created, &UtcInstant::now().sortable());
        let answer = stored(&item);
        let mut ops = vec![WriteOp::Put {
            item,
            condition: Condition::VersionIs(expected),
        }];
        let extra_count = extra.len();
        ops.append(&mut extra);
        ops.push(WriteOp::Put {
            item: actor
                .event(
                    "UPDATE",
                    draft.kind.as_str(),
                    Some(&draft.id),
                    draft.patient_of_event(),
                    "SUCCESS",
                )
                .to_item(&self.pseudonyms),
            condition: Condition::NotExists,
        });
        match self.table.transact_write(ops).await {
            Ok(()) => Ok(answer),
            Err(StoreError::TransactionCanceled { index: 0 }) => {
                let key = Key::new(draft.pk.clone(), draft.sk.clone());
                let now = self.table.get(&key).await?;
                let current = now
                    .as_ref()
                    .and_then(|item| item.get(VERSION))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                Err(EmrError::PreconditionFailed { current })
            }
            Err(StoreError::TransactionCanceled { index }) if index <= extra_count => {
                Err(conflict(index))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Applies `patch` to the stored entity's fields, refusing changes to `immutable`
    /// ones; the stored version must be `if_match`.
    fn patched(
        current: &Item,
        patch: &Json,
        if_match: i64,
        immutable: &[(&str, &str)],
    ) -> Result<Json, EmrError> {
        let version = current.get(VERSION).and_then(Value::as_i64).unwrap_or(0);
        if version != if_match {
            return Err(EmrError::PreconditionFailed { current: version });
        }
        if !patch.is_object() {
            return Err(invalid("body", "must be a JSON object (a merge patch)"));
        }
        let before: Json = s(current, "data")
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let mut after = before.clone();
        model::merge_patch(&mut after, patch);
        let changed: Vec<FieldError> = immutable
            .iter()
            .filter(|(name, _)| before.get(name) != after.get(name))
            .map(|(name, why)| FieldError {
                field: (*name).into(),
                reason: format!("cannot be changed: {why}"),
            })
            .collect();
        if changed.is_empty() {
            Ok(after)
        } else {
            Err(EmrError::Invalid(changed))
        }
    }

    async fn local_day(&self, provider: &ProviderId, at: UtcInstant) -> Result<String, EmrError> {
        let profile = self
            .table
            .get(&Key::new(keys::provider_pk(provider), keys::PROVIDER_SK))
            .await?;
        let zone = profile
            .as_ref()
            .and_then(|item| s(item, "timeZone"))
            .and_then(|name| ProviderTimeZone::parse(&name).ok());
        Ok(match zone {
            Some(zone) => zone.civil_date(at),
            None => at.civil_date(),
        })
    }
}

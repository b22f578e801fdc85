//! The EMR service: every read and write of the model, on the table port.
//!
//! Each write is one `transact_write` holding the entity, the items that keep it
//! consistent (email claims, a clinician's busy slots), existence checks of what it refers
//! to, its audit event and, when the client sent one, its idempotency record. Updates are
//! a JSON merge patch on the stored entity, parsed again as a whole, written only if the
//! version is still the one the client read (`If-Match`).

use std::sync::Arc;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use ward_domain::key_layout::{self as keys, EMR_INDEX_SHARDS};
use ward_domain::time::ProviderTimeZone;
use ward_domain::{Mrn, ProviderId, UploadId, UtcInstant};
use ward_store::{
    Condition, EXPIRES_AT, Item, Key, Order, PK, Query, SK, SkCondition, StoreError, Table,
    VERSION, Value, WriteOp,
};

use crate::audit::{Actor, AuditLog};
use crate::fields::FieldError;
use crate::model::{self, Kind};
use ward_store::merge::{self, Merged, Stream};

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
    #[error("{0}")]
    Conflict(String),
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
            Self::Store(_) => "ERROR",
        }
    }
}

/// The answer when an email claim is held by someone else.
fn email_taken() -> EmrError {
    EmrError::Conflict("the email address is already in use by another patient or clinician".into())
}

fn invalid(field: &str, reason: impl Into<String>) -> EmrError {
    EmrError::Invalid(vec![FieldError {
        field: field.into(),
        reason: reason.into(),
    }])
}

/// An entity as the API shows it, with its version (the `ETag`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The representation: the entity's fields plus `id`, `createdAt`, `updatedAt`,
    /// `version` (and `patientMrn` for a patient's items).
    pub json: Json,
    /// The version.
    pub version: i64,
    /// `true` when an idempotency key replayed an earlier answer.
    pub replayed: bool,
}

/// A page of entities.
#[derive(Debug)]
pub struct Listed {
    /// The representations.
    pub items: Vec<Json>,
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

/// The API representation of a stored entity item.
pub fn representation(item: &Item) -> Json {
    let mut json: Json = s(item, "data")
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| json!({}));
    if let Json::Object(map) = &mut json {
        map.insert("id".into(), json!(s(item, "id")));
        if let Some(patient) = s(item, "patientMrn") {
            map.insert("patientMrn".into(), json!(patient));
        }
        map.insert("createdAt".into(), json!(s(item, "createdAt")));
        map.insert("updatedAt".into(), json!(s(item, "updatedAt")));
        map.insert(
            "version".into(),
            json!(item.get(VERSION).and_then(Value::as_i64)),
        );
    }
    json
}

fn stored(item: &Item) -> Stored {
    Stored {
        json: representation(item),
        version: item.get(VERSION).and_then(Value::as_i64).unwrap_or(0),
        replayed: false,
    }
}

fn email_claim(provider: &ProviderId, email: &str, owner: Kind, owner_id: &str) -> Item {
    let mut item = Item::new();
    item.insert(
        PK.into(),
        Value::s(keys::email_claim_pk(
            provider,
            &sha256_hex(&email.to_lowercase()),
        )),
    );
    item.insert(SK.into(), Value::s(keys::EMAIL_CLAIM_SK));
    item.insert("entity".into(), Value::s("EMAIL_CLAIM"));
    item.insert("owner".into(), Value::s(owner.as_str()));
    item.insert("ownerId".into(), Value::s(owner_id));
    item
}

fn email_claim_key(provider: &ProviderId, email: &str) -> Key {
    Key::new(
        keys::email_claim_pk(provider, &sha256_hex(&email.to_lowercase())),
        keys::EMAIL_CLAIM_SK,
    )
}

fn patient_key(provider: &ProviderId, mrn: &Mrn) -> Key {
    Key::new(keys::patient_pk(provider, mrn), keys::PATIENT_PROFILE_SK)
}

fn clinician_key(provider: &ProviderId, clinician: &str) -> Key {
    Key::new(
        keys::clinician_pk(provider, clinician),
        keys::CLINICIAN_PROFILE_SK,
    )
}

/// A path identifier that becomes part of a key (clinician id, clinic): no `#`, no `/`.
fn check_identifier(field: &str, value: &str) -> Result<(), EmrError> {
    Mrn::parse(value)
        .map(|_| ())
        .map_err(|e| invalid(field, e.to_string()))
}

fn parse_mrn(mrn: &str) -> Result<Mrn, EmrError> {
    Mrn::parse(mrn).map_err(|e| invalid("mrn", e.to_string()))
}

fn parse_entity_id(id: &str, kind: Kind) -> Result<UploadId, EmrError> {
    UploadId::parse(id).map_err(|_| EmrError::NotFound(kind.noun()))
}

/// The busy slots an appointment holds: (partition, sort key) per 5 minutes.
fn busy_slots(provider: &ProviderId, clinician: &str, start: UtcInstant, minutes: i64) -> Vec<Key> {
    (0..minutes / model::SLOT_MINUTES)
        .map(|i| {
            let at = start.plus_seconds(i * model::SLOT_MINUTES * 60);
            let second_of_day = at.unix_seconds().rem_euclid(86_400);
            Key::new(
                keys::busy_slots_pk(provider, clinician, &at.civil_date()),
                keys::busy_slot_sk(
                    (second_of_day / 3600) as u32,
                    (second_of_day / 60 % 60) as u32,
                ),
            )
        })
        .collect()
}

impl Emr {
    /// The service over `table`, auditing through `audit`.
    pub fn new(table: Arc<dyn Table>, audit: AuditLog) -> Self {
        Self { table, audit }
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The table.
    pub fn table(&self) -> &Arc<dyn Table> {
        &self.table
    }

    async fn audited<T>(
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
        result
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
        if let Some(replay) = self.replay(actor, idempotency).await? {
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
            item: event.to_item(),
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
                match self.replay(actor, idempotency).await? {
                    Some(replay) => Ok(replay),
                    None => Err(EmrError::Conflict(
                        "a concurrent request conflicted; retry".into(),
                    )),
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
        item.insert("answer".into(), Value::s(answer.json.to_string()));
        item.insert(
            EXPIRES_AT.into(),
            Value::n(UtcInstant::now().unix_seconds() + IDEMPOTENCY_TTL_SECONDS),
        );
        item
    }

    async fn replay(
        &self,
        actor: &Actor,
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
            return Err(EmrError::Conflict(
                "this Idempotency-Key was already used with a different request".into(),
            ));
        }
        let json: Json = s(&item, "answer")
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let version = json["version"].as_i64().unwrap_or(1);
        Ok(Some(Stored {
            json,
            version,
            replayed: true,
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
                .to_item(),
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

    // ---------------- Patients ----------------

    fn patient_draft(provider: &ProviderId, patient: &model::Patient) -> Result<Draft, EmrError> {
        let mrn = parse_mrn(&patient.mrn)?;
        Ok(Draft {
            pk: keys::patient_pk(provider, &mrn),
            sk: keys::PATIENT_PROFILE_SK.into(),
            kind: Kind::Patient,
            id: patient.mrn.clone(),
            patient: None,
            data: serde_json::to_value(patient).unwrap_or_default(),
            item_type: None,
            status: None,
            index: vec![
                (
                    "GSI2PK",
                    keys::clinic_patients_pk(
                        provider,
                        &patient.clinic,
                        keys::shard_of(&patient.mrn, EMR_INDEX_SHARDS),
                    ),
                ),
                ("GSI2SK", patient.mrn.clone()),
            ],
            expires_at: None,
        })
    }

    /// Creates a patient: one profile per MRN, one owner per email (transactional).
    pub async fn create_patient(
        &self,
        actor: &Actor,
        body: &Json,
        idempotency: Option<&Idempotency>,
    ) -> Result<Stored, EmrError> {
        let patient = match model::parse(body, model::patient(UtcInstant::now())) {
            Ok(patient) => patient,
            Err(errors) => {
                let error = EmrError::Invalid(errors);
                return self
                    .audited(actor, "CREATE", Kind::Patient, None, None, Err(error))
                    .await;
            }
        };
        let draft = Self::patient_draft(&actor.provider, &patient)?;
        let extra: Vec<WriteOp> = patient
            .email
            .iter()
            .map(|email| WriteOp::Put {
                item: email_claim(&actor.provider, email, Kind::Patient, &patient.mrn),
                condition: Condition::NotExists,
            })
            .collect();
        let mrn = patient.mrn.clone();
        self.create(actor, draft, extra, idempotency, |index| match index {
            0 => EmrError::Conflict(format!("a patient with MRN {mrn} already exists")),
            _ => email_taken(),
        })
        .await
    }

    /// A patient's profile.
    pub async fn get_patient(&self, actor: &Actor, mrn: &str) -> Result<Stored, EmrError> {
        let result = async {
            let mrn = parse_mrn(mrn)?;
            let item = self
                .load(&patient_key(&actor.provider, &mrn), Kind::Patient)
                .await?;
            Ok(stored(&item))
        }
        .await;
        self.audited(actor, "READ", Kind::Patient, Some(mrn), Some(mrn), result)
            .await
    }

    /// The patient with this email address (compared lower-cased).
    pub async fn patient_by_email(&self, actor: &Actor, email: &str) -> Result<Stored, EmrError> {
        let claim = self
            .table
            .get(&email_claim_key(&actor.provider, email))
            .await?;
        let mrn = claim
            .filter(|claim| s(claim, "owner").as_deref() == Some(Kind::Patient.as_str()))
            .and_then(|claim| s(&claim, "ownerId"));
        match mrn {
            Some(mrn) => self.get_patient(actor, &mrn).await,
            None => {
                self.audited(
                    actor,
                    "READ",
                    Kind::Patient,
                    None,
                    None,
                    Err(EmrError::NotFound(Kind::Patient.noun())),
                )
                .await
            }
        }
    }

    /// Updates a patient (merge patch, `If-Match`); an email change moves its claim in
    /// the same transaction.
    pub async fn update_patient(
        &self,
        actor: &Actor,
        mrn: &str,
        if_match: i64,
        patch: &Json,
    ) -> Result<Stored, EmrError> {
        let result = async {
            let mrn_id = parse_mrn(mrn)?;
            let current = self
                .load(&patient_key(&actor.provider, &mrn_id), Kind::Patient)
                .await?;
            let after = Self::patched(
                &current,
                patch,
                if_match,
                &[("mrn", "the MRN is the patient's id")],
            )?;
            let patient = model::parse(&after, model::patient(UtcInstant::now()))
                .map_err(EmrError::Invalid)?;
            let before: Json = s(&current, "data")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let old_email = before["email"].as_str().map(str::to_lowercase);
            let new_email = patient.email.as_deref().map(str::to_lowercase);
            let mut extra = Vec::new();
            if old_email != new_email {
                if let Some(new_email) = &new_email {
                    extra.push(WriteOp::Put {
                        item: email_claim(&actor.provider, new_email, Kind::Patient, mrn),
                        condition: Condition::NotExists,
                    });
                }
                if let Some(old_email) = &old_email {
                    extra.push(WriteOp::Delete {
                        key: email_claim_key(&actor.provider, old_email),
                        condition: Condition::None,
                    });
                }
            }
            let draft = Self::patient_draft(&actor.provider, &patient)?;
            self.replace(actor, &current, draft, if_match, extra, |_| email_taken())
                .await
        }
        .await;
        match result {
            Ok(stored) => Ok(stored),
            Err(error) => {
                self.audited(
                    actor,
                    "UPDATE",
                    Kind::Patient,
                    Some(mrn),
                    Some(mrn),
                    Err(error),
                )
                .await
            }
        }
    }

    /// The patients of a clinic, by MRN: the clinic's index shards merged.
    pub async fn clinic_patients(
        &self,
        actor: &Actor,
        clinic: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let result = async {
            check_identifier("clinic", clinic)?;
            let after = cursor.map(merge::decode_cursor).transpose()?;
            let streams = (0..EMR_INDEX_SHARDS)
                .map(|shard| {
                    range_stream(
                        Some("GSI2"),
                        keys::clinic_patients_pk(&actor.provider, clinic, shard),
                        "GSI2SK",
                        String::new(),
                        "~".into(),
                        Order::Forward,
                        limit,
                        after.clone(),
                        |_| true,
                    )
                })
                .collect();
            self.merged(streams, Order::Forward, limit, "GSI2SK").await
        }
        .await;
        self.audited(actor, "LIST", Kind::Patient, Some(clinic), None, result)
            .await
    }

    // ---------------- Clinicians ----------------

    fn clinician_draft(provider: &ProviderId, clinician: &model::Clinician) -> Draft {
        Draft {
            pk: keys::clinician_pk(provider, &clinician.id),
            sk: keys::CLINICIAN_PROFILE_SK.into(),
            kind: Kind::Clinician,
            id: clinician.id.clone(),
            patient: None,
            data: serde_json::to_value(clinician).unwrap_or_default(),
            item_type: None,
            status: None,
            index: vec![
                ("GSI2PK", keys::clinicians_pk(provider)),
                ("GSI2SK", clinician.id.clone()),
            ],
            expires_at: None,
        }
    }

    /// Creates a clinician (unique id, unique email).
    pub async fn create_clinician(
        &self,
        actor: &Actor,
        body: &Json,
        idempotency: Option<&Idempotency>,
    ) -> Result<Stored, EmrError> {
        let clinician = match model::parse(body, model::clinician) {
            Ok(clinician) => clinician,
            Err(errors) => {
                return self
                    .audited(
                        actor,
                        "CREATE",
                        Kind::Clinician,
                        None,
                        None,
                        Err(EmrError::Invalid(errors)),
                    )
                    .await;
            }
        };
        let draft = Self::clinician_draft(&actor.provider, &clinician);
        let extra = vec![WriteOp::Put {
            item: email_claim(
                &actor.provider,
                &clinician.email,
                Kind::Clinician,
                &clinician.id,
            ),
            condition: Condition::NotExists,
        }];
        let id = clinician.id.clone();
        self.create(actor, draft, extra, idempotency, |index| match index {
            0 => EmrError::Conflict(format!("a clinician with id {id} already exists")),
            _ => email_taken(),
        })
        .await
    }

    /// A clinician's profile.
    pub async fn get_clinician(&self, actor: &Actor, id: &str) -> Result<Stored, EmrError> {
        let result = async {
            check_identifier("id", id)?;
            let item = self
                .load(&clinician_key(&actor.provider, id), Kind::Clinician)
                .await?;
            Ok(stored(&item))
        }
        .await;
        self.audited(actor, "READ", Kind::Clinician, Some(id), None, result)
            .await
    }

    /// Updates a clinician (merge patch, `If-Match`).
    pub async fn update_clinician(
        &self,
        actor: &Actor,
        id: &str,
        if_match: i64,
        patch: &Json,
    ) -> Result<Stored, EmrError> {
        let result = async {
            check_identifier("id", id)?;
            let current = self
                .load(&clinician_key(&actor.provider, id), Kind::Clinician)
                .await?;
            let after = Self::patched(
                &current,
                patch,
                if_match,
                &[("id", "it is the clinician's key")],
            )?;
            let clinician = model::parse(&after, model::clinician).map_err(EmrError::Invalid)?;
            let before: Json = s(&current, "data")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let old_email = before["email"].as_str().unwrap_or_default().to_lowercase();
            let mut extra = Vec::new();
            if old_email != clinician.email.to_lowercase() {
                extra.push(WriteOp::Put {
                    item: email_claim(&actor.provider, &clinician.email, Kind::Clinician, id),
                    condition: Condition::NotExists,
                });
                extra.push(WriteOp::Delete {
                    key: email_claim_key(&actor.provider, &old_email),
                    condition: Condition::None,
                });
            }
            let draft = Self::clinician_draft(&actor.provider, &clinician);
            self.replace(actor, &current, draft, if_match, extra, |_| email_taken())
                .await
        }
        .await;
        match result {
            Ok(stored) => Ok(stored),
            Err(error) => {
                self.audited(actor, "UPDATE", Kind::Clinician, Some(id), None, Err(error))
                    .await
            }
        }
    }

    /// A provider's clinicians, by id.
    pub async fn list_clinicians(
        &self,
        actor: &Actor,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        self.gsi2_partition(keys::clinicians_pk(&actor.provider), limit, cursor)
            .await
    }

    /// `streams` merged by the sort-key attribute `sk_attr`, as a page of representations.
    async fn merged(
        &self,
        streams: Vec<Stream>,
        order: Order,
        limit: usize,
        sk_attr: &'static str,
    ) -> Result<Listed, EmrError> {
        let merged = merge::merge(self.table.as_ref(), streams, order, limit, |item| {
            s(item, sk_attr).unwrap_or_default()
        })
        .await?;
        Ok(listed(merged))
    }

    /// Every item of one `GSI2` partition in `GSI2SK` order, paged.
    async fn gsi2_partition(
        &self,
        pk: String,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let after = cursor.map(merge::decode_cursor).transpose()?;
        let stream = range_stream(
            Some("GSI2"),
            pk,
            "GSI2SK",
            String::new(),
            "~".into(),
            Order::Forward,
            limit,
            after,
            |_| true,
        );
        self.merged(vec![stream], Order::Forward, limit, "GSI2SK")
            .await
    }

    // ---------------- A patient's items ----------------

    /// Creates an appointment, a clinical record, a bill or a document (metadata) for a
    /// patient. Appointments claim the clinician's 5-minute slots in the same transaction,
    /// so two overlapping bookings cannot both succeed.
    pub async fn create_child(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        body: &Json,
        idempotency: Option<&Idempotency>,
    ) -> Result<Stored, EmrError> {
        let prepared = self.prepare_child(actor, kind, mrn, body).await;
        let (draft, extra, slots) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                return self
                    .audited(actor, "CREATE", kind, None, Some(mrn), Err(error))
                    .await;
            }
        };
        let checks = extra.len() - slots.len();
        let table = Arc::clone(&self.table);
        let result = self
            .create(actor, draft, extra, idempotency, |index| match index {
                0 => EmrError::Conflict("an item with this id already exists; retry".into()),
                i if i <= checks => EmrError::NotFound(match i {
                    1 => Kind::Patient.noun(),
                    2 => Kind::Clinician.noun(),
                    _ => Kind::Appointment.noun(),
                }),
                _ => EmrError::Conflict(
                    "the clinician is already booked for part of that time".into(),
                ),
            })
            .await;
        match result {
            // Name the appointment already holding the slot.
            Err(EmrError::Conflict(message)) if !slots.is_empty() && message.contains("booked") => {
                let mut holder = None;
                for slot in &slots {
                    if let Some(item) = table.get(slot).await? {
                        holder = s(&item, "appointmentId");
                        break;
                    }
                }
                Err(EmrError::Conflict(match holder {
                    Some(id) => format!(
                        "the clinician is already booked for part of that time (appointment {id})"
                    ),
                    None => message,
                }))
            }
            other => other,
        }
    }

    /// The draft of a new child item, its existence checks and (appointments) busy slots.
    async fn prepare_child(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        body: &Json,
    ) -> Result<(Draft, Vec<WriteOp>, Vec<Key>), EmrError> {
        let provider = &actor.provider;
        let mrn_id = parse_mrn(mrn)?;
        let now = UtcInstant::now();
        let patient_check = WriteOp::Check {
            key: patient_key(provider, &mrn_id),
            condition: Condition::Exists,
        };
        let pk = keys::patient_pk(provider, &mrn_id);
        let mut checks = vec![patient_check];
        let mut slots = Vec::new();
        let draft = match kind {
            Kind::Appointment => {
                let mut body = body.clone();
                if body.get("clinic").is_none() && body.is_object() {
                    let patient = self
                        .load(&patient_key(provider, &mrn_id), Kind::Patient)
                        .await?;
                    let data: Json = s(&patient, "data")
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default();
                    body["clinic"] = data["clinic"].clone();
                }
                let appointment =
                    model::parse(&body, model::appointment).map_err(EmrError::Invalid)?;
                if appointment.status != "SCHEDULED" {
                    return Err(invalid("status", "a new appointment is SCHEDULED"));
                }
                let start = appointment.start_instant();
                let id = UploadId::new(start, random_bits());
                checks.push(WriteOp::Check {
                    key: clinician_key(provider, &appointment.clinician_id),
                    condition: Condition::Exists,
                });
                slots = busy_slots(
                    provider,
                    &appointment.clinician_id,
                    start,
                    appointment.duration_minutes,
                );
                let day = self.local_day(provider, start).await?;
                appointment_draft(provider, &mrn_id, &id, &appointment, &day)
            }
            Kind::ClinicalRecord => {
                let record =
                    model::parse(body, model::clinical_record(now)).map_err(EmrError::Invalid)?;
                let id = UploadId::new(record.instant(), random_bits());
                checks.push(WriteOp::Check {
                    key: clinician_key(provider, &record.clinician_id),
                    condition: Condition::Exists,
                });
                if let Some(appointment) = &record.appointment_id {
                    let appointment = UploadId::parse(appointment)
                        .map_err(|_| invalid("appointmentId", "is not an appointment id"))?;
                    checks.push(WriteOp::Check {
                        key: Key::new(
                            pk.clone(),
                            keys::emr_sk(keys::APPOINTMENT_SK_PREFIX, &appointment),
                        ),
                        condition: Condition::Exists,
                    });
                }
                record_draft(provider, &mrn_id, &id, &record)
            }
            Kind::Bill => {
                let bill = model::parse(body, model::bill).map_err(EmrError::Invalid)?;
                let id = UploadId::new(bill.instant(), random_bits());
                child_draft(
                    provider,
                    &mrn_id,
                    Kind::Bill,
                    &id,
                    serde_json::to_value(&bill).unwrap_or_default(),
                    None,
                    None,
                    vec![],
                )
            }
            Kind::Document => {
                let info = model::parse(body, model::document).map_err(EmrError::Invalid)?;
                let id = UploadId::new(now, random_bits());
                let mut data = serde_json::to_value(&info).unwrap_or_default();
                data["status"] = json!("PENDING_UPLOAD");
                let mut draft = child_draft(
                    provider,
                    &mrn_id,
                    Kind::Document,
                    &id,
                    data,
                    Some(info.document_type.into()),
                    Some("PENDING_UPLOAD".into()),
                    vec![],
                );
                // An upload session: gone unless the file arrives in time.
                draft.expires_at = Some(now.unix_seconds() + DOCUMENT_UPLOAD_WINDOW_SECONDS);
                draft
            }
            Kind::Patient | Kind::Clinician => return Err(invalid("kind", "not a patient item")),
        };
        let mut extra = checks;
        extra.extend(slots.iter().map(|slot| {
            let mut item = Item::new();
            item.insert(PK.into(), Value::s(slot.pk.clone()));
            item.insert(SK.into(), Value::s(slot.sk.clone()));
            item.insert("entity".into(), Value::s("BUSY_SLOT"));
            item.insert("appointmentId".into(), Value::s(draft.id.clone()));
            WriteOp::Put {
                item,
                condition: Condition::NotExists,
            }
        }));
        Ok((draft, extra, slots))
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

    fn child_key(provider: &ProviderId, kind: Kind, mrn: &str, id: &str) -> Result<Key, EmrError> {
        let mrn = parse_mrn(mrn)?;
        let id = parse_entity_id(id, kind)?;
        Ok(Key::new(
            keys::patient_pk(provider, &mrn),
            keys::emr_sk(child_prefix(kind), &id),
        ))
    }

    /// One of a patient's items.
    pub async fn get_child(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        id: &str,
    ) -> Result<Stored, EmrError> {
        let result = async {
            let key = Self::child_key(&actor.provider, kind, mrn, id)?;
            Ok(stored(&self.load(&key, kind).await?))
        }
        .await;
        self.audited(actor, "READ", kind, Some(id), Some(mrn), result)
            .await
    }

    /// The raw stored item of a patient's item (documents need their object's key).
    pub async fn child_item(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        id: &str,
    ) -> Result<Item, EmrError> {
        let key = Self::child_key(&actor.provider, kind, mrn, id)?;
        self.load(&key, kind).await
    }

    /// Updates one of a patient's items (merge patch, `If-Match`). The time an item is
    /// filed under (appointment start and length, record visit date, bill issue time) and
    /// what it belongs to cannot change; an appointment's status follows its life cycle,
    /// and cancelling (or a no-show) frees the clinician's slots in the same transaction.
    pub async fn update_child(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        id: &str,
        if_match: i64,
        patch: &Json,
    ) -> Result<Stored, EmrError> {
        let result = self
            .update_child_inner(actor, kind, mrn, id, if_match, patch)
            .await;
        match result {
            Ok(stored) => Ok(stored),
            Err(error) => {
                self.audited(actor, "UPDATE", kind, Some(id), Some(mrn), Err(error))
                    .await
            }
        }
    }

    async fn update_child_inner(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        id: &str,
        if_match: i64,
        patch: &Json,
    ) -> Result<Stored, EmrError> {
        let provider = &actor.provider;
        let key = Self::child_key(provider, kind, mrn, id)?;
        let current = self.load(&key, kind).await?;
        let mrn_id = parse_mrn(mrn)?;
        let entity_id = parse_entity_id(id, kind)?;
        let reschedule = "to move an appointment, cancel it and book a new one";
        let (draft, extra) = match kind {
            Kind::Appointment => {
                let after = Self::patched(
                    &current,
                    patch,
                    if_match,
                    &[
                        ("clinicianId", reschedule),
                        ("start", reschedule),
                        ("durationMinutes", reschedule),
                        ("clinic", reschedule),
                    ],
                )?;
                let appointment =
                    model::parse(&after, model::appointment).map_err(EmrError::Invalid)?;
                let old_status = s(&current, "status").unwrap_or_default();
                if !model::appointment_transition_allowed(&old_status, appointment.status) {
                    return Err(EmrError::Conflict(format!(
                        "an appointment cannot go from {old_status} to {}",
                        appointment.status
                    )));
                }
                let mut extra = Vec::new();
                if model::appointment_holds_slot(&old_status)
                    && !model::appointment_holds_slot(appointment.status)
                {
                    extra.extend(
                        busy_slots(
                            provider,
                            &appointment.clinician_id,
                            appointment.start_instant(),
                            appointment.duration_minutes,
                        )
                        .into_iter()
                        .map(|key| WriteOp::Delete {
                            key,
                            condition: Condition::None,
                        }),
                    );
                }
                let day = self
                    .local_day(provider, appointment.start_instant())
                    .await?;
                (
                    appointment_draft(provider, &mrn_id, &entity_id, &appointment, &day),
                    extra,
                )
            }
            Kind::ClinicalRecord => {
                let after = Self::patched(
                    &current,
                    patch,
                    if_match,
                    &[(
                        "visit",
                        "a record is filed under its visit; write a new record",
                    )],
                )?;
                let record = model::parse(&after, model::clinical_record(UtcInstant::now()))
                    .map_err(EmrError::Invalid)?;
                // A new clinician must exist; the same one needs no check.
                let same_clinician = s(&current, "GSI1PK")
                    == Some(keys::clinician_pk(provider, &record.clinician_id));
                let extra = if same_clinician {
                    vec![]
                } else {
                    vec![WriteOp::Check {
                        key: clinician_key(provider, &record.clinician_id),
                        condition: Condition::Exists,
                    }]
                };
                (record_draft(provider, &mrn_id, &entity_id, &record), extra)
            }
            Kind::Bill => {
                let after = Self::patched(
                    &current,
                    patch,
                    if_match,
                    &[("issuedAt", "a bill is filed under its issue time")],
                )?;
                let bill = model::parse(&after, model::bill).map_err(EmrError::Invalid)?;
                (
                    child_draft(
                        provider,
                        &mrn_id,
                        Kind::Bill,
                        &entity_id,
                        serde_json::to_value(&bill).unwrap_or_default(),
                        None,
                        None,
                        vec![],
                    ),
                    vec![],
                )
            }
            Kind::Document => {
                let locked = "it describes the uploaded file";
                let mut after = Self::patched(
                    &current,
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
                let status = after["status"].clone();
                if let Json::Object(map) = &mut after {
                    map.remove("status");
                    map.remove("rejection");
                }
                let info = model::parse(&after, model::document).map_err(EmrError::Invalid)?;
                let mut data = serde_json::to_value(&info).unwrap_or_default();
                data["status"] = status.clone();
                let status = status.as_str().unwrap_or_default().to_owned();
                let index = document_index(provider, &entity_id, info.document_type, &status);
                let mut draft = child_draft(
                    provider,
                    &mrn_id,
                    Kind::Document,
                    &entity_id,
                    data,
                    Some(info.document_type.into()),
                    Some(status),
                    index,
                );
                draft.expires_at = current.get(EXPIRES_AT).and_then(Value::as_i64);
                (draft, vec![])
            }
            Kind::Patient | Kind::Clinician => return Err(invalid("kind", "not a patient item")),
        };
        self.replace(actor, &current, draft, if_match, extra, |_| {
            EmrError::NotFound(Kind::Clinician.noun())
        })
        .await
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
        from: &[&str],
        to: &str,
        rejection: Option<String>,
    ) -> Result<Stored, EmrError> {
        let provider = &actor.provider;
        let current = self.child_item(actor, Kind::Document, mrn, id).await?;
        let status = s(&current, "status").unwrap_or_default();
        if !from.contains(&status.as_str()) {
            return Err(EmrError::Conflict(format!("the document is {status}")));
        }
        let version = current.get(VERSION).and_then(Value::as_i64).unwrap_or(0);
        let mut data: Json = s(&current, "data")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        data["status"] = json!(to);
        if let Some(reason) = &rejection {
            data["rejection"] = json!(reason);
        }
        let mrn_id = parse_mrn(mrn)?;
        let entity_id = parse_entity_id(id, Kind::Document)?;
        let document_type = data["type"].as_str().unwrap_or("OTHER").to_owned();
        let index = document_index(provider, &entity_id, &document_type, to);
        let mut draft = child_draft(
            provider,
            &mrn_id,
            Kind::Document,
            &entity_id,
            data,
            Some(document_type),
            Some(to.into()),
            index,
        );
        if matches!(to, "PENDING_UPLOAD" | "RECEIVING") {
            draft.expires_at = current.get(EXPIRES_AT).and_then(Value::as_i64);
        }
        match self
            .replace(actor, &current, draft, version, vec![], |_| {
                EmrError::NotFound(Kind::Document.noun())
            })
            .await
        {
            Err(EmrError::PreconditionFailed { .. }) => Err(EmrError::Conflict(
                "the document changed meanwhile (another upload?)".into(),
            )),
            other => other,
        }
    }

    /// A patient's items of one kind in time order, with time, type and status filters.
    pub async fn list_children(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let mrn_id = parse_mrn(mrn)?;
            let prefix = child_prefix(kind);
            let (low, high) = time_range(prefix, &filter)?;
            let after = filter
                .cursor
                .as_deref()
                .map(merge::decode_cursor)
                .transpose()?;
            let keep = attribute_filter(&filter);
            let stream = range_stream(
                None,
                keys::patient_pk(&actor.provider, &mrn_id),
                SK,
                low,
                high,
                filter.order,
                filter.limit,
                after,
                keep,
            );
            self.merged(vec![stream], filter.order, filter.limit, SK)
                .await
        }
        .await;
        self.audited(actor, "LIST", kind, None, Some(mrn), result)
            .await
    }

    /// A clinician's appointments or clinical records in time order (`GSI1`).
    pub async fn clinician_items(
        &self,
        actor: &Actor,
        kind: Kind,
        clinician: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let result = async {
            check_identifier("id", clinician)?;
            let prefix = child_prefix(kind);
            let (low, high) = time_range(prefix, &filter)?;
            let after = filter
                .cursor
                .as_deref()
                .map(merge::decode_cursor)
                .transpose()?;
            let stream = range_stream(
                Some("GSI1"),
                keys::clinician_pk(&actor.provider, clinician),
                "GSI1SK",
                low,
                high,
                filter.order,
                filter.limit,
                after,
                attribute_filter(&filter),
            );
            self.merged(vec![stream], filter.order, filter.limit, "GSI1SK")
                .await
        }
        .await;
        self.audited(actor, "LIST", kind, Some(clinician), None, result)
            .await
    }

    /// A clinic's appointments on one local day, in time order (`GSI2`).
    pub async fn clinic_day(
        &self,
        actor: &Actor,
        clinic: &str,
        day: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let result = async {
            check_identifier("clinic", clinic)?;
            if ward_domain::time::parse_date(day).is_none() {
                return Err(invalid("date", "must be a real date written YYYY-MM-DD"));
            }
            self.gsi2_partition(
                keys::clinic_day_pk(&actor.provider, clinic, day),
                limit,
                cursor,
            )
            .await
        }
        .await;
        self.audited(actor, "LIST", Kind::Appointment, Some(clinic), None, result)
            .await
    }

    /// Clinical records or documents of one type across the provider, in time order: the
    /// type's index shards (`GSI3`) merged.
    pub async fn by_type(
        &self,
        actor: &Actor,
        kind: Kind,
        item_type: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let allowed = match kind {
                Kind::ClinicalRecord => model::RECORD_TYPES,
                _ => model::DOCUMENT_TYPES,
            };
            if !allowed.contains(&item_type) {
                return Err(invalid(
                    "type",
                    format!("must be one of {}", allowed.join(", ")),
                ));
            }
            let (low, high) = time_range("", &filter)?;
            let after = filter
                .cursor
                .as_deref()
                .map(merge::decode_cursor)
                .transpose()?;
            let streams = (0..EMR_INDEX_SHARDS)
                .map(|shard| {
                    let pk = match kind {
                        Kind::ClinicalRecord => {
                            keys::records_by_type_pk(&actor.provider, item_type, shard)
                        }
                        _ => keys::documents_by_type_pk(&actor.provider, item_type, shard),
                    };
                    range_stream(
                        Some("GSI3"),
                        pk,
                        "GSI3SK",
                        low.clone(),
                        high.clone(),
                        filter.order,
                        filter.limit,
                        after.clone(),
                        |_| true,
                    )
                })
                .collect();
            self.merged(streams, filter.order, filter.limit, "GSI3SK")
                .await
        }
        .await;
        self.audited(actor, "LIST", kind, Some(item_type), None, result)
            .await
    }

    /// One timeline of everything filed for a patient (CSV visits, appointments, clinical
    /// records, documents, bills), merged by time from the patient partition's item kinds.
    /// Each entry is `{"kind", "at", "item"}`.
    pub async fn timeline(
        &self,
        actor: &Actor,
        mrn: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let result = self.timeline_inner(actor, mrn, filter).await;
        self.audited(actor, "LIST", Kind::Patient, Some(mrn), Some(mrn), result)
            .await
    }

    async fn timeline_inner(
        &self,
        actor: &Actor,
        mrn: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let mrn_id = parse_mrn(mrn)?;
        let pk = keys::patient_pk(&actor.provider, &mrn_id);
        let after = filter
            .cursor
            .as_deref()
            .map(merge::decode_cursor)
            .transpose()?;
        let from = filter.from.map(|at| at.sortable()).unwrap_or_default();
        let to = filter
            .to
            .map(|at| at.sortable())
            .unwrap_or_else(|| "~".into());
        let kinds = [
            (keys::VISIT_SK_PREFIX, "visit"),
            (keys::APPOINTMENT_SK_PREFIX, "appointment"),
            (keys::CLINICAL_RECORD_SK_PREFIX, "clinicalRecord"),
            (keys::DOCUMENT_SK_PREFIX, "document"),
            (keys::BILL_SK_PREFIX, "bill"),
        ];
        let streams = kinds
            .iter()
            .map(|(prefix, _)| {
                let visits = *prefix == keys::VISIT_SK_PREFIX;
                // Sort-key bounds a little wider than the range (ids are whole seconds);
                // `keep` applies the exact range and the cursor on the merge key.
                let bound = |instant: Option<UtcInstant>, high: bool| match instant {
                    Some(at) if visits => keys::visit_sk(at) + if high { "~" } else { "" },
                    Some(at) => format!("{prefix}{}{}", compact(at), if high { "~" } else { "" }),
                    None if high => format!("{prefix}~"),
                    None => (*prefix).to_owned(),
                };
                let low = bound(filter.from, false);
                let high = bound(filter.to, true);
                let (from, to, after) = (from.clone(), to.clone(), after.clone());
                let order = filter.order;
                Stream {
                    query: Query {
                        index: None,
                        pk: pk.clone(),
                        sk: SkCondition::Between(low, high),
                        order,
                        limit: filter.limit,
                        cursor: None,
                    },
                    keep: Box::new(move |item| {
                        let key = timeline_key(item);
                        let instant = &key[..key.find('|').unwrap_or(key.len())];
                        instant >= from.as_str()
                            && instant <= to.as_str()
                            && after.as_deref().is_none_or(|after| match order {
                                Order::Forward => key.as_str() > after,
                                Order::Reverse => key.as_str() < after,
                            })
                    }),
                }
            })
            .collect();
        let merged = merge::merge(
            self.table.as_ref(),
            streams,
            filter.order,
            filter.limit,
            timeline_key,
        )
        .await?;
        let items = merged
            .items
            .iter()
            .map(|item| {
                let sk = s(item, SK).unwrap_or_default();
                let kind = kinds
                    .iter()
                    .find(|(prefix, _)| sk.starts_with(prefix))
                    .map_or("unknown", |(_, name)| *name);
                let key = timeline_key(item);
                let at = key.split('|').next().unwrap_or_default().to_owned();
                let body = if kind == "visit" {
                    ward_ports::VisitRecord::from_item(item)
                        .and_then(|record| serde_json::to_value(record).ok())
                        .unwrap_or_default()
                } else {
                    representation(item)
                };
                json!({"kind": kind, "at": at, "item": body})
            })
            .collect();
        Ok(Listed {
            items,
            next: merged.next,
        })
    }
}

/// How long a document's upload session lasts before the pending item expires.
pub const DOCUMENT_UPLOAD_WINDOW_SECONDS: i64 = 3600;

/// The timeline's merge key: `{sortable instant}|{sort key}`.
fn timeline_key(item: &Item) -> String {
    let sk = s(item, SK).unwrap_or_default();
    let instant = match sk.strip_prefix(keys::VISIT_SK_PREFIX) {
        Some(sortable) => sortable.to_owned(),
        None => sk
            .split_once('#')
            .and_then(|(_, id)| UploadId::parse(id).ok())
            .map(|id| id.instant().sortable())
            .unwrap_or_default(),
    };
    format!("{instant}|{sk}")
}

fn listed(merged: Merged) -> Listed {
    Listed {
        items: merged.items.iter().map(representation).collect(),
        next: merged.next,
    }
}

/// Sort-key bounds of `{prefix}{id}` items between the filter's times.
fn time_range(prefix: &str, filter: &ListFilter) -> Result<(String, String), EmrError> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(invalid("from", "is after to"));
    }
    let low = match filter.from {
        Some(from) => format!("{prefix}{}", compact(from)),
        None => prefix.to_owned(),
    };
    let high = match filter.to {
        Some(to) => format!("{prefix}{}~", compact(to)),
        None => format!("{prefix}~"),
    };
    Ok((low, high))
}

fn attribute_filter(filter: &ListFilter) -> impl Fn(&Item) -> bool + Send + Sync + 'static {
    let (item_type, status) = (filter.item_type.clone(), filter.status.clone());
    move |item| {
        item_type
            .as_deref()
            .is_none_or(|t| s(item, "itemType").as_deref() == Some(t))
            && status
                .as_deref()
                .is_none_or(|st| s(item, "status").as_deref() == Some(st))
    }
}

/// One partition read between `low` and `high` (sort-key attribute `sk_attr`), resuming
/// after the merge key `after`, keeping what `keep` accepts.
#[allow(clippy::too_many_arguments)]
fn range_stream(
    index: Option<&'static str>,
    pk: String,
    sk_attr: &'static str,
    low: String,
    high: String,
    order: Order,
    limit: usize,
    after: Option<String>,
    keep: impl Fn(&Item) -> bool + Send + Sync + 'static,
) -> Stream {
    let (low, high) = match (&after, order) {
        (Some(after), Order::Forward) if *after > low => (after.clone(), high),
        (Some(after), Order::Reverse) if *after < high => (low, after.clone()),
        _ => (low, high),
    };
    // DynamoDB refuses an empty key value, even as a bound.
    let sk = if low.is_empty() {
        SkCondition::Le(high)
    } else {
        SkCondition::Between(low, high)
    };
    Stream {
        query: Query {
            index,
            pk,
            sk,
            order,
            limit,
            cursor: None,
        },
        keep: Box::new(move |item| {
            let key = s(item, sk_attr).unwrap_or_default();
            keep(item)
                && after.as_deref().is_none_or(|after| match order {
                    Order::Forward => key.as_str() > after,
                    Order::Reverse => key.as_str() < after,
                })
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn child_draft(
    provider: &ProviderId,
    mrn: &Mrn,
    kind: Kind,
    id: &UploadId,
    data: Json,
    item_type: Option<String>,
    status: Option<String>,
    index: Vec<(&'static str, String)>,
) -> Draft {
    Draft {
        pk: keys::patient_pk(provider, mrn),
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

fn appointment_draft(
    provider: &ProviderId,
    mrn: &Mrn,
    id: &UploadId,
    appointment: &model::Appointment,
    day: &str,
) -> Draft {
    child_draft(
        provider,
        mrn,
        Kind::Appointment,
        id,
        serde_json::to_value(appointment).unwrap_or_default(),
        Some(appointment.appointment_type.into()),
        Some(appointment.status.into()),
        vec![
            (
                "GSI1PK",
                keys::clinician_pk(provider, &appointment.clinician_id),
            ),
            ("GSI1SK", keys::emr_sk(keys::APPOINTMENT_SK_PREFIX, id)),
            (
                "GSI2PK",
                keys::clinic_day_pk(provider, &appointment.clinic, day),
            ),
            ("GSI2SK", id.to_string()),
        ],
    )
}

fn record_draft(
    provider: &ProviderId,
    mrn: &Mrn,
    id: &UploadId,
    record: &model::ClinicalRecord,
) -> Draft {
    child_draft(
        provider,
        mrn,
        Kind::ClinicalRecord,
        id,
        serde_json::to_value(record).unwrap_or_default(),
        Some(record.record_type.into()),
        None,
        vec![
            ("GSI1PK", keys::clinician_pk(provider, &record.clinician_id)),
            ("GSI1SK", keys::emr_sk(keys::CLINICAL_RECORD_SK_PREFIX, id)),
            (
                "GSI3PK",
                keys::records_by_type_pk(
                    provider,
                    record.record_type,
                    keys::shard_of(id.as_str(), EMR_INDEX_SHARDS),
                ),
            ),
            ("GSI3SK", id.to_string()),
        ],
    )
}

/// A document is in the documents-by-type index once its file is checked.
fn document_index(
    provider: &ProviderId,
    id: &UploadId,
    document_type: &str,
    status: &str,
) -> Vec<(&'static str, String)> {
    if status != "AVAILABLE" {
        return vec![];
    }
    vec![
        (
            "GSI3PK",
            keys::documents_by_type_pk(
                provider,
                document_type,
                keys::shard_of(id.as_str(), EMR_INDEX_SHARDS),
            ),
        ),
        ("GSI3SK", id.to_string()),
    ]
}

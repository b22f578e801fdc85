//! Row-level rules: which patients an actor reaches, decided where each read builds its
//! key range, and break-glass.
//!
//! - An actor linked to nothing (an administrator, front desk, billing, an API key)
//!   reaches every patient of its provider.
//! - A patient reaches its own partition only.
//! - A clinician reaches the patients it has a **care relation** with: an appointment
//!   with it, or a clinical record by it. The relation is an item in the patient's
//!   partition (`ACCESS#{clinicianId}#CARE`), written in the same transaction as the
//!   appointment or record that makes it, so one query of the patient partition's
//!   `ACCESS#{clinicianId}#` prefix (at most two items) answers, with no scan. It is kept
//!   when the appointment is cancelled: the clinician was involved, and the minimum
//!   necessary is judged per patient, not per appointment. Clinic membership was not
//!   chosen: a clinic's whole patient list is far wider than the patients a clinician
//!   treats.
//! - Break-glass: a clinician gives a reason and gets an `ACCESS#{clinicianId}#EMERGENCY`
//!   item that expires (default [`DEFAULT_BREAK_GLASS_MINUTES`]); every access through it
//!   is audited with the reason, and the grant is listed for the provider's administrator.
//!
//! A patient out of reach is answered as a patient that does not exist (404): existence
//! does not leak.

use ward_domain::key_layout::{self as keys, CLINICIAN_INDEX};
use ward_domain::{ClinicianId, Link, Mrn, ProviderId, Pseudonyms, UtcInstant};
use ward_store::merge;
use ward_store::{Condition, EXPIRES_AT, Item, Order, PK, Query, SK, SkCondition, Value, WriteOp};

use super::{Emr, EmrError, checked_reason, invalid, parse_mrn, s};
use crate::audit::Actor;
use crate::model::Kind;

/// How long a break-glass grant lasts unless configured otherwise.
pub const DEFAULT_BREAK_GLASS_MINUTES: i64 = 60;
/// The longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The shortest reason accepted, in characters (a word or two is not a reason).
pub const MIN_REASON_CHARS: usize = 10;

/// A break-glass grant, as its clinician gets it and the administrator reviews it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// The grant's id.
    pub grant_id: String,
    /// The clinician.
    pub clinician_id: String,
    /// Who opened it (the principal).
    pub actor: String,
    /// The patient.
    pub mrn: String,
    /// Why.
    pub reason: String,
    /// When it was opened (RFC 3339, UTC).
    pub started_at: String,
    /// When it ends (RFC 3339, UTC).
    pub expires_at: String,
}

/// The care relation written with an appointment or clinical record of `clinician`.
pub(super) fn care_put(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    clinician: &ClinicianId,
) -> WriteOp {
    let patient = pseudonyms.patient(provider, mrn);
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(keys::patient_pk(provider, &patient)));
    item.insert(SK.into(), Value::s(keys::care_sk(clinician)));
    item.insert("entity".into(), Value::s("CARE"));
    item.insert("clinicianId".into(), Value::s(clinician.as_str()));
    item.insert("mrn".into(), Value::s(mrn.as_str()));
    item.insert(
        CLINICIAN_INDEX.pk.into(),
        Value::s(keys::clinician_pk(provider, clinician)),
    );
    item.insert(
        CLINICIAN_INDEX.sk.into(),
        Value::s(keys::care_index_sk(&patient)),
    );
    WriteOp::Put {
        item,
        condition: Condition::None,
    }
}

impl Emr {
    /// The actor as it reaches patient `mrn`: itself, or itself under a break-glass grant
    /// (its events then carry the grant's reason). A patient out of its reach is
    /// `NotFound`, like one that does not exist.
    pub async fn admit(&self, actor: &Actor, mrn: &str) -> Result<Actor, EmrError> {
        // An erased patient is gone for everyone who could have reached it (and for no
        // one else: the check reads only the caller's own provider).
        if let Ok(parsed) = parse_mrn(mrn) {
            let patient = self.pseudonyms.patient(&actor.provider, &parsed);
            self.refuse_erased(&actor.provider, &patient).await?;
        }
        match &actor.link {
            Link::None => Ok(actor.clone()),
            Link::Patient(own) if own.as_str() == mrn => Ok(actor.clone()),
            Link::Patient(_) => Err(EmrError::NotFound(Kind::Patient.noun())),
            Link::Clinician(clinician) => {
                let mrn = parse_mrn(mrn)?;
                let page = self
                    .table
                    .query(Query {
                        limit: 2,
                        ..Query::partition(
                            super::patient_pk(&self.pseudonyms, &actor.provider, &mrn),
                            SkCondition::BeginsWith(keys::access_sk_prefix(clinician)),
                        )
                    })
                    .await?;
                let now = UtcInstant::now().unix_seconds();
                let live = |sk: String| {
                    page.items.iter().find(|item| {
                        s(item, SK).as_deref() == Some(sk.as_str())
                            && !ward_store::item_is_expired(item, now)
                    })
                };
                if live(keys::care_sk(clinician)).is_some() {
                    return Ok(actor.clone());
                }
                match live(keys::emergency_sk(clinician)) {
                    Some(grant) => Ok(Actor {
                        emergency: Some(s(grant, "reason").unwrap_or_default()),
                        ..actor.clone()
                    }),
                    None => Err(EmrError::NotFound(Kind::Patient.noun())),
                }
            }
        }
    }

    /// [`Emr::admit`], with a refusal audited as the action it refused.
    pub(super) async fn admitted(
        &self,
        actor: &Actor,
        action: &str,
        kind: Kind,
        id: Option<&str>,
        mrn: &str,
    ) -> Result<Actor, EmrError> {
        match self.admit(actor, mrn).await {
            Ok(actor) => Ok(actor),
            Err(error) => {
                self.audit
                    .record(actor.event(action, kind.as_str(), id, Some(mrn), error.audit_result()))
                    .await;
                Err(error)
            }
        }
    }

    /// Opens a break-glass grant for the clinician `actor` to patient `mrn`, for
    /// `minutes`, with `reason`; audited as `BREAK_GLASS`.
    pub async fn break_glass(
        &self,
        actor: &Actor,
        mrn: &str,
        reason: &str,
        minutes: i64,
    ) -> Result<BreakGlass, EmrError> {
        let result = self.break_glass_inner(actor, mrn, reason, minutes).await;
        let audited_actor = Actor {
            emergency: Some(reason.trim().chars().take(MAX_REASON_CHARS).collect()),
            ..actor.clone()
        };
        self.audited(
            &audited_actor,
            "BREAK_GLASS",
            Kind::Patient,
            Some(mrn),
            Some(mrn),
            result,
        )
        .await
    }

    async fn break_glass_inner(
        &self,
        actor: &Actor,
        mrn: &str,
        reason: &str,
        minutes: i64,
    ) -> Result<BreakGlass, EmrError> {
        let Link::Clinician(clinician) = &actor.link else {
            return Err(invalid(
                "role",
                "only a clinician opens a break-glass grant; others reach patients by role",
            ));
        };
        let reason = checked_reason(reason, MIN_REASON_CHARS, MAX_REASON_CHARS)?;
        let mrn = parse_mrn(mrn)?;
        let provider = &actor.provider;
        let started = UtcInstant::now();
        let expires = started.unix_seconds() + minutes * 60;
        let grant_id = format!("{}-{:016x}", super::compact(started), super::random_bits());
        let mut grant = Item::new();
        grant.insert(
            PK.into(),
            Value::s(super::patient_pk(&self.pseudonyms, provider, &mrn)),
        );
        grant.insert(SK.into(), Value::s(keys::emergency_sk(clinician)));
        grant.insert("entity".into(), Value::s("EMERGENCY"));
        grant.insert("grantId".into(), Value::s(grant_id.as_str()));
        grant.insert("reason".into(), Value::s(reason));
        grant.insert(EXPIRES_AT.into(), Value::n(expires));
        let record = BreakGlass {
            grant_id: grant_id.clone(),
            clinician_id: clinician.as_str().to_owned(),
            actor: actor.actor.clone(),
            mrn: mrn.as_str().to_owned(),
            reason: reason.to_owned(),
            started_at: started.rfc3339_seconds(),
            expires_at: started.plus_seconds(minutes * 60).rfc3339_seconds(),
        };
        let mut log = Item::new();
        log.insert(PK.into(), Value::s(keys::break_glass_pk(provider)));
        log.insert(
            SK.into(),
            Value::s(format!("{}#{grant_id}", started.sortable())),
        );
        log.insert("entity".into(), Value::s("BREAKGLASS"));
        log.insert(
            "grant".into(),
            Value::s(serde_json::to_string(&record).unwrap_or_default()),
        );
        self.table
            .transact_write(vec![
                // The patient must exist: a grant to nobody reveals nothing, but is noise.
                WriteOp::Check {
                    key: super::patient_key(&self.pseudonyms, provider, &mrn),
                    condition: Condition::Exists,
                },
                WriteOp::Put {
                    item: grant,
                    condition: Condition::None,
                },
                WriteOp::Put {
                    item: log,
                    condition: Condition::NotExists,
                },
            ])
            .await
            .map_err(|error| match error {
                ward_store::StoreError::TransactionCanceled { index: 0 } => {
                    EmrError::NotFound(Kind::Patient.noun())
                }
                other => other.into(),
            })?;
        Ok(record)
    }

    /// The provider's break-glass grants, newest first.
    pub async fn break_glass_sessions(
        &self,
        provider: &ProviderId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<BreakGlass>, Option<String>), EmrError> {
        let (items, next) = self
            .newest_first(None, keys::break_glass_pk(provider), limit, cursor)
            .await?;
        let grants = items
            .iter()
            .filter_map(|item| s(item, "grant"))
            .filter_map(|text| serde_json::from_str::<BreakGlass>(&text).ok())
            .collect();
        Ok((grants, next))
    }

    /// One partition (of the table or an index) newest first, a page at a time; the
    /// cursor is the sort key of the last item listed, so the next page is older.
    async fn newest_first(
        &self,
        index: Option<&'static str>,
        pk: String,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), EmrError> {
        let sk = match cursor.map(merge::decode_cursor).transpose()? {
            Some(last) => SkCondition::Lt(last),
            None => SkCondition::Any,
        };
        let page = self
            .table
            .query(Query {
                index,
                pk,
                sk,
                order: Order::Reverse,
                limit,
                cursor: None,
            })
            .await?;
        let next = page
            .next
            .as_ref()
            .map(|next| merge::encode_cursor(&next.sk));
        Ok((page.items, next))
    }

    /// The audit events about patient `mrn` (who accessed its record), newest first,
    /// from the patient's own access-log index partition.
    pub async fn access_log(
        &self,
        actor: &Actor,
        mrn: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<serde_json::Value>, Option<String>), EmrError> {
        let actor = &self
            .admitted(actor, "LIST", Kind::Patient, Some(mrn), mrn)
            .await?;
        let result = async {
            let mrn_id = parse_mrn(mrn)?;
            let (items, next) = self
                .newest_first(
                    Some(keys::LIST_INDEX.name),
                    keys::access_log_pk(
                        &actor.provider,
                        &self.pseudonyms.patient(&actor.provider, &mrn_id),
                    ),
                    limit,
                    cursor,
                )
                .await?;
            let events = items
                .iter()
                .filter_map(ward_ports::AuditEvent::json_of)
                .map(|mut event| {
                    // The patient sees who, when, what and why; not the request plumbing.
                    if let Some(fields) = event.as_object_mut() {
                        fields.remove("clientAddress");
                        fields.remove("requestId");
                        fields.remove("detail");
                    }
                    event
                })
                .collect();
            Ok((events, next))
        }
        .await;
        self.audited(actor, "LIST", Kind::Patient, Some(mrn), Some(mrn), result)
            .await
    }
}

//! Erasure: a patient's right to be forgotten, by crypto-shredding.
//!
//! An erasure leaves a tombstone on the patient's pseudonym (`PROV#{p}#ERASED`, never the
//! MRN) and moves it through three states, each written before the step it names, so an
//! interrupted erasure runs again from where it stopped (`DELETE` again):
//! - `ERASING`: what refers to the patient from outside its partition goes (its email's
//!   claim, the busy slots of its appointments);
//! - `SHREDDING`: what the caller keeps of the patient elsewhere (its documents' objects,
//!   each taking its data key, and its sign-in accounts), then its partition
//!   (the table destroys the partition's data keys first, so no backup of the items can
//!   be read again);
//! - `ERASED`: from then on every read of the patient, and every write for it (an EMR
//!   create, an uploaded CSV row), answers 410 Gone.
//!
//! The audit trail keeps who did what: the erasure's event names the patient by its
//! pseudonym and holds the reason (sealed, as every event); earlier events stay as they
//! are (a legal record, see `docs/encryption.md`).

use futures::future::BoxFuture;
use serde_json::json;
use ward_domain::key_layout::{self as keys};
use ward_domain::{PatientKey, ProviderId, UtcInstant};
use ward_store::{Condition, Item, Key, PK, Query, SK, SkCondition, StoreError, Value};

use super::appointments::busy_slots;
use super::{Emr, EmrError, checked_reason, email_claim_key, parse_mrn, s, stored};
use crate::audit::Actor;
use crate::model::{self, Kind};

/// Characters an erasure's reason may have.
pub const MAX_ERASURE_REASON_CHARS: usize = 500;
const STATE: &str = "state";
const ERASED_AT: &str = "erasedAt";

/// Where an erasure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Erasing,
    Shredding,
    Erased,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Erasing => "ERASING",
            Self::Shredding => "SHREDDING",
            Self::Erased => "ERASED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Erasing, Self::Shredding, Self::Erased]
            .into_iter()
            .find(|stage| stage.as_str() == text)
    }
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The patient's pseudonym (what the audit trail names it by).
    pub patient_key: PatientKey,
    /// When the erasure began (sortable UTC).
    pub erased_at: String,
    /// Items removed from the patient's partition (this run).
    pub items: u64,
    /// Document objects removed (this run).
    pub documents: u64,
    /// Sign-in accounts linked to the patient removed (this run).
    pub users: u64,
}

/// What the caller removed of a patient outside the EMR's items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedElsewhere {
    /// Document objects.
    pub documents: u64,
    /// Sign-in accounts linked to the patient.
    pub users: u64,
}

fn tombstone_key(provider: &ProviderId, patient: &PatientKey) -> Key {
    Key::new(keys::erased_pk(provider), keys::erased_sk(patient))
}

fn tombstone(key: &Key, stage: Stage, erased_at: &str) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(key.pk.clone()));
    item.insert(SK.into(), Value::s(key.sk.clone()));
    item.insert("entity".into(), Value::s("ERASURE"));
    item.insert(STATE.into(), Value::s(stage.as_str()));
    item.insert(ERASED_AT.into(), Value::s(erased_at));
    item
}

/// Records that an erasure of `provider` moves now (before it removes anything, and when
/// it ends): what a byte-identical re-upload's shortcut looks at.
async fn mark_latest(
    table: &dyn ward_store::Table,
    provider: &ProviderId,
) -> Result<(), StoreError> {
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(keys::erased_pk(provider)));
    item.insert(SK.into(), Value::s(keys::LATEST_ERASURE_SK));
    item.insert(
        "erasedAtSeconds".into(),
        Value::n(UtcInstant::now().unix_seconds()),
    );
    table.put(item, Condition::None).await
}

impl Emr {
    /// When patient `mrn` of `provider` was erased, if it was (or is being).
    pub async fn erased_at(
        &self,
        provider: &ProviderId,
        patient: &PatientKey,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .table
            .get(&tombstone_key(provider, patient))
            .await?
            .map(|item| s(&item, ERASED_AT).unwrap_or_default()))
    }

    /// `Gone` if patient `mrn` of `provider` was erased.
    pub(super) async fn refuse_erased(
        &self,
        provider: &ProviderId,
        patient: &PatientKey,
    ) -> Result<(), EmrError> {
        match self.erased_at(provider, patient).await? {
            Some(erased_at) => Err(EmrError::Gone { erased_at }),
            None => Ok(()),
        }
    }

    /// Erases patient `mrn` (see the module's text), with `reason` (audited). `elsewhere`
    /// removes what the caller keeps of the patient (its document objects, its sign-in
    /// accounts) and says how much; it runs before the partition goes, and again if the
    /// erasure is run again.
    pub async fn erase(
        &self,
        actor: &Actor,
        mrn: &str,
        reason: &str,
        elsewhere: BoxFuture<'_, Result<RemovedElsewhere, String>>,
    ) -> Result<Erasure, EmrError> {
        let reason = checked_reason(reason, 1, MAX_ERASURE_REASON_CHARS)?;
        let mrn = parse_mrn(mrn)?;
        let provider = &actor.provider;
        let patient = self.pseudonyms.patient(provider, &mrn);
        let partition = keys::patient_pk(provider, &patient);
        let key = tombstone_key(provider, &patient);
        let mut event = actor.event(
            "ERASE",
            Kind::Patient.as_str(),
            Some(patient.as_str()),
            None,
            "",
        );
        let result = async {
            let (mut stage, erased_at) = match self.table.get(&key).await? {
                Some(item) => (
                    s(&item, STATE)
                        .as_deref()
                        .and_then(Stage::parse)
                        .unwrap_or(Stage::Erasing),
                    s(&item, ERASED_AT).unwrap_or_default(),
                ),
                None => {
                    // Two: the table may leave out one item of its own (a data key's
                    // record) from what it reads.
                    let empty = self
                        .table
                        .query(Query {
                            limit: 2,
                            ..Query::partition(&partition, SkCondition::Any)
                        })
                        .await?
                        .items
                        .is_empty();
                    if empty {
                        return Err(EmrError::NotFound(Kind::Patient.noun()));
                    }
                    let erased_at = UtcInstant::now().sortable();
                    match self
                        .table
                        .put(
                            tombstone(&key, Stage::Erasing, &erased_at),
                            Condition::NotExists,
                        )
                        .await
                    {
                        // Another erasure of the patient began meanwhile: this one joins it.
                        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                        Err(error) => return Err(error.into()),
                    }
                    (Stage::Erasing, erased_at)
                }
            };
            if stage == Stage::Erased {
                // A batch of an ingest already in flight when the erasure began may have
                // written rows since: they go now (their tombstone answered 410 for them
                // meanwhile). With nothing left, the patient is simply gone.
                let items = self.table.erase_partition(&partition).await?;
                if items == 0 {
                    return Err(EmrError::Gone { erased_at });
                }
                return Ok(Erasure {
                    patient_key: patient.clone(),
                    erased_at,
                    items,
                    documents: 0,
                    users: 0,
                });
            }
            mark_latest(&*self.table, provider).await?;
            if stage == Stage::Erasing {
                self.erase_references(provider, &mrn, &partition).await?;
                stage = Stage::Shredding;
                self.table
                    .put(tombstone(&key, stage, &erased_at), Condition::Exists)
                    .await?;
            }
            let removed = elsewhere.await.map_err(|why| {
                StoreError::Internal(format!("removing the patient elsewhere: {why}"))
            })?;
            let items = self.table.erase_partition(&partition).await?;
            self.table
                .put(
                    tombstone(&key, Stage::Erased, &erased_at),
                    Condition::Exists,
                )
                .await?;
            mark_latest(&*self.table, provider).await?;
            Ok(Erasure {
                patient_key: patient.clone(),
                erased_at,
                items,
                documents: removed.documents,
                users: removed.users,
            })
        }
        .await;
        event.result = match &result {
            Ok(_) => "SUCCESS".into(),
            Err(error) => error.audit_result().into(),
        };
        event.detail = Some(match &result {
            Ok(erasure) => json!({
                "reason": reason,
                "items": erasure.items,
                "documents": erasure.documents,
                "users": erasure.users,
            }),
            Err(_) => json!({ "reason": reason }),
        });
        self.audit.record(event).await;
        result
    }

    /// Removes what refers to the patient from outside its partition, read from the
    /// partition (so before it goes): its email's claim, its appointments' busy slots.
    /// (Its access log is an index of its audit events, which stay.)
    async fn erase_references(
        &self,
        provider: &ProviderId,
        mrn: &ward_domain::Mrn,
        partition: &str,
    ) -> Result<(), EmrError> {
        if let Some(profile) = self
            .table
            .get(&Key::new(partition, keys::PATIENT_PROFILE_SK))
            .await?
            && let Some(email) = stored(&profile)
                .fields
                .get("email")
                .and_then(serde_json::Value::as_str)
        {
            let claim = email_claim_key(&self.pseudonyms, provider, email);
            let owned = self.table.get(&claim).await?.is_some_and(|claim| {
                s(&claim, "owner").as_deref() == Some(Kind::Patient.as_str())
                    && s(&claim, "ownerId").as_deref() == Some(mrn.as_str())
            });
            if owned {
                self.table.delete(&claim, Condition::None).await?;
            }
        }
        let mut cursor = None;
        loop {
            let page = self
                .table
                .query(Query {
                    cursor,
                    limit: 100,
                    ..Query::partition(
                        partition,
                        SkCondition::BeginsWith(keys::APPOINTMENT_SK_PREFIX.into()),
                    )
                })
                .await?;
            for item in &page.items {
                let id = s(item, "id").unwrap_or_default();
                let data = serde_json::Value::Object(stored(item).fields);
                // An appointment its model no longer reads holds no slot worth freeing:
                // a slot names only its appointment, never the patient.
                let Ok(appointment) = model::parse(&data, model::appointment) else {
                    continue;
                };
                for slot in busy_slots(
                    provider,
                    &appointment.clinician_id,
                    appointment.start_instant(),
                    appointment.duration_minutes,
                ) {
                    let held = self.table.get(&slot).await?.is_some_and(|slot| {
                        s(&slot, "appointmentId").as_deref() == Some(id.as_str())
                    });
                    if held {
                        self.table.delete(&slot, Condition::None).await?;
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(())
    }
}

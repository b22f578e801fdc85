//! The routes shared by a patient's items (appointments, clinical records, documents,
//! bills): create, read and update, each dispatched once to its entity's module.

use serde_json::Value as Json;
use ward_domain::key_layout as keys;
use ward_domain::{ClinicianId, Mrn, ProviderId, Pseudonyms};
use ward_store::{Condition, Item, Key, WriteOp};

use super::{
    ChildId, Conflict, Draft, Emr, EmrError, Idempotency, Stored, child_prefix, invalid,
    parse_entity_id, parse_mrn, patient_key, s, stored,
};
use crate::audit::Actor;
use crate::model::Kind;

/// A new item of a patient, as its entity's module prepares it.
pub(super) struct NewChild {
    /// The item.
    pub(super) draft: Draft,
    /// What it refers to and must exist, beside the patient (the clinician, the
    /// appointment a record names), in this order.
    pub(super) checks: Vec<WriteOp>,
    /// The clinician's busy slots an appointment takes.
    pub(super) slots: Vec<Key>,
    /// The clinician it relates to the patient (appointments, clinical records).
    pub(super) clinician: Option<ClinicianId>,
}

impl NewChild {
    /// An item that refers to nothing but its patient.
    pub(super) fn alone(draft: Draft) -> Self {
        Self {
            draft,
            checks: Vec::new(),
            slots: Vec::new(),
            clinician: None,
        }
    }
}

/// A stored item of a patient, about to change.
pub(super) struct Changing<'a> {
    /// What names the patient in keys.
    pub(super) pseudonyms: &'a Pseudonyms,
    /// The tenant.
    pub(super) provider: &'a ProviderId,
    /// The patient.
    pub(super) mrn: &'a Mrn,
    /// The item's id.
    pub(super) id: &'a ChildId,
    /// The item as stored.
    pub(super) current: &'a Item,
}

impl Emr {
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
        let actor = &self.admitted(actor, "CREATE", kind, None, mrn).await?;
        let new = match self.new_child(actor, kind, mrn, body).await {
            Ok(new) => new,
            Err(error) => {
                return self
                    .audited(actor, "CREATE", kind, None, Some(mrn), Err(error))
                    .await;
            }
        };
        // The transaction: the item, its checks (the patient first), its slots.
        let checks = new.checks.len();
        let mut extra = new.checks;
        extra.extend(
            new.slots
                .iter()
                .map(|slot| super::appointments::busy_slot_put(slot, &new.draft.id)),
        );
        // An appointment or a clinical record makes (or keeps) the clinician's care
        // relation with the patient: the row-level rule's one lookup.
        if let (Some(clinician), Ok(mrn)) = (&new.clinician, parse_mrn(mrn)) {
            extra.push(super::access::care_put(
                &self.pseudonyms,
                &actor.provider,
                &mrn,
                clinician,
            ));
        }
        let result = self
            .create(actor, new.draft, extra, idempotency, |index| match index {
                0 => Conflict::IdTaken.into(),
                i if i <= checks => EmrError::NotFound(match i {
                    1 => Kind::Patient.noun(),
                    2 => Kind::Clinician.noun(),
                    _ => Kind::Appointment.noun(),
                }),
                _ => Conflict::ClinicianBooked { holder: None }.into(),
            })
            .await;
        match result {
            // Name the appointment already holding the slot.
            Err(EmrError::Conflict(Conflict::ClinicianBooked { holder: None }))
                if !new.slots.is_empty() =>
            {
                let mut holder = None;
                for slot in &new.slots {
                    if let Some(item) = self.table.get(slot).await? {
                        holder = s(&item, "appointmentId");
                        break;
                    }
                }
                Err(Conflict::ClinicianBooked { holder }.into())
            }
            other => other,
        }
    }

    /// A new item: its draft, its checks (the patient first) and its slots.
    async fn new_child(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        body: &Json,
    ) -> Result<NewChild, EmrError> {
        let provider = &actor.provider;
        let mrn = parse_mrn(mrn)?;
        let mut new = match kind {
            Kind::Appointment => self.new_appointment(provider, &mrn, body).await?,
            Kind::ClinicalRecord => {
                super::clinical_records::new_record(&self.pseudonyms, provider, &mrn, body)?
            }
            Kind::Document => {
                super::documents::new_document(&self.pseudonyms, provider, &mrn, body)?
            }
            Kind::Bill => super::bills::new_bill(&self.pseudonyms, provider, &mrn, body)?,
            Kind::Patient | Kind::Clinician => return Err(invalid("kind", "not a patient item")),
        };
        new.checks.insert(
            0,
            WriteOp::Check {
                key: patient_key(&self.pseudonyms, provider, &mrn),
                condition: Condition::Exists,
            },
        );
        Ok(new)
    }

    pub(super) fn child_key(
        &self,
        provider: &ProviderId,
        kind: Kind,
        mrn: &str,
        id: &str,
    ) -> Result<Key, EmrError> {
        let mrn = parse_mrn(mrn)?;
        let id = parse_entity_id(id, kind)?;
        Ok(Key::new(
            super::patient_pk(&self.pseudonyms, provider, &mrn),
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
        let actor = &self.admitted(actor, "READ", kind, Some(id), mrn).await?;
        let result = async {
            let key = self.child_key(&actor.provider, kind, mrn, id)?;
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
        let actor = &self.admit(actor, mrn).await?;
        let key = self.child_key(&actor.provider, kind, mrn, id)?;
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
        let actor = &self.admitted(actor, "UPDATE", kind, Some(id), mrn).await?;
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
        let key = self.child_key(provider, kind, mrn, id)?;
        let current = self.load(&key, kind).await?;
        let mrn = parse_mrn(mrn)?;
        let id = parse_entity_id(id, kind)?;
        let item = Changing {
            pseudonyms: &self.pseudonyms,
            provider,
            mrn: &mrn,
            id: &id,
            current: &current,
        };
        let (draft, extra) = match kind {
            Kind::Appointment => self.changed_appointment(&item, if_match, patch).await?,
            Kind::ClinicalRecord => {
                super::clinical_records::changed_record(&item, if_match, patch)?
            }
            Kind::Document => super::documents::changed_document(&item, if_match, patch)?,
            Kind::Bill => super::bills::changed_bill(&item, if_match, patch)?,
            Kind::Patient | Kind::Clinician => return Err(invalid("kind", "not a patient item")),
        };
        self.replace(actor, &current, draft, if_match, extra, |_| {
            EmrError::NotFound(Kind::Clinician.noun())
        })
        .await
    }
}

//! Patients: one profile per MRN, one owner per email address (a claim item written in
//! the same transaction), listed by clinic (`GSI2`, sharded).

use serde_json::Value as Json;
use ward_domain::key_layout::{self as keys, EMR_INDEX_SHARDS, LIST_INDEX};
use ward_domain::{ProviderId, UtcInstant};
use ward_store::merge;
use ward_store::{Condition, Order, WriteOp};

use super::lists::range_stream;
use super::{
    Conflict, Draft, Emr, EmrError, Idempotency, Listed, Stored, email_claim, email_claim_key,
    parse_clinic, parse_mrn, patient_key, s, stored,
};
use crate::FieldError;
use crate::audit::Actor;
use crate::model::{self, Kind};

impl Emr {
    fn patient_draft(
        &self,
        provider: &ProviderId,
        patient: &model::Patient,
    ) -> Result<Draft, EmrError> {
        let mrn = &patient.mrn;
        // A clinic's patients list in the order of their pseudonyms, not their MRNs.
        let key = self.pseudonyms.patient(provider, mrn);
        Ok(Draft {
            pk: keys::patient_pk(provider, &key),
            sk: keys::PATIENT_PROFILE_SK.into(),
            kind: Kind::Patient,
            id: mrn.to_string(),
            patient: None,
            data: serde_json::to_value(patient).unwrap_or_default(),
            item_type: None,
            status: None,
            index: vec![
                (
                    LIST_INDEX.pk,
                    keys::clinic_patients_pk(
                        provider,
                        &patient.clinic,
                        keys::shard_of(key.as_str(), EMR_INDEX_SHARDS),
                    ),
                ),
                (LIST_INDEX.sk, key.to_string()),
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
        let erased = self
            .refuse_erased(
                &actor.provider,
                &self.pseudonyms.patient(&actor.provider, &patient.mrn),
            )
            .await;
        if let Err(error) = erased {
            return self
                .audited(actor, "CREATE", Kind::Patient, None, None, Err(error))
                .await;
        }
        let draft = self.patient_draft(&actor.provider, &patient)?;
        let extra: Vec<WriteOp> = patient
            .email
            .iter()
            .map(|email| WriteOp::Put {
                item: email_claim(
                    &self.pseudonyms,
                    &actor.provider,
                    email,
                    Kind::Patient,
                    patient.mrn.as_str(),
                ),
                condition: Condition::NotExists,
            })
            .collect();
        let mrn = patient.mrn.clone();
        self.create(actor, draft, extra, idempotency, |index| match index {
            0 => Conflict::PatientExists(mrn.clone()).into(),
            _ => Conflict::EmailInUse.into(),
        })
        .await
    }

    /// A patient's profile.
    pub async fn get_patient(&self, actor: &Actor, mrn: &str) -> Result<Stored, EmrError> {
        let actor = &self
            .admitted(actor, "READ", Kind::Patient, Some(mrn), mrn)
            .await?;
        let result = async {
            let mrn = parse_mrn(mrn)?;
            let item = self
                .load(
                    &patient_key(&self.pseudonyms, &actor.provider, &mrn),
                    Kind::Patient,
                )
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
            .get(&email_claim_key(&self.pseudonyms, &actor.provider, email))
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
        let actor = &self
            .admitted(actor, "UPDATE", Kind::Patient, Some(mrn), mrn)
            .await?;
        let result = async {
            let mrn_id = parse_mrn(mrn)?;
            if actor.link.mrn().is_some() {
                own_changes_only(patch)?;
            }
            let current = self
                .load(
                    &patient_key(&self.pseudonyms, &actor.provider, &mrn_id),
                    Kind::Patient,
                )
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
                        item: email_claim(
                            &self.pseudonyms,
                            &actor.provider,
                            new_email,
                            Kind::Patient,
                            mrn,
                        ),
                        condition: Condition::NotExists,
                    });
                }
                if let Some(old_email) = &old_email {
                    extra.push(WriteOp::Delete {
                        key: email_claim_key(&self.pseudonyms, &actor.provider, old_email),
                        condition: Condition::None,
                    });
                }
            }
            let draft = self.patient_draft(&actor.provider, &patient)?;
            self.replace(actor, &current, draft, if_match, extra, |_| {
                Conflict::EmailInUse.into()
            })
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

    /// The patients of a clinic, in the order of their pseudonyms (stable, but not the
    /// order of their MRNs): the clinic's index shards merged.
    pub async fn clinic_patients(
        &self,
        actor: &Actor,
        clinic: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let clinic = parse_clinic(clinic)?;
            let after = cursor.map(merge::decode_cursor).transpose()?;
            let streams = (0..EMR_INDEX_SHARDS)
                .map(|shard| {
                    range_stream(
                        Some(LIST_INDEX.name),
                        keys::clinic_patients_pk(&actor.provider, &clinic, shard),
                        LIST_INDEX.sk,
                        String::new(),
                        "~".into(),
                        Order::Forward,
                        limit,
                        after.clone(),
                        |_| true,
                    )
                })
                .collect();
            self.merged(streams, Order::Forward, limit, LIST_INDEX.sk)
                .await
        }
        .await;
        self.audited(actor, "LIST", Kind::Patient, Some(clinic), None, result)
            .await
    }
}

/// What a patient may change of its own record: how to reach it and whom to call.
pub const PATIENT_CHANGEABLE: &[&str] = &["email", "phone", "address", "emergencyContact"];

/// Refuses a patient's patch of anything but [`PATIENT_CHANGEABLE`], each field named.
fn own_changes_only(patch: &Json) -> Result<(), EmrError> {
    let refused: Vec<FieldError> = patch
        .as_object()
        .into_iter()
        .flat_map(|fields| fields.keys())
        .filter(|field| !PATIENT_CHANGEABLE.contains(&field.as_str()))
        .map(|field| FieldError {
            field: field.clone(),
            reason: format!(
                "a patient changes only {} of its own record",
                PATIENT_CHANGEABLE.join(", ")
            ),
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(EmrError::Invalid(refused))
    }
}

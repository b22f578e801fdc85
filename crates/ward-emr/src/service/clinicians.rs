//! Clinicians: one profile per id, one owner per email address, listed by id (`GSI2`).

use serde_json::Value as Json;
use ward_domain::ProviderId;
use ward_domain::key_layout::{self as keys, LIST_INDEX};
use ward_store::{Condition, WriteOp};

use super::{
    Conflict, Draft, Emr, EmrError, Idempotency, Listed, Stored, clinician_key, email_claim,
    email_claim_key, parse_clinician, s, stored,
};
use crate::audit::Actor;
use crate::model::{self, Kind};

impl Emr {
    fn clinician_draft(provider: &ProviderId, clinician: &model::Clinician) -> Draft {
        Draft {
            pk: keys::clinician_pk(provider, &clinician.id),
            sk: keys::CLINICIAN_PROFILE_SK.into(),
            kind: Kind::Clinician,
            id: clinician.id.to_string(),
            patient: None,
            data: serde_json::to_value(clinician).unwrap_or_default(),
            item_type: None,
            status: None,
            index: vec![
                (LIST_INDEX.pk, keys::clinicians_pk(provider)),
                (LIST_INDEX.sk, clinician.id.to_string()),
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
                &self.pseudonyms,
                &actor.provider,
                &clinician.email,
                Kind::Clinician,
                clinician.id.as_str(),
            ),
            condition: Condition::NotExists,
        }];
        let id = clinician.id.clone();
        self.create(actor, draft, extra, idempotency, |index| match index {
            0 => Conflict::ClinicianExists(id.clone()).into(),
            _ => Conflict::EmailInUse.into(),
        })
        .await
    }

    /// A clinician's profile.
    pub async fn get_clinician(&self, actor: &Actor, id: &str) -> Result<Stored, EmrError> {
        let result = async {
            let clinician = parse_clinician("id", id)?;
            let item = self
                .load(&clinician_key(&actor.provider, &clinician), Kind::Clinician)
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
            let clinician_id = parse_clinician("id", id)?;
            let current = self
                .load(
                    &clinician_key(&actor.provider, &clinician_id),
                    Kind::Clinician,
                )
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
                    item: email_claim(
                        &self.pseudonyms,
                        &actor.provider,
                        &clinician.email,
                        Kind::Clinician,
                        id,
                    ),
                    condition: Condition::NotExists,
                });
                extra.push(WriteOp::Delete {
                    key: email_claim_key(&self.pseudonyms, &actor.provider, &old_email),
                    condition: Condition::None,
                });
            }
            let draft = Self::clinician_draft(&actor.provider, &clinician);
            self.replace(actor, &current, draft, if_match, extra, |_| {
                Conflict::EmailInUse.into()
            })
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
}

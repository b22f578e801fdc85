//! Clinical records: filed under their visit, listed by clinician (`GSI1`) and by type
//! across the provider (`GSI3`, sharded).

use serde_json::Value as Json;
use ward_domain::key_layout::{self as keys, CLINICIAN_INDEX, EMR_INDEX_SHARDS, TYPE_INDEX};
use ward_domain::{ClinicalRecordId, Mrn, ProviderId, Pseudonyms, TimeOrderedId, UtcInstant};
use ward_store::{Condition, Key, WriteOp};

use super::children::{Changing, NewChild};
use super::{Draft, Emr, EmrError, child_draft, clinician_key, patient_pk, random_bits, s};
use crate::model::{self, Kind};

/// A new clinical record: its clinician checked, and the appointment it names (of the
/// same patient), when it names one.
pub(super) fn new_record(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    body: &Json,
) -> Result<NewChild, EmrError> {
    let record =
        model::parse(body, model::clinical_record(UtcInstant::now())).map_err(EmrError::Invalid)?;
    let id = ClinicalRecordId::new(record.instant(), random_bits());
    let mut checks = vec![WriteOp::Check {
        key: clinician_key(provider, &record.clinician_id),
        condition: Condition::Exists,
    }];
    if let Some(appointment) = &record.appointment_id {
        checks.push(WriteOp::Check {
            key: Key::new(
                patient_pk(pseudonyms, provider, mrn),
                keys::emr_sk(keys::APPOINTMENT_SK_PREFIX, appointment),
            ),
            condition: Condition::Exists,
        });
    }
    Ok(NewChild {
        draft: record_draft(pseudonyms, provider, mrn, &id, &record),
        checks,
        slots: Vec::new(),
        clinician: Some(record.clinician_id.clone()),
    })
}

/// A changed clinical record: its visit is fixed; a new clinician must exist.
pub(super) fn changed_record(
    item: &Changing<'_>,
    if_match: i64,
    patch: &Json,
) -> Result<(Draft, Vec<WriteOp>), EmrError> {
    let after = Emr::patched(
        item.current,
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
    let same_clinician = s(item.current, CLINICIAN_INDEX.pk)
        == Some(keys::clinician_pk(item.provider, &record.clinician_id));
    let extra = if same_clinician {
        vec![]
    } else {
        vec![
            WriteOp::Check {
                key: clinician_key(item.provider, &record.clinician_id),
                condition: Condition::Exists,
            },
            super::access::care_put(
                item.pseudonyms,
                item.provider,
                item.mrn,
                &record.clinician_id,
            ),
        ]
    };
    Ok((
        record_draft(item.pseudonyms, item.provider, item.mrn, item.id, &record),
        extra,
    ))
}

fn record_draft(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    id: &impl TimeOrderedId,
    record: &model::ClinicalRecord,
) -> Draft {
    child_draft(
        pseudonyms,
        provider,
        mrn,
        Kind::ClinicalRecord,
        id,
        serde_json::to_value(record).unwrap_or_default(),
        Some(record.record_type.into()),
        None,
        vec![
            (
                CLINICIAN_INDEX.pk,
                keys::clinician_pk(provider, &record.clinician_id),
            ),
            (
                CLINICIAN_INDEX.sk,
                keys::emr_sk(keys::CLINICAL_RECORD_SK_PREFIX, id),
            ),
            (
                TYPE_INDEX.pk,
                keys::records_by_type_pk(
                    provider,
                    record.record_type,
                    keys::shard_of(id.as_str(), EMR_INDEX_SHARDS),
                ),
            ),
            (TYPE_INDEX.sk, id.to_string()),
        ],
    )
}

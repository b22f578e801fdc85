//! Appointments: a booking holds one busy-slot item per 5 minutes of the clinician's time,
//! written `attribute_not_exists` in the booking's transaction, so two overlapping
//! bookings cannot both succeed; cancelling (or a no-show) frees them in the same
//! transaction as the change.

use serde_json::Value as Json;
use ward_domain::key_layout::{self as keys, CLINICIAN_INDEX, LIST_INDEX};
use ward_domain::{
    AppointmentId, ClinicianId, Mrn, ProviderId, Pseudonyms, TimeOrderedId, UtcInstant,
};
use ward_store::{Condition, Item, Key, PK, SK, Value, WriteOp};

use super::children::{Changing, NewChild};
use super::{
    Conflict, Draft, Emr, EmrError, child_draft, clinician_key, corrupt, invalid, patient_key,
    random_bits, s,
};
use crate::model::{self, AppointmentStatus, Kind};

impl Emr {
    /// A new appointment: the patient's clinic unless the body names one, booked
    /// (`SCHEDULED`), its clinician checked, its slots claimed.
    pub(super) async fn new_appointment(
        &self,
        provider: &ProviderId,
        mrn: &Mrn,
        body: &Json,
    ) -> Result<NewChild, EmrError> {
        let mut body = body.clone();
        if body.get("clinic").is_none() && body.is_object() {
            let patient = self
                .load(&patient_key(&self.pseudonyms, provider, mrn), Kind::Patient)
                .await?;
            let data: Json = s(&patient, "data")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            body["clinic"] = data["clinic"].clone();
        }
        let appointment = model::parse(&body, model::appointment).map_err(EmrError::Invalid)?;
        if appointment.status != AppointmentStatus::Scheduled {
            return Err(invalid("status", "a new appointment is SCHEDULED"));
        }
        let start = appointment.start_instant();
        let id = AppointmentId::new(start, random_bits());
        let checks = vec![WriteOp::Check {
            key: clinician_key(provider, &appointment.clinician_id),
            condition: Condition::Exists,
        }];
        let slots = busy_slots(
            provider,
            &appointment.clinician_id,
            start,
            appointment.duration_minutes,
        );
        let day = self.local_day(provider, start).await?;
        Ok(NewChild {
            draft: appointment_draft(&self.pseudonyms, provider, mrn, &id, &appointment, &day),
            checks,
            slots,
            clinician: Some(appointment.clinician_id.clone()),
        })
    }

    /// A changed appointment: when, with whom and where are fixed (a new booking moves
    /// it); its status follows its life cycle, and leaving the booked states frees the
    /// clinician's slots.
    pub(super) async fn changed_appointment(
        &self,
        item: &Changing<'_>,
        if_match: i64,
        patch: &Json,
    ) -> Result<(Draft, Vec<WriteOp>), EmrError> {
        let reschedule = "to move an appointment, cancel it and book a new one";
        let after = Self::patched(
            item.current,
            patch,
            if_match,
            &[
                ("clinicianId", reschedule),
                ("start", reschedule),
                ("durationMinutes", reschedule),
                ("clinic", reschedule),
            ],
        )?;
        let appointment = model::parse(&after, model::appointment).map_err(EmrError::Invalid)?;
        let old_status = s(item.current, "status")
            .as_deref()
            .and_then(AppointmentStatus::parse)
            .ok_or_else(|| corrupt("appointment"))?;
        if !old_status.can_become(appointment.status) {
            return Err(Conflict::AppointmentTransition {
                from: old_status,
                to: appointment.status,
            }
            .into());
        }
        let mut extra = Vec::new();
        if old_status.holds_slot() && !appointment.status.holds_slot() {
            extra.extend(
                busy_slots(
                    item.provider,
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
            .local_day(item.provider, appointment.start_instant())
            .await?;
        Ok((
            appointment_draft(
                item.pseudonyms,
                item.provider,
                item.mrn,
                item.id,
                &appointment,
                &day,
            ),
            extra,
        ))
    }
}

/// The put of one busy slot, naming the appointment that holds it.
pub(super) fn busy_slot_put(slot: &Key, appointment: &str) -> WriteOp {
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(slot.pk.clone()));
    item.insert(SK.into(), Value::s(slot.sk.clone()));
    item.insert("entity".into(), Value::s("BUSY_SLOT"));
    item.insert("appointmentId".into(), Value::s(appointment));
    WriteOp::Put {
        item,
        condition: Condition::NotExists,
    }
}

/// The busy slots an appointment holds: (partition, sort key) per 5 minutes.
pub(super) fn busy_slots(
    provider: &ProviderId,
    clinician: &ClinicianId,
    start: UtcInstant,
    minutes: i64,
) -> Vec<Key> {
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

fn appointment_draft(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    id: &impl TimeOrderedId,
    appointment: &model::Appointment,
    day: &str,
) -> Draft {
    child_draft(
        pseudonyms,
        provider,
        mrn,
        Kind::Appointment,
        id,
        serde_json::to_value(appointment).unwrap_or_default(),
        Some(appointment.appointment_type.into()),
        Some(appointment.status.as_str().into()),
        vec![
            (
                CLINICIAN_INDEX.pk,
                keys::clinician_pk(provider, &appointment.clinician_id),
            ),
            (
                CLINICIAN_INDEX.sk,
                keys::emr_sk(keys::APPOINTMENT_SK_PREFIX, id),
            ),
            (
                LIST_INDEX.pk,
                keys::clinic_day_pk(provider, &appointment.clinic, day),
            ),
            (LIST_INDEX.sk, id.to_string()),
        ],
    )
}

//! An appointment: a clinician's time, its life cycle.

use super::payment::{Payment, payment};
use crate::fields::{Check, Obj, identifier, instant, integer, one_of, text};
use serde::Serialize;
use ward_domain::UtcInstant;

/// Appointment states.
pub const APPOINTMENT_STATUSES: &[&str] = &[
    "SCHEDULED",
    "CHECKED_IN",
    "COMPLETED",
    "CANCELLED",
    "NO_SHOW",
];
/// Appointment types.
pub const APPOINTMENT_TYPES: &[&str] = &[
    "CONSULTATION",
    "FOLLOW_UP",
    "CHECKUP",
    "PROCEDURE",
    "VACCINATION",
    "EMERGENCY",
    "OTHER",
];
/// Where an appointment happens.
pub const APPOINTMENT_MODES: &[&str] = &["IN_PERSON", "VIRTUAL"];
/// Appointments start on this grid (minutes) and last a multiple of it.
pub const SLOT_MINUTES: i64 = 5;
/// The longest appointment, in minutes (keeps a reschedule-free booking within one
/// transaction: one busy-slot item per 5 minutes).
pub const MAX_APPOINTMENT_MINUTES: i64 = 240;

/// Whether an appointment may move from `from` to `to`.
pub fn appointment_transition_allowed(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("SCHEDULED", "CHECKED_IN" | "CANCELLED" | "NO_SHOW")
                | ("CHECKED_IN", "COMPLETED" | "CANCELLED")
        )
}

/// Whether an appointment in this state holds its clinician's time.
pub fn appointment_holds_slot(status: &str) -> bool {
    !matches!(status, "CANCELLED" | "NO_SHOW")
}

/// An appointment of a patient with a clinician.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    /// The clinician seen.
    pub clinician_id: String,
    /// When it starts (UTC, RFC 3339).
    pub start: String,
    /// How long it lasts.
    pub duration_minutes: i64,
    /// The appointment type.
    #[serde(rename = "type")]
    pub appointment_type: &'static str,
    /// The clinic (the clinic-day index); defaults to the patient's clinic.
    pub clinic: String,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `SCHEDULED`, `CHECKED_IN`, `COMPLETED`, `CANCELLED` or `NO_SHOW`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<Payment>,
}

impl Appointment {
    /// The start instant.
    pub fn start_instant(&self) -> UtcInstant {
        UtcInstant::parse_rfc3339(&self.start).unwrap_or(UtcInstant::from_unix_nanos(0))
    }
}

/// Reads an appointment body.
pub fn appointment(check: &mut Check, obj: &Obj<'_>) -> Option<Appointment> {
    check.only(
        obj,
        &[
            "clinicianId",
            "start",
            "durationMinutes",
            "type",
            "clinic",
            "mode",
            "location",
            "reason",
            "status",
            "payment",
        ],
    );
    let clinician_id = check.field(obj, "clinicianId", true, identifier());
    let start = check.field(obj, "start", true, |check, path, value| {
        let start = instant()(check, path, value)?;
        if start.subsec_nanos() != 0 || start.unix_seconds() % (SLOT_MINUTES * 60) != 0 {
            return Err(format!(
                "must fall on a {SLOT_MINUTES}-minute boundary (such as 09:05:00)"
            ));
        }
        Ok(start)
    });
    let duration_minutes = check.field(obj, "durationMinutes", true, |check, path, value| {
        let minutes = integer(SLOT_MINUTES, MAX_APPOINTMENT_MINUTES)(check, path, value)?;
        if minutes % SLOT_MINUTES != 0 {
            return Err(format!("must be a multiple of {SLOT_MINUTES}"));
        }
        Ok(minutes)
    });
    let appointment_type = check.field(obj, "type", true, one_of(APPOINTMENT_TYPES));
    let clinic = check.field(obj, "clinic", true, identifier());
    let mode = check.field(obj, "mode", true, one_of(APPOINTMENT_MODES));
    let location = check.field(obj, "location", false, text(200));
    let reason = check.field(obj, "reason", false, text(1000));
    let status = check
        .field(obj, "status", false, one_of(APPOINTMENT_STATUSES))
        .unwrap_or("SCHEDULED");
    let payment = check.object(obj, "payment", false, payment);
    Some(Appointment {
        clinician_id: clinician_id?,
        start: start?.rfc3339_seconds(),
        duration_minutes: duration_minutes?,
        appointment_type: appointment_type?,
        clinic: clinic?,
        mode: mode?,
        location,
        reason,
        status,
        payment,
    })
}

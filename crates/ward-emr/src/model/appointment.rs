//! An appointment: a clinician's time, its life cycle.

use serde::Serialize;
use ward_domain::{ClinicName, ClinicianId, UtcInstant};

use super::payment::{Payment, payment};
use crate::fields::{Check, Obj, identifier, instant, integer, one_of, text};

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

/// Where an appointment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppointmentStatus {
    /// Booked.
    Scheduled,
    /// The patient has arrived.
    CheckedIn,
    /// Seen.
    Completed,
    /// Called off (frees the clinician's time).
    Cancelled,
    /// The patient did not come (frees the clinician's time).
    NoShow,
}

impl AppointmentStatus {
    /// The status as the API and the stored item write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::CheckedIn => "CHECKED_IN",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
            Self::NoShow => "NO_SHOW",
        }
    }

    /// The status written `text` (one of [`APPOINTMENT_STATUSES`]).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "SCHEDULED" => Self::Scheduled,
            "CHECKED_IN" => Self::CheckedIn,
            "COMPLETED" => Self::Completed,
            "CANCELLED" => Self::Cancelled,
            "NO_SHOW" => Self::NoShow,
            _ => return None,
        })
    }

    /// Whether an appointment may move from this status to `to`.
    pub fn can_become(self, to: Self) -> bool {
        use AppointmentStatus::*;
        self == to
            || matches!(
                (self, to),
                (Scheduled, CheckedIn | Cancelled | NoShow) | (CheckedIn, Completed | Cancelled)
            )
    }

    /// Whether an appointment in this status holds its clinician's time.
    pub fn holds_slot(self) -> bool {
        !matches!(self, Self::Cancelled | Self::NoShow)
    }
}

impl std::fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An appointment of a patient with a clinician.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    /// The clinician seen.
    #[serde(serialize_with = "super::as_text")]
    pub clinician_id: ClinicianId,
    /// When it starts (UTC, RFC 3339).
    pub start: String,
    /// How long it lasts.
    pub duration_minutes: i64,
    /// The appointment type.
    #[serde(rename = "type")]
    pub appointment_type: &'static str,
    /// The clinic (the clinic-day index); defaults to the patient's clinic.
    #[serde(serialize_with = "super::as_text")]
    pub clinic: ClinicName,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Where it is in its life.
    pub status: AppointmentStatus,
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
    let clinician_id = check.field(obj, "clinicianId", true, identifier(ClinicianId::parse));
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
    let clinic = check.field(obj, "clinic", true, identifier(ClinicName::parse));
    let mode = check.field(obj, "mode", true, one_of(APPOINTMENT_MODES));
    let location = check.field(obj, "location", false, text(200));
    let reason = check.field(obj, "reason", false, text(1000));
    let status = check
        .field(obj, "status", false, one_of(APPOINTMENT_STATUSES))
        .and_then(AppointmentStatus::parse)
        .unwrap_or(AppointmentStatus::Scheduled);
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

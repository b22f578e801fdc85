//! A clinician: identity, contact, working hours.

use serde::Serialize;
use ward_domain::ClinicianId;

use crate::fields::{Check, Obj, identifier, phone, text, time_of_day};

/// The days of a week, as working-hours keys.
pub const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Working hours of one day.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hours {
    start: String,
    end: String,
}

/// A clinician's profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Clinician {
    /// The clinician's id within the provider.
    #[serde(serialize_with = "super::as_text")]
    pub id: ClinicianId,
    first_name: String,
    last_name: String,
    /// Unique within the provider, across patients and clinicians.
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    licence_number: String,
    specialization: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    department: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    working_hours: std::collections::BTreeMap<String, Hours>,
}

/// Reads a clinician body.
pub fn clinician(check: &mut Check, obj: &Obj<'_>) -> Option<Clinician> {
    check.only(
        obj,
        &[
            "id",
            "firstName",
            "lastName",
            "email",
            "phone",
            "licenceNumber",
            "specialization",
            "department",
            "workingHours",
        ],
    );
    let id = check.field(obj, "id", true, identifier(ClinicianId::parse));
    let first_name = check.field(obj, "firstName", true, text(100));
    let last_name = check.field(obj, "lastName", true, text(100));
    let email = check.field(obj, "email", true, crate::fields::email());
    let phone = check.field(obj, "phone", false, phone());
    let licence_number = check.field(obj, "licenceNumber", true, text(50));
    let specialization = check.field(obj, "specialization", true, text(100));
    let department = check.field(obj, "department", false, text(100));
    let working_hours = check.object(obj, "workingHours", false, |check, obj| {
        check.only(obj, WEEKDAYS);
        let mut hours = std::collections::BTreeMap::new();
        for day in WEEKDAYS {
            let day_hours = check.object(obj, day, false, |check, obj| {
                check.only(obj, &["start", "end"]);
                let start = check.field(obj, "start", true, time_of_day())?;
                let end = check.field(obj, "end", true, time_of_day())?;
                if end <= start {
                    check.fail(obj.path("end"), "must be after start");
                    return None;
                }
                Some(Hours {
                    start: format!("{:02}:{:02}", start / 60, start % 60),
                    end: format!("{:02}:{:02}", end / 60, end % 60),
                })
            });
            if let Some(day_hours) = day_hours {
                hours.insert((*day).to_owned(), day_hours);
            }
        }
        Some(hours)
    });
    Some(Clinician {
        id: id?,
        first_name: first_name?,
        last_name: last_name?,
        email: email?,
        phone,
        licence_number: licence_number?,
        specialization: specialization?,
        department,
        working_hours: working_hours.unwrap_or_default(),
    })
}

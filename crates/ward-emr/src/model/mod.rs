//! The EMR entities, parsed from JSON bodies (parse, don't validate): an entity value exists
//! only when every field of the body is valid, and [`parse`] names every field that is not.
//!
//! The same parser reads a create body and the result of a merge patch on a stored entity,
//! so an update can never store what a create would refuse. One module per entity; this
//! one holds what they share: the kinds, [`parse`] and the merge patch.

mod appointment;
mod bill;
mod clinical_record;
mod clinician;
mod document;
mod patient;
mod payment;

pub use appointment::*;
pub use bill::*;
pub use clinical_record::*;
pub use clinician::*;
pub use document::*;
pub use patient::*;
pub use payment::*;

use serde_json::Value;
use ward_domain::UtcInstant;

use crate::fields::{Check, FieldError, Obj};

/// The kinds of entity, as named in the API, audit events and item `entity` attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A patient profile.
    Patient,
    /// A clinician profile.
    Clinician,
    /// An appointment.
    Appointment,
    /// A clinical record.
    ClinicalRecord,
    /// A document (metadata; bytes in object storage).
    Document,
    /// A bill with its services.
    Bill,
}

impl Kind {
    /// The item's `entity` attribute and the audit event's resource type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "PATIENT",
            Self::Clinician => "CLINICIAN",
            Self::Appointment => "APPOINTMENT",
            Self::ClinicalRecord => "CLINICAL_RECORD",
            Self::Document => "DOCUMENT",
            Self::Bill => "BILL",
        }
    }

    /// The kind an item's `entity` attribute names.
    pub fn parse(entity: &str) -> Option<Self> {
        [
            Self::Patient,
            Self::Clinician,
            Self::Appointment,
            Self::ClinicalRecord,
            Self::Document,
            Self::Bill,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == entity)
    }

    /// What a 404 names.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Patient => "the patient",
            Self::Clinician => "the clinician",
            Self::Appointment => "the appointment",
            Self::ClinicalRecord => "the clinical record",
            Self::Document => "the document",
            Self::Bill => "the bill",
        }
    }
}

/// Parses `body` with `read`, or returns every field error found.
pub fn parse<T>(
    body: &Value,
    read: impl FnOnce(&mut Check, &Obj<'_>) -> Option<T>,
) -> Result<T, Vec<FieldError>> {
    let mut check = Check::default();
    let parsed = Obj::root(&mut check, body).and_then(|root| read(&mut check, &root));
    match parsed {
        Some(parsed) if check.errors.is_empty() => Ok(parsed),
        _ => Err(check.errors),
    }
}

fn today_days(now: UtcInstant) -> i32 {
    now.unix_seconds().div_euclid(86_400) as i32
}

/// An entity id (`{yyyymmddThhmmssZ}-{16 hex}`), read with its type's `parse`.
pub fn entity_id<T: 'static>(
    parse: fn(&str) -> Result<T, ward_domain::IdError>,
) -> crate::fields::Parser<T> {
    Box::new(move |_, _, value| {
        value
            .as_str()
            .and_then(|raw| parse(raw).ok())
            .ok_or_else(|| "must be an id such as 20250601T103000Z-00000a1b2c3d4e5f".into())
    })
}

/// Writes a typed id as its text (the model's ids are `ward_domain` types).
pub(crate) fn as_text<S: serde::Serializer>(
    id: &impl AsRef<str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(id.as_ref())
}

/// Writes an optional typed id as its text (the field is skipped when absent).
pub(crate) fn as_optional_text<S: serde::Serializer, T: AsRef<str>>(
    id: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.serialize_str(id.as_ref()),
        None => serializer.serialize_none(),
    }
}

/// RFC 7396 JSON merge patch: `patch` applied to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(target) = target {
                for (name, value) in patch {
                    if value.is_null() {
                        target.remove(name);
                    } else {
                        merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> UtcInstant {
        UtcInstant::parse_rfc3339("2025-06-01T12:00:00Z").unwrap()
    }

    #[test]
    fn a_valid_patient_parses_and_serializes_back_to_the_same_fields() {
        let body = json!({
            "mrn": "MRN-1", "firstName": "Ann", "lastName": "Lee", "dateOfBirth": "1985-06-15",
            "sex": "FEMALE", "email": "ann@example.org", "phone": "+97412345678",
            "clinic": "NORTH", "bloodType": "O+", "allergies": ["Penicillin"],
            "address": {"line1": "1 Main St", "city": "Doha", "country": "QA"},
            "emergencyContact": {"name": "Bo Lee", "phone": "+97412345679"},
            "insurance": {"provider": "QIC", "memberNumber": "QIC1"}
        });
        let patient = parse(&body, patient(now())).unwrap();
        assert_eq!(serde_json::to_value(&patient).unwrap(), body);
    }

    #[test]
    fn an_invalid_patient_names_every_bad_field() {
        let body = json!({
            "mrn": "MRN#1", "firstName": "", "dateOfBirth": "2030-01-01", "sex": "F",
            "email": "not-an-email", "phone": "12345", "clinic": "NORTH",
            "address": {"line1": "x", "city": "y", "country": "Qatar"},
            "emergencyContact": {"name": "Bo"}, "shoeSize": 42
        });
        let errors = parse(&body, patient(now())).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "shoeSize",
                "mrn",
                "firstName",
                "lastName",
                "dateOfBirth",
                "sex",
                "email",
                "phone",
                "address.country",
                "emergencyContact.phone"
            ]
        );
        assert!(errors[4].reason.contains("future"), "{:?}", errors[4]);
    }

    #[test]
    fn vital_signs_are_checked_against_their_unit_and_range() {
        let body = json!({
            "type": "CONSULTATION", "clinicianId": "DR1",
            "visit": {"date": "2025-06-01T10:30:00+03:00"},
            "vitalSigns": {
                "heartRate": {"value": 700, "unit": "bpm"},
                "temperature": {"value": 98.6, "unit": "C"},
                "weight": {"value": 75.5, "unit": "stone"},
                "bloodPressure": {"systolic": 80, "diastolic": 120, "unit": "mmHg"}
            },
            "diagnoses": [{"code": "I25.9", "description": "ok"}, {"code": "125.9", "description": "bad"}]
        });
        let errors = parse(&body, clinical_record(now())).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "vitalSigns.bloodPressure.diastolic",
                "vitalSigns.heartRate.value",
                "vitalSigns.temperature.value",
                "vitalSigns.weight.unit",
                "diagnoses[1].code"
            ]
        );
        assert!(errors[2].reason.contains("25 to 45 C"), "{:?}", errors[2]);
        let fahrenheit = json!({
            "type": "CONSULTATION", "clinicianId": "DR1",
            "visit": {"date": "2025-06-01T10:30:00+03:00"},
            "vitalSigns": {"temperature": {"value": 98.6, "unit": "F"}}
        });
        let record = parse(&fahrenheit, clinical_record(now())).unwrap();
        assert_eq!(record.visit.date, "2025-06-01T07:30:00Z");
    }

    #[test]
    fn appointments_sit_on_the_five_minute_grid() {
        let body = |start: &str, minutes: i64| {
            json!({"clinicianId": "DR1", "start": start, "durationMinutes": minutes,
                   "type": "CHECKUP", "clinic": "NORTH", "mode": "IN_PERSON"})
        };
        assert!(parse(&body("2025-06-15T14:00:00+01:00", 30), appointment).is_ok());
        let errors = parse(&body("2025-06-15T14:02:00Z", 31), appointment).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["start", "durationMinutes"]);
        let status = |text| AppointmentStatus::parse(text).unwrap();
        assert!(status("SCHEDULED").can_become(status("CANCELLED")));
        assert!(!status("CANCELLED").can_become(status("SCHEDULED")));
        assert!(!status("COMPLETED").can_become(status("NO_SHOW")));
    }

    #[test]
    fn bills_check_currency_and_that_services_add_up() {
        let body = json!({"issuedAt": "2025-06-01T10:00:00Z", "amountMinor": 500, "currency": "usd",
            "status": "ISSUED", "services": [{"code": "99213", "description": "visit", "date": "2025-06-01", "amountMinor": 400}]});
        let errors = parse(&body, bill).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["currency", "amountMinor"],
            "every problem is named"
        );
        let mut fixed = body.clone();
        merge_patch(&mut fixed, &json!({"currency": "USD"}));
        let errors = parse(&fixed, bill).unwrap_err();
        assert_eq!(errors[0].field, "amountMinor");
        assert!(errors[0].reason.contains("add up to 400"));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}

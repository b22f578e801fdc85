//! A clinical record: vital signs, diagnoses, prescriptions, procedures, follow-up.

use serde::Serialize;
use ward_domain::{AppointmentId, ClinicianId, UtcInstant};

use super::entity_id;
use crate::fields::{
    Check, Obj, boolean, identifier, instant, integer, is_icd10cm_form, number, one_of, text,
};

/// Clinical record types (the records-by-type index).
pub const RECORD_TYPES: &[&str] = &[
    "CONSULTATION",
    "FOLLOW_UP",
    "EMERGENCY",
    "PROCEDURE",
    "LAB_RESULT",
    "IMAGING",
    "VACCINATION",
    "OTHER",
];
/// Diagnosis severities.
pub const SEVERITIES: &[&str] = &["MILD", "MODERATE", "SEVERE"];
/// Record states.
pub const RECORD_STATUSES: &[&str] = &["DRAFT", "FINAL", "AMENDED"];

/// A measured value with its unit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Measure {
    value: f64,
    unit: &'static str,
}

/// Blood pressure in mmHg.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BloodPressure {
    systolic: i64,
    diastolic: i64,
    unit: &'static str,
}

/// Vital signs; each is optional, each has a unit and a plausible range.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VitalSigns {
    #[serde(skip_serializing_if = "Option::is_none")]
    blood_pressure: Option<BloodPressure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heart_rate: Option<Measure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    respiratory_rate: Option<Measure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Measure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oxygen_saturation: Option<Measure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<Measure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<Measure>,
}

/// The units a vital sign may be given in, each with its plausible range.
type UnitRanges = &'static [(&'static str, f64, f64)];

const HEART_RATE: UnitRanges = &[("bpm", 20.0, 300.0)];
const RESPIRATORY_RATE: UnitRanges = &[("/min", 2.0, 80.0)];
const TEMPERATURE: UnitRanges = &[("C", 25.0, 45.0), ("F", 77.0, 113.0)];
const OXYGEN_SATURATION: UnitRanges = &[("%", 40.0, 100.0)];
const WEIGHT: UnitRanges = &[("kg", 0.2, 650.0), ("lb", 0.5, 1450.0)];
const HEIGHT: UnitRanges = &[("cm", 20.0, 280.0), ("in", 8.0, 110.0)];

fn measure(check: &mut Check, obj: &Obj<'_>, name: &str, units: UnitRanges) -> Option<Measure> {
    check.object(obj, name, false, |check, obj| {
        check.only(obj, &["value", "unit"]);
        let names: Vec<&str> = units.iter().map(|(unit, ..)| *unit).collect();
        let unit = check.field(obj, "unit", true, |_, _, value| {
            units
                .iter()
                .find(|(unit, ..)| value.as_str() == Some(unit))
                .ok_or_else(|| format!("must be one of {}", names.join(", ")))
        })?;
        let (unit_name, low, high) = *unit;
        let value = check.field(obj, "value", true, |check, path, value| {
            number(low, high)(check, path, value)
                .map_err(|_| format!("must be a number from {low} to {high} {unit_name}"))
        })?;
        Some(Measure {
            value,
            unit: unit_name,
        })
    })
}

fn vital_signs(check: &mut Check, obj: &Obj<'_>) -> Option<VitalSigns> {
    check.only(
        obj,
        &[
            "bloodPressure",
            "heartRate",
            "respiratoryRate",
            "temperature",
            "oxygenSaturation",
            "weight",
            "height",
        ],
    );
    let blood_pressure = check.object(obj, "bloodPressure", false, |check, obj| {
        check.only(obj, &["systolic", "diastolic", "unit"]);
        check.field(obj, "unit", true, one_of(&["mmHg"]))?;
        let systolic = check.field(obj, "systolic", true, integer(40, 300))?;
        let diastolic = check.field(obj, "diastolic", true, integer(20, 200))?;
        if diastolic >= systolic {
            check.fail(obj.path("diastolic"), "must be lower than systolic");
            return None;
        }
        Some(BloodPressure {
            systolic,
            diastolic,
            unit: "mmHg",
        })
    });
    Some(VitalSigns {
        blood_pressure,
        heart_rate: measure(check, obj, "heartRate", HEART_RATE),
        respiratory_rate: measure(check, obj, "respiratoryRate", RESPIRATORY_RATE),
        temperature: measure(check, obj, "temperature", TEMPERATURE),
        oxygen_saturation: measure(check, obj, "oxygenSaturation", OXYGEN_SATURATION),
        weight: measure(check, obj, "weight", WEIGHT),
        height: measure(check, obj, "height", HEIGHT),
    })
}

/// A diagnosis with its ICD-10-CM code.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnosis {
    code: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<&'static str>,
}

/// A prescription.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prescription {
    medication: String,
    dosage: String,
    frequency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
}

/// A procedure performed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Procedure {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    description: String,
}

/// The visit a record documents.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Visit {
    /// When (UTC, RFC 3339): the record's time.
    pub date: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    visit_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
}

/// Whether and when to see the patient again.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FollowUp {
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeframe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

/// A clinical record (a consultation and what came of it).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClinicalRecord {
    /// The record type (the records-by-type index).
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// The clinician who wrote it.
    #[serde(serialize_with = "super::as_text")]
    pub clinician_id: ClinicianId,
    /// The appointment it documents, if any.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::as_optional_text"
    )]
    pub appointment_id: Option<AppointmentId>,
    /// The visit; its date is the record's time.
    pub visit: Visit,
    #[serde(skip_serializing_if = "Option::is_none")]
    chief_complaint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    symptoms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vital_signs: Option<VitalSigns>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    diagnoses: Vec<Diagnosis>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    prescriptions: Vec<Prescription>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    procedures: Vec<Procedure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recommendations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up: Option<FollowUp>,
    status: &'static str,
}

impl ClinicalRecord {
    /// The visit's instant.
    pub fn instant(&self) -> UtcInstant {
        UtcInstant::parse_rfc3339(&self.visit.date).unwrap_or(UtcInstant::from_unix_nanos(0))
    }
}

/// Reads a clinical record body; the visit date may be at most a day ahead of `now`.
pub fn clinical_record(
    now: UtcInstant,
) -> impl FnOnce(&mut Check, &Obj<'_>) -> Option<ClinicalRecord> {
    move |check, obj| {
        check.only(
            obj,
            &[
                "type",
                "clinicianId",
                "appointmentId",
                "visit",
                "chiefComplaint",
                "symptoms",
                "vitalSigns",
                "diagnoses",
                "prescriptions",
                "procedures",
                "recommendations",
                "followUp",
                "status",
            ],
        );
        let record_type = check.field(obj, "type", true, one_of(RECORD_TYPES));
        let clinician_id = check.field(obj, "clinicianId", true, identifier(ClinicianId::parse));
        let appointment_id =
            check.field(obj, "appointmentId", false, entity_id(AppointmentId::parse));
        let visit = check.object(obj, "visit", true, |check, obj| {
            check.only(obj, &["date", "type", "durationMinutes", "location"]);
            let date = check.field(obj, "date", true, |check, path, value| {
                let at = instant()(check, path, value)?;
                if at > now.plus_seconds(86_400) {
                    return Err("is more than a day in the future".into());
                }
                Ok(at)
            });
            let visit_type = check.field(obj, "type", false, text(100));
            let duration_minutes = check.field(obj, "durationMinutes", false, integer(1, 1440));
            let location = check.field(obj, "location", false, text(200));
            Some(Visit {
                date: date?.rfc3339_seconds(),
                visit_type,
                duration_minutes,
                location,
            })
        });
        let chief_complaint = check.field(obj, "chiefComplaint", false, text(1000));
        let symptoms = check.list(obj, "symptoms", 50, |c, p, v| c.element_text(p, v, 200));
        let vital_signs = check.object(obj, "vitalSigns", false, vital_signs);
        let diagnoses = check.list(obj, "diagnoses", 50, |check, path, value| {
            check.element(path, value, |check, obj| {
                check.only(obj, &["code", "description", "severity"]);
                let code = check.field(obj, "code", true, |_, _, value| match value.as_str() {
                    Some(code) if is_icd10cm_form(code) => Ok(code.to_owned()),
                    _ => Err("must be an ICD-10-CM code such as I25.9 (letter, digit, letter or digit, then optionally a dot and 1-4 more)".into()),
                });
                let description = check.field(obj, "description", true, text(500));
                let severity = check.field(obj, "severity", false, one_of(SEVERITIES));
                Some(Diagnosis {
                    code: code?,
                    description: description?,
                    severity,
                })
            })
        });
        let prescriptions = check.list(obj, "prescriptions", 50, |check, path, value| {
            check.element(path, value, |check, obj| {
                check.only(obj, &["medication", "dosage", "frequency", "duration"]);
                let medication = check.field(obj, "medication", true, text(200));
                let dosage = check.field(obj, "dosage", true, text(100));
                let frequency = check.field(obj, "frequency", true, text(100));
                let duration = check.field(obj, "duration", false, text(100));
                Some(Prescription {
                    medication: medication?,
                    dosage: dosage?,
                    frequency: frequency?,
                    duration,
                })
            })
        });
        let procedures = check.list(obj, "procedures", 50, |check, path, value| {
            check.element(path, value, |check, obj| {
                check.only(obj, &["code", "description"]);
                let code = check.field(obj, "code", false, text(20));
                let description = check.field(obj, "description", true, text(500));
                Some(Procedure {
                    code,
                    description: description?,
                })
            })
        });
        let recommendations = check.list(obj, "recommendations", 50, |c, p, v| {
            c.element_text(p, v, 500)
        });
        let follow_up = check.object(obj, "followUp", false, |check, obj| {
            check.only(obj, &["required", "timeframe", "notes"]);
            let required = check.field(obj, "required", true, boolean());
            let timeframe = check.field(obj, "timeframe", false, text(100));
            let notes = check.field(obj, "notes", false, text(1000));
            Some(FollowUp {
                required: required?,
                timeframe,
                notes,
            })
        });
        let status = check
            .field(obj, "status", false, one_of(RECORD_STATUSES))
            .unwrap_or("FINAL");
        Some(ClinicalRecord {
            record_type: record_type?,
            clinician_id: clinician_id?,
            appointment_id,
            visit: visit?,
            chief_complaint,
            symptoms: symptoms.unwrap_or_default(),
            vital_signs,
            diagnoses: diagnoses.unwrap_or_default(),
            prescriptions: prescriptions.unwrap_or_default(),
            procedures: procedures.unwrap_or_default(),
            recommendations: recommendations.unwrap_or_default(),
            follow_up,
            status,
        })
    }
}

//! The EMR entities, parsed from JSON bodies (parse, don't validate): an entity value exists
//! only when every field of the body is valid, and [`parse`] names every field that is not.
//!
//! The same parser reads a create body and the result of a merge patch on a stored entity,
//! so an update can never store what a create would refuse.

use serde::Serialize;
use serde_json::Value;
use ward_domain::UtcInstant;

use crate::fields::{
    Check, FieldError, Obj, boolean, country, currency, date, identifier, instant, integer,
    is_icd10cm_form, number, one_of, phone, sha256_hex, text, time_of_day,
};

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

// ---------- Patient ----------

/// Sex as recorded administratively.
pub const SEXES: &[&str] = &["FEMALE", "MALE", "OTHER", "UNKNOWN"];
/// ABO/Rh blood types.
pub const BLOOD_TYPES: &[&str] = &["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"];

/// A postal address.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_code: Option<String>,
    country: String,
}

fn address(check: &mut Check, obj: &Obj<'_>) -> Option<Address> {
    check.only(
        obj,
        &["line1", "line2", "city", "region", "postalCode", "country"],
    );
    Some(Address {
        line1: check.field(obj, "line1", true, text(200))?,
        line2: check.field(obj, "line2", false, text(200)),
        city: check.field(obj, "city", true, text(100))?,
        region: check.field(obj, "region", false, text(100)),
        postal_code: check.field(obj, "postalCode", false, text(20)),
        country: check.field(obj, "country", true, country())?,
    })
}

/// Someone to call in an emergency.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyContact {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    relationship: Option<String>,
    phone: String,
}

/// Insurance cover.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Insurance {
    provider: String,
    member_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_number: Option<String>,
}

/// A patient's profile; the MRN is the patient's id within the provider.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    /// The medical record number.
    pub mrn: String,
    first_name: String,
    last_name: String,
    date_of_birth: String,
    sex: &'static str,
    /// Unique within the provider (compared lower-cased).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<Address>,
    /// The clinic the patient belongs to (patients-of-a-clinic index).
    pub clinic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    blood_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allergies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emergency_contact: Option<EmergencyContact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    insurance: Option<Insurance>,
}

/// Reads a patient body.
pub fn patient(now: UtcInstant) -> impl FnOnce(&mut Check, &Obj<'_>) -> Option<Patient> {
    move |check, obj| {
        check.only(
            obj,
            &[
                "mrn",
                "firstName",
                "lastName",
                "dateOfBirth",
                "sex",
                "email",
                "phone",
                "address",
                "clinic",
                "bloodType",
                "allergies",
                "emergencyContact",
                "insurance",
            ],
        );
        let mrn = check.field(obj, "mrn", true, identifier());
        let first_name = check.field(obj, "firstName", true, text(100));
        let last_name = check.field(obj, "lastName", true, text(100));
        let date_of_birth = check.field(obj, "dateOfBirth", true, date(Some(today_days(now))));
        let sex = check.field(obj, "sex", true, one_of(SEXES));
        let email = check.field(obj, "email", false, crate::fields::email());
        let phone = check.field(obj, "phone", false, crate::fields::phone());
        let address = check.object(obj, "address", false, address);
        let clinic = check.field(obj, "clinic", true, identifier());
        let blood_type = check.field(obj, "bloodType", false, one_of(BLOOD_TYPES));
        let allergies = check.list(obj, "allergies", 50, |c, p, v| c.element_text(p, v, 200));
        let emergency_contact = check.object(obj, "emergencyContact", false, |check, obj| {
            check.only(obj, &["name", "relationship", "phone"]);
            Some(EmergencyContact {
                name: check.field(obj, "name", true, text(200))?,
                relationship: check.field(obj, "relationship", false, text(100)),
                phone: check.field(obj, "phone", true, crate::fields::phone())?,
            })
        });
        let insurance = check.object(obj, "insurance", false, |check, obj| {
            check.only(obj, &["provider", "memberNumber", "groupNumber"]);
            Some(Insurance {
                provider: check.field(obj, "provider", true, text(200))?,
                member_number: check.field(obj, "memberNumber", true, text(64))?,
                group_number: check.field(obj, "groupNumber", false, text(64)),
            })
        });
        Some(Patient {
            mrn: mrn?,
            first_name: first_name?,
            last_name: last_name?,
            date_of_birth: date_of_birth?,
            sex: sex?,
            email,
            phone,
            address,
            clinic: clinic?,
            blood_type,
            allergies: allergies.unwrap_or_default(),
            emergency_contact,
            insurance,
        })
    }
}

// ---------- Clinician ----------

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
    pub id: String,
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
    let id = check.field(obj, "id", true, identifier());
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

// ---------- Payment, shared by appointments ----------

/// Payment states.
pub const PAYMENT_STATUSES: &[&str] = &["PENDING", "PAID", "WAIVED", "REFUNDED"];
/// Payment methods.
pub const PAYMENT_METHODS: &[&str] = &["INSURANCE", "CARD", "CASH", "BANK_TRANSFER", "OTHER"];

/// An amount in a currency's minor units (cents): `12050` + `USD` is $120.50.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    amount_minor: i64,
    currency: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
}

/// The largest amount accepted, in minor units.
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

fn payment(check: &mut Check, obj: &Obj<'_>) -> Option<Payment> {
    check.only(obj, &["amountMinor", "currency", "status", "method"]);
    let amount_minor = check.field(obj, "amountMinor", true, integer(0, MAX_AMOUNT_MINOR));
    let currency = check.field(obj, "currency", true, currency());
    let status = check.field(obj, "status", true, one_of(PAYMENT_STATUSES));
    let method = check.field(obj, "method", false, one_of(PAYMENT_METHODS));
    Some(Payment {
        amount_minor: amount_minor?,
        currency: currency?,
        status: status?,
        method,
    })
}

// ---------- Appointment ----------

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

// ---------- Clinical record ----------

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
    pub clinician_id: String,
    /// The appointment it documents, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appointment_id: Option<String>,
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
        let clinician_id = check.field(obj, "clinicianId", true, identifier());
        let appointment_id = check.field(obj, "appointmentId", false, entity_id());
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

/// An entity id (`{yyyymmddThhmmssZ}-{16 hex}`).
pub fn entity_id() -> crate::fields::Parser<String> {
    Box::new(|_, _, value| {
        value
            .as_str()
            .and_then(|raw| ward_domain::UploadId::parse(raw).ok())
            .map(|id| id.as_str().to_owned())
            .ok_or_else(|| "must be an id such as 20250601T103000Z-00000a1b2c3d4e5f".into())
    })
}

// ---------- Document ----------

/// Document types (the documents-by-type index).
pub const DOCUMENT_TYPES: &[&str] = &[
    "LAB_REPORT",
    "IMAGING",
    "ECG_REPORT",
    "PRESCRIPTION",
    "REFERRAL",
    "CONSENT",
    "DISCHARGE_SUMMARY",
    "OTHER",
];
/// Media types a document may have.
pub const DOCUMENT_MEDIA_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/tiff",
    "application/dicom",
    "text/plain",
];
/// The largest document, in bytes.
pub const MAX_DOCUMENT_BYTES: i64 = 100 * 1024 * 1024;

/// A document's metadata; its bytes live in object storage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentInfo {
    /// The document type (the documents-by-type index).
    #[serde(rename = "type")]
    pub document_type: &'static str,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    file_name: String,
    /// The media type the upload must carry.
    pub media_type: &'static str,
    /// The size the upload must have.
    pub size_bytes: i64,
    /// The SHA-256 the upload must have.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_id: Option<String>,
}

/// Reads a document's metadata.
pub fn document(check: &mut Check, obj: &Obj<'_>) -> Option<DocumentInfo> {
    check.only(
        obj,
        &[
            "type",
            "title",
            "description",
            "fileName",
            "mediaType",
            "sizeBytes",
            "sha256",
            "recordId",
        ],
    );
    let document_type = check.field(obj, "type", true, one_of(DOCUMENT_TYPES));
    let title = check.field(obj, "title", true, text(200));
    let description = check.field(obj, "description", false, text(2000));
    let file_name = check.field(obj, "fileName", true, |check, path, value| {
        let name = text(200)(check, path, value)?;
        if name.contains(['/', '\\', '"']) || name.starts_with('.') {
            return Err("must be a plain file name (no path, no quotes)".into());
        }
        Ok(name)
    });
    let media_type = check.field(obj, "mediaType", true, one_of(DOCUMENT_MEDIA_TYPES));
    let size_bytes = check.field(obj, "sizeBytes", true, integer(1, MAX_DOCUMENT_BYTES));
    let sha256 = check.field(obj, "sha256", true, sha256_hex());
    let record_id = check.field(obj, "recordId", false, entity_id());
    Some(DocumentInfo {
        document_type: document_type?,
        title: title?,
        description,
        file_name: file_name?,
        media_type: media_type?,
        size_bytes: size_bytes?,
        sha256: sha256?,
        record_id,
    })
}

// ---------- Billing ----------

/// Bill states.
pub const BILL_STATUSES: &[&str] = &["DRAFT", "ISSUED", "PAID", "VOID", "REFUNDED"];

/// A service billed: a line of a bill.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    code: String,
    description: String,
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_minor: Option<i64>,
}

/// A bill of a patient.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bill {
    /// When the bill was issued (UTC, RFC 3339): its time.
    pub issued_at: String,
    amount_minor: i64,
    currency: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    appointment_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<Service>,
}

impl Bill {
    /// The issue instant.
    pub fn instant(&self) -> UtcInstant {
        UtcInstant::parse_rfc3339(&self.issued_at).unwrap_or(UtcInstant::from_unix_nanos(0))
    }
}

/// Reads a bill body; service lines that carry amounts must add up to the bill's amount.
pub fn bill(check: &mut Check, obj: &Obj<'_>) -> Option<Bill> {
    check.only(
        obj,
        &[
            "issuedAt",
            "amountMinor",
            "currency",
            "status",
            "appointmentId",
            "services",
        ],
    );
    let issued_at = check.field(obj, "issuedAt", true, instant());
    let amount_minor = check.field(obj, "amountMinor", true, integer(0, MAX_AMOUNT_MINOR));
    let currency = check.field(obj, "currency", true, currency());
    let status = check.field(obj, "status", true, one_of(BILL_STATUSES));
    let appointment_id = check.field(obj, "appointmentId", false, entity_id());
    let services = check.list(obj, "services", 100, |check, path, value| {
        check.element(path, value, |check, obj| {
            check.only(obj, &["code", "description", "date", "amountMinor"]);
            let code = check.field(obj, "code", true, text(20));
            let description = check.field(obj, "description", true, text(500));
            let date = check.field(obj, "date", true, date(None));
            let amount_minor = check.field(obj, "amountMinor", false, integer(0, MAX_AMOUNT_MINOR));
            Some(Service {
                code: code?,
                description: description?,
                date: date?,
                amount_minor,
            })
        })
    });
    let services = services.unwrap_or_default();
    let amount_minor = amount_minor?;
    if !services.is_empty() && services.iter().all(|s| s.amount_minor.is_some()) {
        let sum: i64 = services.iter().filter_map(|s| s.amount_minor).sum();
        if sum != amount_minor {
            check.fail(
                obj.path("amountMinor"),
                format!("is {amount_minor} but the services add up to {sum}"),
            );
            return None;
        }
    }
    Some(Bill {
        issued_at: issued_at?.rfc3339_seconds(),
        amount_minor,
        currency: currency?,
        status: status?,
        appointment_id,
        services,
    })
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
        assert!(appointment_transition_allowed("SCHEDULED", "CANCELLED"));
        assert!(!appointment_transition_allowed("CANCELLED", "SCHEDULED"));
        assert!(!appointment_transition_allowed("COMPLETED", "NO_SHOW"));
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

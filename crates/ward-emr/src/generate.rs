//! A realistic, deterministic demo dataset (`ward gen emr`, `ward demo`): clinicians,
//! patients with the MRNs `ward gen records` uses (`MRN0000000`, ...), so the CSV visits
//! and the EMR items of a patient meet in one timeline, and per patient appointments,
//! clinical records, bills and documents (with their bytes). Same seed, same data.
//!
//! Every body is what a client would POST; the API validates it as any other.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::Kind;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct EmrSpec {
    /// Patients (MRN0000000 upwards).
    pub patients: u64,
    /// Clinicians.
    pub clinicians: u64,
    /// Random seed.
    pub seed: u64,
}

/// One patient's profile and items, in the order to create them.
#[derive(Debug, Clone)]
pub struct PatientBundle {
    /// The profile body.
    pub profile: Value,
    /// Appointments, clinical records, bills: kind and body.
    pub items: Vec<(Kind, Value)>,
    /// Documents: metadata body and the file's bytes.
    pub documents: Vec<(Value, Vec<u8>)>,
}

/// The generated dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Clinician bodies.
    pub clinicians: Vec<Value>,
    /// Patients with their items.
    pub patients: Vec<PatientBundle>,
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ann", "Omar", "Li", "Sara", "Jon", "Maria", "Yusuf", "Ines", "Kwame", "Priya", "Ole", "Mei",
];
const LAST: &[&str] = &[
    "Lee", "Haddad", "Chen", "Novak", "Smith", "Garcia", "Demir", "Silva", "Mensah", "Rao",
];
const CLINICS: &[&str] = &["NORTH", "SOUTH", "CENTRAL"];
const SPECIALIZATIONS: &[&str] = &[
    "Cardiology",
    "Family Medicine",
    "Endocrinology",
    "Pediatrics",
    "Dermatology",
];
const COMPLAINTS: &[(&str, &str, &str)] = &[
    (
        "Chest discomfort on exertion",
        "I25.9",
        "Chronic ischemic heart disease, unspecified",
    ),
    (
        "Follow-up of blood sugar",
        "E11.9",
        "Type 2 diabetes mellitus without complications",
    ),
    ("Persistent cough", "J20.9", "Acute bronchitis, unspecified"),
    ("Headaches", "R51.9", "Headache, unspecified"),
    (
        "Raised blood pressure",
        "I10",
        "Essential (primary) hypertension",
    ),
    ("Itchy rash", "L30.9", "Dermatitis, unspecified"),
];
const MEDICATIONS: &[(&str, &str, &str)] = &[
    ("Atorvastatin", "20 mg", "once daily"),
    ("Metformin", "500 mg", "twice daily"),
    ("Amoxicillin", "500 mg", "three times daily"),
    ("Lisinopril", "10 mg", "once daily"),
    ("Hydrocortisone cream", "1%", "twice daily"),
];

fn date_text(days_since_epoch: i64) -> String {
    ward_domain::UtcInstant::from_unix_nanos(i128::from(days_since_epoch) * 86_400 * 1_000_000_000)
        .civil_date()
}

fn instant_text(seconds: i64) -> String {
    ward_domain::UtcInstant::from_unix_nanos(i128::from(seconds) * 1_000_000_000).rfc3339_seconds()
}

/// Generates the dataset of `spec`.
pub fn dataset(spec: EmrSpec) -> Dataset {
    let mut rng = SplitMix(spec.seed);
    let clinicians: Vec<Value> = (0..spec.clinicians.max(1))
        .map(|i| {
            let first = rng.pick(FIRST);
            let last = rng.pick(LAST);
            json!({
                "id": format!("DR{:03}", i + 1),
                "firstName": first,
                "lastName": last,
                "email": format!("dr{:03}@clinic.example", i + 1),
                "licenceNumber": format!("LIC-{:06}", rng.below(1_000_000)),
                "specialization": rng.pick(SPECIALIZATIONS),
                "department": "Outpatients",
                "workingHours": {
                    "monday": {"start": "08:00", "end": "17:00"},
                    "wednesday": {"start": "08:00", "end": "17:00"},
                    "friday": {"start": "08:00", "end": "13:00"}
                }
            })
        })
        .collect();
    let n_clinicians = clinicians.len() as u64;
    // From 2025-01-06 (a Monday), appointments lie on a grid so no clinician is booked
    // twice: a patient's j-th visit falls in layer j (layers are `layer_days` apart), and
    // within a layer patient p sees clinician p % C in that clinician's slot p / C
    // (16 half-hour slots a day, 08:00-16:00).
    let grid_start: i64 = 1_736_121_600;
    let layer_days = (spec.patients / (n_clinicians * 16) + 1).max(45) as i64;
    let patients = (0..spec.patients)
        .map(|p| {
            let mrn = format!("MRN{p:07}");
            let first = FIRST[(p % FIRST.len() as u64) as usize];
            let last = LAST[((p / 7) % LAST.len() as u64) as usize];
            let clinic = CLINICS[(p % CLINICS.len() as u64) as usize];
            let born = -7_300 + rng.below(25_000) as i64;
            let mut profile = json!({
                "mrn": mrn,
                "firstName": first,
                "lastName": last,
                "dateOfBirth": date_text(born),
                "sex": (["FEMALE", "MALE"][(p % 2) as usize]),
                "email": format!("{}.{}.{p}@mail.example", first.to_lowercase(), last.to_lowercase()),
                "phone": format!("+1415555{:04}", p % 10_000),
                "clinic": clinic,
                "bloodType": (["O+", "A+", "B+", "AB+", "O-", "A-"][rng.below(6) as usize]),
                "address": {"line1": format!("{} Main St", 1 + rng.below(900)), "city": "Springfield", "country": "US"},
                "insurance": {"provider": "Acme Health", "memberNumber": format!("AH{:08}", rng.below(100_000_000))}
            });
            if rng.below(3) == 0 {
                profile["allergies"] = json!(["Penicillin"]);
            }
            let mut items = Vec::new();
            let mut documents = Vec::new();
            for layer in 0..(1 + rng.below(3)) as i64 {
                let clinician = format!("DR{:03}", p % n_clinicians + 1);
                let slot = p / n_clinicians;
                let day = layer * layer_days + (slot / 16) as i64;
                let start = grid_start + day * 86_400 + 8 * 3600 + (slot % 16) as i64 * 1800;
                let (complaint, code, diagnosis) = COMPLAINTS[rng.below(COMPLAINTS.len() as u64) as usize];
                items.push((
                    Kind::Appointment,
                    json!({
                        "clinicianId": clinician,
                        "start": instant_text(start),
                        "durationMinutes": 30,
                        "type": (["CONSULTATION", "FOLLOW_UP", "CHECKUP"][rng.below(3) as usize]),
                        "mode": (["IN_PERSON", "VIRTUAL"][rng.below(2) as usize]),
                        "reason": complaint,
                        "payment": {"amountMinor": 12_000, "currency": "USD", "status": "PENDING", "method": "INSURANCE"}
                    }),
                ));
                let (medication, dosage, frequency) = MEDICATIONS[rng.below(MEDICATIONS.len() as u64) as usize];
                items.push((
                    Kind::ClinicalRecord,
                    json!({
                        "type": "CONSULTATION",
                        "clinicianId": clinician,
                        "visit": {"date": instant_text(start + 300), "type": "REGULAR_CHECKUP", "durationMinutes": 30},
                        "chiefComplaint": complaint,
                        "vitalSigns": {
                            "bloodPressure": {"systolic": 110 + rng.below(40), "diastolic": 70 + rng.below(20), "unit": "mmHg"},
                            "heartRate": {"value": 60 + rng.below(40), "unit": "bpm"},
                            "temperature": {"value": 36.5, "unit": "C"},
                            "weight": {"value": 55 + rng.below(50), "unit": "kg"}
                        },
                        "diagnoses": [{"code": code, "description": diagnosis, "severity": "MILD"}],
                        "prescriptions": [{"medication": medication, "dosage": dosage, "frequency": frequency, "duration": "30 days"}],
                        "recommendations": ["Regular exercise"],
                        "followUp": {"required": true, "timeframe": "3 months"}
                    }),
                ));
                items.push((
                    Kind::Bill,
                    json!({
                        "issuedAt": instant_text(start + 3600),
                        "amountMinor": 12_000,
                        "currency": "USD",
                        "status": "ISSUED",
                        "services": [{"code": "99213", "description": "Office visit", "date": date_text(start / 86_400), "amountMinor": 12_000}]
                    }),
                ));
            }
            if rng.below(2) == 0 {
                let bytes = format!("Lab report for {mrn}\nHbA1c: 6.1 %\nLDL: 2.9 mmol/L\n").into_bytes();
                documents.push((
                    json!({
                        "type": "LAB_REPORT",
                        "title": "Blood panel",
                        "fileName": "blood-panel.txt",
                        "mediaType": "text/plain",
                        "sizeBytes": bytes.len(),
                        "sha256": hex::encode(Sha256::digest(&bytes)),
                    }),
                    bytes,
                ));
            }
            PatientBundle {
                profile,
                items,
                documents,
            }
        })
        .collect();
    Dataset {
        clinicians,
        patients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    #[test]
    fn the_dataset_is_deterministic_and_every_body_is_valid() {
        let spec = EmrSpec {
            patients: 40,
            clinicians: 3,
            seed: 7,
        };
        let a = dataset(spec);
        let b = dataset(spec);
        assert_eq!(a.patients[5].profile, b.patients[5].profile);
        let now = ward_domain::UtcInstant::now();
        for clinician in &a.clinicians {
            model::parse(clinician, model::clinician).unwrap();
        }
        let mut booked = std::collections::HashSet::new();
        for patient in &a.patients {
            model::parse(&patient.profile, model::patient(now)).unwrap();
            for (kind, body) in &patient.items {
                match kind {
                    Kind::Appointment => {
                        let mut body = body.clone();
                        body["clinic"] = json!("NORTH");
                        let appointment = model::parse(&body, model::appointment).unwrap();
                        assert!(
                            booked.insert((
                                appointment.clinician_id.clone(),
                                appointment.start.clone()
                            )),
                            "no clinician is booked twice"
                        );
                    }
                    Kind::ClinicalRecord => {
                        model::parse(body, model::clinical_record(now)).unwrap();
                    }
                    _ => {
                        model::parse(body, model::bill).unwrap();
                    }
                }
            }
            for (meta, bytes) in &patient.documents {
                let info = model::parse(meta, model::document).unwrap();
                assert_eq!(info.size_bytes as usize, bytes.len());
            }
        }
    }
}

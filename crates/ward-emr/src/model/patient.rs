//! A patient: identity, contact, clinic, insurance.

use serde::Serialize;
use ward_domain::{ClinicName, Mrn, UtcInstant};

use super::today_days;
use crate::fields::{Check, Obj, country, date, identifier, one_of, text};

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
    #[serde(serialize_with = "super::as_text")]
    pub mrn: Mrn,
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
    #[serde(serialize_with = "super::as_text")]
    pub clinic: ClinicName,
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
        let mrn = check.field(obj, "mrn", true, identifier(Mrn::parse));
        let first_name = check.field(obj, "firstName", true, text(100));
        let last_name = check.field(obj, "lastName", true, text(100));
        let date_of_birth = check.field(obj, "dateOfBirth", true, date(Some(today_days(now))));
        let sex = check.field(obj, "sex", true, one_of(SEXES));
        let email = check.field(obj, "email", false, crate::fields::email());
        let phone = check.field(obj, "phone", false, crate::fields::phone());
        let address = check.object(obj, "address", false, address);
        let clinic = check.field(obj, "clinic", true, identifier(ClinicName::parse));
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

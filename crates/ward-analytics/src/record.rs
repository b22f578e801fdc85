//! A validated facility: what leaves the parser, and what a dataset row holds.

/// A validated facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    /// `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
    pub facility_id: String,
    /// The name, if given.
    pub facility_name: Option<String>,
    /// Street address.
    pub address: Option<String>,
    /// City.
    pub city: Option<String>,
    /// A known USPS two-letter code, in capitals.
    pub state: String,
    /// ZIP code as written.
    pub zip: Option<String>,
    /// Non-negative.
    pub employee_count: i64,
    /// Service names.
    pub services: Vec<String>,
    /// Labs.
    pub labs: Vec<Lab>,
    /// Accreditations.
    pub accreditations: Vec<Accreditation>,
}

/// A lab of a facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// The lab's name.
    pub lab_name: String,
    /// Its certifications.
    pub certifications: Vec<String>,
}

/// An accreditation of a facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accreditation {
    /// Who accredits (e.g. "Joint Commission").
    pub accreditation_body: String,
    /// The accreditation's id.
    pub accreditation_id: String,
    /// The last day it is valid, as days since 1970-01-01.
    pub valid_until: i32,
}

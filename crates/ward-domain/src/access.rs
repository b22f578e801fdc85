//! The roles of a provider's people, and what a role is linked to (SPEC section 5). What
//! each role may do is the API's policy table; which patients it reaches, the EMR's.

use crate::ids::{ClinicianId, Mrn};

/// A provider user's role (SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything of its provider, users and keys included.
    ProviderAdmin,
    /// Clinical data of the patients it is related to.
    Clinician,
    /// Patients' demographics and appointments, uploads; no clinical content.
    FrontDesk,
    /// Bills and demographics; no clinical content.
    Billing,
    /// One patient: its own items, and who accessed them.
    Patient,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 5] = [
        Self::ProviderAdmin,
        Self::Clinician,
        Self::FrontDesk,
        Self::Billing,
        Self::Patient,
    ];

    /// The role's name in tokens, users and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderAdmin => "provider_admin",
            Self::Clinician => "clinician",
            Self::FrontDesk => "front_desk",
            Self::Billing => "billing",
            Self::Patient => "patient",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Whether the role sees clinical content (notes, clinical records, documents).
    pub fn sees_clinical_content(self) -> bool {
        matches!(self, Self::ProviderAdmin | Self::Clinician | Self::Patient)
    }

    /// Whether `link` is what this role must be linked to: a clinician to a clinician id,
    /// a patient to an MRN, every other role to nothing.
    pub fn check_link(self, link: &Link) -> Result<(), &'static str> {
        match (self, link) {
            (Self::Clinician, Link::Clinician(_))
            | (Self::Patient, Link::Patient(_))
            | (Self::ProviderAdmin | Self::FrontDesk | Self::Billing, Link::None) => Ok(()),
            (Self::Clinician, _) => Err("a clinician is linked to a clinician id"),
            (Self::Patient, _) => Err("a patient is linked to an MRN"),
            _ => Err("only clinicians and patients are linked to a clinician id or an MRN"),
        }
    }
}

/// What a person's role is tied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Nothing (administrators, front desk, billing).
    None,
    /// A clinician: the clinician id it acts as.
    Clinician(ClinicianId),
    /// A patient: its own record.
    Patient(Mrn),
}

impl Link {
    /// The link from a clinician id or an MRN, at most one of them.
    pub fn from_parts(
        clinician: Option<&str>,
        mrn: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        match (clinician, mrn) {
            (None, None) => Ok(Self::None),
            (Some(id), None) => ClinicianId::parse(id)
                .map(Self::Clinician)
                .map_err(|e| ("clinicianId", e.to_string())),
            (None, Some(mrn)) => Mrn::parse(mrn)
                .map(Self::Patient)
                .map_err(|e| ("mrn", e.to_string())),
            (Some(_), Some(_)) => Err(("mrn", "give a clinician id or an MRN, not both".into())),
        }
    }

    /// The clinician id, if linked to one.
    pub fn clinician(&self) -> Option<&ClinicianId> {
        match self {
            Self::Clinician(id) => Some(id),
            _ => None,
        }
    }

    /// The MRN, if linked to one.
    pub fn mrn(&self) -> Option<&Mrn> {
        match self {
            Self::Patient(mrn) => Some(mrn),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_by_name_and_need_their_link() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
        let clinician = Link::from_parts(Some("C1"), None).unwrap();
        let patient = Link::from_parts(None, Some("MRN1")).unwrap();
        assert!(Role::Clinician.check_link(&clinician).is_ok());
        assert!(Role::Clinician.check_link(&Link::None).is_err());
        assert!(Role::Patient.check_link(&patient).is_ok());
        assert!(Role::Patient.check_link(&clinician).is_err());
        assert!(Role::FrontDesk.check_link(&patient).is_err());
        assert!(Role::Billing.check_link(&Link::None).is_ok());
        assert!(Link::from_parts(Some("C1"), Some("M1")).is_err());
        assert!(Link::from_parts(Some("C#1"), None).is_err());
        assert!(!Role::FrontDesk.sees_clinical_content());
        assert!(!Role::Billing.sees_clinical_content());
        assert!(Role::Clinician.sees_clinical_content());
    }
}

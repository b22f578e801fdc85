//! Ward's domain: validated types and the key layout.
//!
//! Owns: what a provider id, an MRN, a visit time and a visit row *are* (parse, don't
//! validate), and how they become table keys and object paths (naming patients by keyed pseudonyms).
//! Deliberately does not: any IO, async, logging or serialization format. Callers hand in
//! "now" where a rule needs it, so everything here is deterministic and unit-tested.

pub mod access;
pub mod ids;
pub mod key_layout;
pub mod pseudonym;
pub mod text;
pub mod time;
pub mod visit;

pub use access::{Link, Role};
pub use ids::{
    AppointmentId, BillId, ClinicName, ClinicalRecordId, ClinicianId, DocumentId, FileNameError,
    IdError, Mrn, ProviderId, RunId, SourceFileName, TimeOrderedId, UploadId, UserId,
};
pub use pseudonym::{PatientKey, Pseudonyms};
pub use text::spreadsheet_safe;
pub use time::{TimeError, UtcInstant, VisitTime};
pub use visit::{FieldError, VisitFields, VisitRow, VisitRules};

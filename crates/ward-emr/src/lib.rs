//! The EMR single-table model (SPEC section 5, seed notes 003 and 004): patients,
//! clinicians, appointments, clinical records, documents, bills with their services, and
//! the audit trail, on the table port.
//!
//! Owns: what each entity *is* ([`model`], parsed from JSON with every invalid field
//! named), how it is stored and found (keys in `ward_domain::key_layout`, access patterns
//! in `docs/data-model.md`), the consistency rules (optimistic concurrency, unique email
//! and MRN, no double-booking) and the audit trail ([`audit`]).
//! Deliberately does not: know HTTP (the API crate maps [`EmrError`] to problem
//! responses), know which store is behind the port, or scan.

pub mod audit;
pub mod fields;
pub mod generate;
pub mod model;
mod service;

pub use audit::{Actor, AuditLog};

/// The attributes of the EMR's items that hold patient data, sealed at rest
/// (`ward-protect`): every entity's body (`data`) and patient, an idempotency key's answer,
/// a care relation's and an email claim's patient, a break-glass grant's reason and record,
/// and every entity's `id` (a patient's is its MRN).
pub const PROTECTED_ATTRIBUTES: [&str; 8] = [
    "data",
    "id",
    "patientMrn",
    "answer",
    "mrn",
    "ownerId",
    "reason",
    "grant",
];
pub use fields::FieldError;
pub use model::Kind;
pub use service::{
    BreakGlass, Conflict, DEFAULT_BREAK_GLASS_MINUTES, DOCUMENT_UPLOAD_WINDOW_SECONDS,
    DocumentFile, Emr, EmrError, Erasure, IDEMPOTENCY_TTL_SECONDS, Idempotency, ListFilter, Listed,
    MAX_ERASURE_REASON_CHARS, RemovedElsewhere, Stored, Timeline, TimelineEntry, TimelineItem,
};

//! The ports between Ward's crates and the records they share.
//!
//! Owns: the job queue port ([`queue`], with the table-backed queue and the suite every
//! queue adapter runs), the upload URL port ([`upload_urls`]), the analytics port
//! ([`analytics`]: facility files, runs, ad hoc SQL), and the records that more than one
//! crate reads or writes: the upload item and its state machine ([`uploads`]), the visit
//! schema and every visit read ([`visits`]), tenants and their API keys ([`tenants`]),
//! audit events ([`audit`]).
//! Deliberately does not: process anything (the pipeline is `ward-ingest`, the EMR
//! `ward-emr`, the engine `ward-analytics`), know HTTP, or name a concrete adapter.

use std::sync::Arc;

use object_store::ObjectStore;
use ward_store::Table;

pub mod analytics;
pub mod audit;
pub mod error;
pub mod queue;
pub mod queue_conformance;
pub mod s3_events;
pub mod tenants;
pub mod upload_urls;
pub mod uploads;
pub mod visits;

pub use analytics::{
    Analytics, AnalyticsRun, AnalyticsSettings, FacilityOutcome, NO_ANALYTICS, QueryResult,
    RunRepository, RunRequest, RunStatus, SqlAnswer, SqlError,
};
pub use audit::AuditEvent;
pub use error::ProcessError;
pub use queue::{DeadJob, Delivery, Job, JobQueue, QueueError, TableJobQueue};
pub use tenants::{IssuedKey, TenantError, Tenants};
pub use upload_urls::{PresignError, PresignedPut, UploadUrls};
pub use uploads::{
    OutcomeCounts, RowProblem, Upload, UploadReport, UploadRepository, UploadStatus,
};
pub use visits::{VisitRecord, VisitRepository};

/// The two stores a job works on, as the analytics port receives them.
#[derive(Clone)]
pub struct Storage {
    /// The record store.
    pub table: Arc<dyn Table>,
    /// Object storage.
    pub objects: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

//! Ward's ingest pipeline: streaming CSV validation, the upload state machine, the durable
//! job queue and the worker.
//!
//! Owns: turning an uploaded object into records and a report, exactly once in effect.
//! Deliberately does not: know HTTP, know which store, object store or queue it runs on
//! (it sees `dyn Table`, `dyn ObjectStore`, `dyn JobQueue`), or log patient data (spans
//! carry provider and upload ids only).

pub mod analytics;
pub mod audit;
mod identical;
mod key_order;
pub mod queue;
pub mod queue_conformance;
pub mod retention;
pub mod s3_events;
mod spill;
pub mod upload_urls;
pub mod uploads;
pub mod visit_csv;
pub mod visit_items;
pub mod worker;

pub use analytics::{
    Analytics, AnalyticsRun, AnalyticsSettings, FacilityOutcome, QueryResult, RunRepository,
    RunRequest, RunStatus, SqlAnswer, SqlError,
};
pub use audit::AuditEvent;
pub use queue::{DeadJob, Delivery, Job, JobQueue, QueueError, TableJobQueue};
pub use upload_urls::{PresignError, PresignedPut, UploadUrls};
pub use uploads::{
    OutcomeCounts, RowProblem, Upload, UploadReport, UploadRepository, UploadStatus,
};
pub use visit_items::VisitRecord;
pub use worker::{
    IngestContext, IngestSettings, JobStatus, NO_ANALYTICS, ProcessError, StepOutcome, Worker,
    process_run, process_upload, replay_dead_job, run_job,
};

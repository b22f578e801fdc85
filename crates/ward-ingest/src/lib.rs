//! Ward's ingest pipeline: streaming CSV validation and the worker that drives uploads,
//! facility files and analytics runs through the job queue.
//!
//! Owns: turning an uploaded object into records and a report, exactly once in effect.
//! Deliberately does not: know HTTP, know which store, object store or queue it runs on
//! (it sees `dyn Table`, `dyn ObjectStore`, `dyn JobQueue`; the ports and the upload and
//! visit records are `ward-ports`), or log patient data (spans carry provider and upload
//! ids only).

mod context;
mod errors_file;
mod facility_job;
mod identical;
mod key_order;
mod objects;
mod outcome;
mod parse;
mod recovery;
pub mod retention;
mod run_job;
mod spill;
mod upload_job;
pub mod visit_csv;
mod worker;
mod write;

pub use context::{IngestContext, IngestSettings};
pub use objects::move_object;
pub use recovery::{
    mark_dead_lettered, mark_job_dead_lettered, replay_dead_job, resume_received_uploads,
};
pub use run_job::process_run;
pub use upload_job::process_upload;
pub use worker::{JobStatus, StepOutcome, Worker, run_job};

//! The worker: a step function (`process_next`) that tests call directly, and a thin loop
//! around it. Processing a file is idempotent: a crash anywhere, then a retry, ends with
//! the same records and the same report as a run without the crash, because
//! (1) records are written only if absent, (2) a record found with this upload's id and
//! line is counted as inserted (it was, by an earlier attempt), and (3) counts, error list
//! and report are recomputed from the file on every attempt (or, for a file identical to
//! an earlier completed upload, taken from that upload, but only until an attempt has
//! started reading rows: `Upload::rows_read`).
//!
//! The jobs themselves: `upload_job` (with `facility_job`), `run_job`; what happens to
//! jobs that fail for good: `recovery`.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tracing::warn;
use ward_ports::{Job, ProcessError, QueueError, RunStatus, UploadStatus};

use crate::context::IngestContext;
use crate::recovery::mark_job_dead_lettered;
use crate::run_job::process_run;
use crate::upload_job::process_upload;

/// What a step of the worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The job finished (the upload or run is completed or failed as a whole).
    Done(JobStatus),
    /// The attempt failed and the job will be retried.
    Retrying {
        /// The attempt that failed.
        attempt: u32,
    },
    /// The job failed its last attempt and went to the dead-letter list.
    DeadLettered,
}

/// The step function and its loop.
#[derive(Debug, Clone)]
pub struct Worker {
    ctx: Arc<IngestContext>,
}

impl Worker {
    /// A worker over the context.
    pub fn new(ctx: Arc<IngestContext>) -> Self {
        Self { ctx }
    }

    /// Leases and runs one job; `None` when no job is visible.
    pub async fn process_next(&self) -> Result<Option<StepOutcome>, QueueError> {
        let settings = &self.ctx.settings;
        let Some(mut delivery) = self.ctx.queue.receive(settings.lease).await? else {
            return Ok(None);
        };
        let job = delivery.job.clone();
        let attempt = delivery.attempt;
        let result = {
            // A panic is a failed attempt like any other (retried, then dead-lettered):
            // never a worker that stops, nor a job leased again forever.
            let work = std::panic::AssertUnwindSafe(self.run_job(&job, attempt))
                .catch_unwind()
                .map(|outcome| outcome.unwrap_or_else(|_| Err(ProcessError::Panicked)));
            tokio::pin!(work);
            let mut heartbeat = tokio::time::interval(settings.lease / 3);
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = heartbeat.tick() => {
                        self.ctx.queue.extend(&mut delivery, settings.lease).await?;
                    }
                }
            }
        };
        match result {
            Ok(status) => {
                self.ctx.queue.complete(&delivery).await?;
                Ok(Some(StepOutcome::Done(status)))
            }
            Err(error) if attempt < settings.max_attempts => {
                let delay = settings.retry_base * 4u32.pow(attempt.saturating_sub(1));
                warn!(job_id = %job.id(), attempt, error = %error, "job failed; will retry");
                self.ctx
                    .queue
                    .retry(&delivery, delay, &error.to_string())
                    .await?;
                Ok(Some(StepOutcome::Retrying { attempt }))
            }
            Err(error) => {
                warn!(job_id = %job.id(), attempt, error = %error, "job failed for good; dead-lettered");
                let reason = error.to_string();
                self.ctx.queue.dead_letter(&delivery, &reason).await?;
                if let Err(error) = mark_job_dead_lettered(&self.ctx, &job, &reason).await {
                    warn!(error = %error, "could not mark the job's upload or run failed");
                }
                Ok(Some(StepOutcome::DeadLettered))
            }
        }
    }

    /// Runs jobs until `shutdown` resolves; finishes the job in hand first.
    pub async fn run(
        &self,
        wake: Arc<tokio::sync::Notify>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.process_next().await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => warn!(error = %error, "worker could not reach the queue"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn run_job(&self, job: &Job, attempt: u32) -> Result<JobStatus, ProcessError> {
        run_job(&self.ctx, job, attempt).await
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// An upload job: the upload's final status.
    Upload(UploadStatus),
    /// An analytics run: the run's final status.
    Run(RunStatus),
}

/// Runs one job (any kind) to its end.
pub async fn run_job(
    ctx: &IngestContext,
    job: &Job,
    attempt: u32,
) -> Result<JobStatus, ProcessError> {
    match job {
        Job::CsvUpload { provider, upload } | Job::FacilityUpload { provider, upload } => {
            let done = process_upload(ctx, provider, upload, attempt).await?;
            Ok(JobStatus::Upload(done.status))
        }
        Job::AnalyticsRun { provider, run } => {
            let status = process_run(ctx, provider, run, attempt).await?;
            Ok(JobStatus::Run(status))
        }
    }
}

//! The worker: a step function (`process_next`) that tests call directly, and a thin loop
//! around it. Processing a file is idempotent: a crash anywhere, then a retry, ends with
//! the same records and the same report as a run without the crash, because
//! (1) records are written only if absent, (2) a record found with this upload's id and
//! line is counted as inserted (it was, by an earlier attempt), and (3) counts, error list
//! and report are recomputed from the file on every attempt (or, for a file identical to
//! an earlier completed upload, taken from that upload, but only until an attempt has
//! started reading rows: `Upload::rows_read`).

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tracing::{info, instrument, warn};
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::time::ProviderTimeZone;
use ward_domain::visit::{DEFAULT_MAX_NOTES_CHARS, FieldError, VisitRules};
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_store::{Item, PutOutcome, StoreError, Table, Value};

use crate::analytics::{
    Analytics, AnalyticsRun, FacilityOutcome, RunRepository, RunRequest, RunStatus,
};
use crate::identical;
use crate::key_order::{SortSettings, parse_file_in_key_order};
use crate::queue::{Job, JobQueue, QueueError};
use crate::spill::SpillSorter;
use crate::uploads::{
    OutcomeCounts, RowProblem, Upload, UploadReport, UploadRepository, UploadStatus,
};
use crate::visit_csv::{FileError, RowRead, VisitCsvReader, spreadsheet_safe};
use crate::visit_items::{RecordSource, visit_item};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Rows per store write batch.
    pub batch_rows: usize,
    /// Attempts per job before it is dead-lettered (3 in all).
    pub max_attempts: u32,
    /// Delay before the first retry; each later one is 4x longer.
    pub retry_base: Duration,
    /// How long a worker holds a job before it must extend its lease.
    pub lease: Duration,
    /// The longest doctor's note.
    pub max_notes_chars: usize,
    /// The largest file processed; a larger one fails as a whole. (The embedded upload
    /// endpoint refuses it while streaming; an S3 pre-signed PUT cannot, so this is where
    /// the AWS shape enforces the limit.)
    pub max_file_bytes: u64,
    /// Facility analytics: query timeout, ad hoc SQL limits.
    pub analytics: crate::analytics::AnalyticsSettings,
    /// Append one audit event per finished upload (its counts). On by default; off only
    /// to measure what audit costs.
    pub audit: bool,
    /// Answer a visit file whose bytes are those of an earlier completed upload from that
    /// upload's outcomes, without reading a row (see `identical`). On by default; off to
    /// measure the per-row path.
    pub reuse_identical_files: bool,
    /// Read a visit file's valid rows in the store's key order before writing them
    /// (see `key_order`): `None` asks the store ([`Table::prefers_key_order`]).
    pub key_order: Option<bool>,
    /// The folder for the temporary files of that sort (`None`: the system's temporary
    /// folder). The embedded shape puts them in its data folder.
    pub sort_dir: Option<std::path::PathBuf>,
    /// Bytes of rows held in memory by that sort before a sorted run goes to disk.
    pub sort_buffer_bytes: usize,
    /// Test hook: an attempt fails (as a transient fault) after writing this many rows...
    pub fault_after_rows: Option<u64>,
    /// ...this many times in this process (then attempts run clean).
    pub fault_times: u32,
    /// Test hook: the injected fault is a panic rather than an error.
    pub fault_panics: bool,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            batch_rows: 1024,
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            max_notes_chars: DEFAULT_MAX_NOTES_CHARS,
            max_file_bytes: 1024 * 1024 * 1024,
            analytics: crate::analytics::AnalyticsSettings::default(),
            audit: true,
            reuse_identical_files: true,
            key_order: None,
            sort_dir: None,
            sort_buffer_bytes: 16 * 1024 * 1024,
            fault_after_rows: None,
            fault_times: 1,
            fault_panics: false,
        }
    }
}

/// Everything the pipeline works with. The composition root builds it from concrete
/// adapters; nothing here knows which.
pub struct IngestContext {
    /// The record store.
    pub table: Arc<dyn Table>,
    /// Object storage.
    pub objects: Arc<dyn ObjectStore>,
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// Upload items.
    pub uploads: UploadRepository,
    /// Analytics run items.
    pub runs: RunRepository,
    /// The facility pipeline and SQL engine (`None` in a build without them).
    pub analytics: Option<Arc<dyn Analytics>>,
    /// Tuning.
    pub settings: IngestSettings,
    /// Data rows read so far by this process (for progress displays).
    pub progress_rows: AtomicU64,
    /// Bytes of files read so far by this process (for progress displays).
    pub progress_bytes: Arc<AtomicU64>,
    /// Valid rows put into a key-order sort so far by this process: in key order, a file
    /// is read whole (these grow) before its records are written (see `key_order`).
    pub progress_sorted_rows: Arc<AtomicU64>,
    /// Valid rows sent to the store so far by this process.
    pub progress_valid_rows: AtomicU64,
    faults_fired: AtomicU32,
}

impl std::fmt::Debug for IngestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestContext").finish_non_exhaustive()
    }
}

impl IngestContext {
    /// Builds a context.
    pub fn new(
        table: Arc<dyn Table>,
        objects: Arc<dyn ObjectStore>,
        queue: Arc<dyn JobQueue>,
        settings: IngestSettings,
    ) -> Self {
        Self {
            uploads: UploadRepository::new(Arc::clone(&table)),
            runs: RunRepository::new(Arc::clone(&table)),
            analytics: None,
            table,
            objects,
            queue,
            settings,
            progress_rows: AtomicU64::new(0),
            progress_bytes: Arc::new(AtomicU64::new(0)),
            progress_sorted_rows: Arc::new(AtomicU64::new(0)),
            progress_valid_rows: AtomicU64::new(0),
            faults_fired: AtomicU32::new(0),
        }
    }

    /// The context with a facility pipeline.
    /// Whether visit files are read in the store's key order (see `key_order`).
    pub fn key_order(&self) -> bool {
        self.settings
            .key_order
            .unwrap_or_else(|| self.table.prefers_key_order())
    }

    pub fn with_analytics(mut self, analytics: Arc<dyn Analytics>) -> Self {
        self.analytics = Some(analytics);
        self
    }
}

/// The message for facility work in a build without the analytics engine.
pub const NO_ANALYTICS: &str =
    "this Ward was built without facility analytics (build it with --features analytics)";

/// Why processing an upload did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The record store failed.
    #[error("record store: {0}")]
    Store(#[from] StoreError),
    /// Object storage failed.
    #[error("object storage: {0}")]
    Objects(#[from] object_store::Error),
    /// The upload changed under us (another worker); retry.
    #[error("the upload was changed concurrently")]
    Concurrent,
    /// The attempt panicked (a defect in Ward). The panic message is not repeated here:
    /// it may quote data the job was reading.
    #[error("processing panicked (a defect in Ward; the server's standard error has the message)")]
    Panicked,
    /// A fault injected by a test.
    #[error("injected fault after {0} rows")]
    Injected(u64),
    /// The file stream broke.
    #[error("reading the file: {0}")]
    Read(String),
    /// A task failed.
    #[error("internal: {0}")]
    Internal(String),
}

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

/// Processes one upload to its end. Safe to call again after any failure.
#[instrument(skip_all, fields(provider_id = %provider, upload_id = %upload_id))]
pub async fn process_upload(
    ctx: &IngestContext,
    provider: &ProviderId,
    upload_id: &UploadId,
    attempt: u32,
) -> Result<Upload, ProcessError> {
    let Some(mut upload) = ctx.uploads.get(provider, upload_id).await? else {
        return Err(ProcessError::Internal("the upload does not exist".into()));
    };
    if upload.status.is_final() {
        return Ok(upload);
    }
    let started = Instant::now();
    let kind = upload.kind;
    let uploaded = path(key_layout::upload_object_key(
        provider,
        ObjectStage::Uploaded,
        upload_id,
        kind,
    ));
    let processing = path(key_layout::upload_object_key(
        provider,
        ObjectStage::Processing,
        upload_id,
        kind,
    ));
    if upload.status != UploadStatus::Processing {
        let mut next = upload.clone();
        next.status = UploadStatus::Processing;
        upload = ctx
            .uploads
            .update(next, upload.version)
            .await
            .map_err(concurrent)?;
    }
    if !claim_file(
        ctx.objects.as_ref(),
        provider,
        upload_id,
        kind,
        &uploaded,
        &processing,
    )
    .await?
    {
        let report = UploadReport {
            failure: Some("the uploaded file is missing".into()),
            attempts: attempt,
            ..UploadReport::default()
        };
        return finish(ctx, upload, UploadStatus::Failed, report, None).await;
    }
    let size = ctx.objects.head(&processing).await?.size;
    if size > ctx.settings.max_file_bytes {
        let reason = format!(
            "the file is {size} bytes, more than the {}-byte limit",
            ctx.settings.max_file_bytes
        );
        let report = failure_report(reason, attempt, started);
        return fail_file(ctx, upload, &processing, report).await;
    }
    if kind == UploadKind::Facilities {
        return process_facilities(ctx, upload, &processing, attempt, started).await;
    }
    let zone = provider_time_zone(ctx, provider).await?;
    let rules = VisitRules {
        zone,
        max_notes_chars: ctx.settings.max_notes_chars,
        now: UtcInstant::now(),
    };
    let errors_path = path(key_layout::errors_object_key(
        provider,
        ObjectStage::Completed,
        upload_id,
    ));
    let csv_file = key_layout::upload_object_key(provider, ObjectStage::Completed, upload_id, kind);
    let rules_fingerprint = identical::rules_fingerprint(&rules);
    let digest = identical::file_digest(ctx.objects.as_ref(), &processing).await?;
    if ctx.settings.reuse_identical_files
        && !upload.rows_read
        && let Some(reference) =
            identical::find_reference(ctx, provider, &digest, &rules_fingerprint).await?
    {
        let reference_errors = path(key_layout::errors_object_key(
            provider,
            ObjectStage::Completed,
            &reference.id,
        ));
        match ctx.objects.copy(&reference_errors, &errors_path).await {
            Ok(()) => {
                let mut report = identical::derived_report(&reference);
                report.attempts = attempt;
                report.duration_ms = started.elapsed().as_millis() as u64;
                ctx.progress_rows
                    .fetch_add(report.counts.rows, Ordering::Relaxed);
                ctx.progress_bytes.fetch_add(size, Ordering::Relaxed);
                move_object(ctx.objects.as_ref(), &processing, &path(csv_file)).await?;
                return finish(
                    ctx,
                    upload,
                    UploadStatus::Completed,
                    report,
                    Some(ObjectStage::Completed),
                )
                .await;
            }
            // The earlier upload's error list has expired: read the rows after all.
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if !upload.rows_read {
        // From here on this upload may write records, so a later attempt must read the
        // rows too (its own records count as inserted), whatever has completed meanwhile.
        let mut next = upload.clone();
        next.rows_read = true;
        upload = ctx
            .uploads
            .update(next, upload.version)
            .await
            .map_err(concurrent)?;
    }
    let outcome = ingest_rows(ctx, &upload, &processing, &errors_path, &csv_file, rules).await?;
    let (mut report, n_time_dependent) = match outcome {
        Ok(ingested) => ingested,
        Err(file_error) => {
            let report = failure_report(file_error.to_string(), attempt, started);
            return fail_file(ctx, upload, &processing, report).await;
        }
    };
    report.attempts = attempt;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let completed = path(csv_file);
    move_object(ctx.objects.as_ref(), &processing, &completed).await?;
    if n_time_dependent == 0 {
        identical::remember(ctx, provider, &digest, &rules_fingerprint, upload_id).await?;
    }
    finish(
        ctx,
        upload,
        UploadStatus::Completed,
        report,
        Some(ObjectStage::Completed),
    )
    .await
}

/// A facility file: validated and merged into the dataset by the analytics port, then an
/// analytics run queued (its id is the upload's, so a retry queues the same run).
async fn process_facilities(
    ctx: &IngestContext,
    upload: Upload,
    processing: &ObjectPath,
    attempt: u32,
    started: Instant,
) -> Result<Upload, ProcessError> {
    let Some(analytics) = &ctx.analytics else {
        let report = failure_report(NO_ANALYTICS.into(), attempt, started);
        return fail_file(ctx, upload, processing, report).await;
    };
    let outcome = analytics
        .ingest_facilities(ctx, &upload.provider, &upload.id, processing)
        .await?;
    let mut report = match outcome {
        FacilityOutcome::Processed(report) => report,
        FacilityOutcome::FileFailed(reason) => {
            let report = failure_report(reason, attempt, started);
            return fail_file(ctx, upload, processing, report).await;
        }
    };
    let run = AnalyticsRun::queued(
        &upload.provider,
        &upload.id,
        RunRequest {
            as_of: UtcInstant::now().civil_date(),
            months_ahead: 6,
        },
        Some(&upload.id),
    );
    ctx.runs.create(&run).await?;
    ctx.queue
        .enqueue(Job::AnalyticsRun {
            provider: upload.provider.to_string(),
            run: upload.id.to_string(),
        })
        .await
        .map_err(queue_error)?;
    report.analytics_run = Some(upload.id.to_string());
    report.attempts = attempt;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let completed = path(key_layout::upload_object_key(
        &upload.provider,
        ObjectStage::Completed,
        &upload.id,
        upload.kind,
    ));
    move_object(ctx.objects.as_ref(), processing, &completed).await?;
    finish(
        ctx,
        upload,
        UploadStatus::Completed,
        report,
        Some(ObjectStage::Completed),
    )
    .await
}

/// Runs an analytics run to its end. Safe to call again after any failure: results are
/// rewritten in place under the run's own prefix.
#[instrument(skip_all, fields(provider_id = %provider, run_id = %run_id))]
pub async fn process_run(
    ctx: &IngestContext,
    provider: &ProviderId,
    run_id: &UploadId,
    attempt: u32,
) -> Result<RunStatus, ProcessError> {
    let Some(mut run) = ctx.runs.get(provider, run_id).await? else {
        return Err(ProcessError::Internal(
            "the analytics run does not exist".into(),
        ));
    };
    if run.status.is_final() {
        return Ok(run.status);
    }
    let mut next = run.clone();
    next.status = RunStatus::Running;
    next.attempts = attempt;
    run = ctx
        .runs
        .update(next, run.version)
        .await
        .map_err(concurrent)?;
    let outcome = match &ctx.analytics {
        Some(analytics) => analytics.run_standard_queries(ctx, &run).await?,
        None => Err(NO_ANALYTICS.to_owned()),
    };
    let mut next = run.clone();
    next.finished_at = Some(UtcInstant::now().rfc3339_seconds());
    match outcome {
        Ok((source_file, results)) => {
            next.status = RunStatus::Completed;
            next.source_file = Some(source_file);
            next.results = results;
        }
        Err(reason) => {
            next.status = RunStatus::Failed;
            next.failure = Some(reason);
        }
    }
    info!(status = ?next.status, "analytics run finished");
    let done = ctx
        .runs
        .update(next, run.version)
        .await
        .map_err(concurrent)?;
    Ok(done.status)
}

/// Marks a run failed for good (its job was dead-lettered).
async fn mark_run_dead_lettered(
    ctx: &IngestContext,
    provider: &ProviderId,
    run_id: &UploadId,
    reason: &str,
) -> Result<(), ProcessError> {
    let Some(run) = ctx.runs.get(provider, run_id).await? else {
        return Ok(());
    };
    let mut next = run.clone();
    next.status = RunStatus::Failed;
    next.attempts = ctx.settings.max_attempts;
    next.finished_at = Some(UtcInstant::now().rfc3339_seconds());
    next.failure = Some(format!(
        "the run failed {} times ({reason}); the job is in the dead-letter queue",
        ctx.settings.max_attempts
    ));
    ctx.runs
        .update(next, run.version)
        .await
        .map_err(concurrent)?;
    Ok(())
}

fn failure_report(reason: String, attempt: u32, started: Instant) -> UploadReport {
    UploadReport {
        failure: Some(reason),
        attempts: attempt,
        duration_ms: started.elapsed().as_millis() as u64,
        ..UploadReport::default()
    }
}

/// A file that fails as a whole: moved to `failed/`, the upload finished as failed.
async fn fail_file(
    ctx: &IngestContext,
    upload: Upload,
    processing: &ObjectPath,
    report: UploadReport,
) -> Result<Upload, ProcessError> {
    let failed = path(key_layout::upload_object_key(
        &upload.provider,
        ObjectStage::Failed,
        &upload.id,
        upload.kind,
    ));
    move_object(ctx.objects.as_ref(), processing, &failed).await?;
    finish(
        ctx,
        upload,
        UploadStatus::Failed,
        report,
        Some(ObjectStage::Failed),
    )
    .await
}

/// Marks an upload as failed for good (its job was dead-lettered).
pub async fn mark_dead_lettered(
    ctx: &IngestContext,
    provider: &ProviderId,
    upload_id: &UploadId,
    reason: &str,
) -> Result<(), ProcessError> {
    let Some(upload) = ctx.uploads.get(provider, upload_id).await? else {
        return Ok(());
    };
    // An attempt that read rows may have written records: such an upload is not failed,
    // it is interrupted (a replay finishes it).
    let rows_may_be_stored = upload.kind == UploadKind::Visits && upload.rows_read;
    let (status, what) = if rows_may_be_stored {
        (
            UploadStatus::Interrupted,
            "some of its rows may be stored; replaying the job finishes the upload",
        )
    } else {
        (UploadStatus::Failed, "none of its rows was stored")
    };
    let report = UploadReport {
        failure: Some(format!(
            "processing failed {} times ({reason}); the job is in the dead-letter queue; {what}",
            ctx.settings.max_attempts
        )),
        attempts: ctx.settings.max_attempts,
        ..UploadReport::default()
    };
    finish(ctx, upload, status, report, None).await.map(|_| ())
}

/// At start-up: finds uploads a crash left between receiving the file and queueing its job.
/// A file stored in `uploaded/` gets its job (enqueueing is idempotent); an upload whose
/// file never finished storing goes back to `pending`, so its URL works again. Looks at the
/// newest `per_provider` uploads of each provider; returns how many it requeued.
pub async fn resume_received_uploads(
    ctx: &IngestContext,
    per_provider: usize,
) -> Result<usize, ProcessError> {
    let mut requeued = 0;
    let mut cursor = None;
    loop {
        let page = ctx
            .table
            .query(ward_store::Query {
                cursor,
                limit: 100,
                ..ward_store::Query::partition(
                    key_layout::PROVIDERS_PK,
                    ward_store::SkCondition::BeginsWith("PROV#".into()),
                )
            })
            .await?;
        for item in &page.items {
            let Some(provider) = item
                .get("providerId")
                .and_then(Value::as_s)
                .and_then(|id| ProviderId::parse(id).ok())
            else {
                continue;
            };
            let (uploads, _) = ctx
                .uploads
                .list(&provider, per_provider.clamp(1, 1000), None)
                .await?;
            for upload in uploads {
                if !matches!(
                    upload.status,
                    UploadStatus::Receiving | UploadStatus::Received
                ) {
                    continue;
                }
                let stored = path(key_layout::upload_object_key(
                    &provider,
                    ObjectStage::Uploaded,
                    &upload.id,
                    upload.kind,
                ));
                match ctx.objects.head(&stored).await {
                    Ok(_) => {
                        let job = Job::for_upload(&provider, &upload.id, upload.kind);
                        ctx.queue.enqueue(job).await.map_err(queue_error)?;
                        requeued += 1;
                    }
                    Err(object_store::Error::NotFound { .. })
                        if upload.status == UploadStatus::Receiving =>
                    {
                        let mut pending = upload.clone();
                        pending.status = UploadStatus::Pending;
                        let _ = ctx.uploads.update(pending, upload.version).await;
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(requeued),
        }
    }
}

/// Puts a dead-lettered job back in the queue, and its upload (or run) back in progress.
pub async fn replay_dead_job(ctx: &IngestContext, id: &str) -> Result<Option<Job>, ProcessError> {
    let job = ctx.queue.replay(id).await.map_err(queue_error)?;
    if let Some(Job::AnalyticsRun { provider, run }) = &job
        && let (Ok(provider), Ok(run_id)) = (ProviderId::parse(provider), UploadId::parse(run))
        && let Some(stored) = ctx.runs.get(&provider, &run_id).await?
        && stored.status == RunStatus::Failed
    {
        let mut next = stored.clone();
        next.status = RunStatus::Queued;
        next.failure = None;
        next.finished_at = None;
        ctx.runs
            .update(next, stored.version)
            .await
            .map_err(concurrent)?;
    }
    if let Some((provider, upload)) = job.as_ref().and_then(Job::upload)
        && let (Ok(provider), Ok(upload_id)) =
            (ProviderId::parse(provider), UploadId::parse(upload))
        && let Some(stored) = ctx.uploads.get(&provider, &upload_id).await?
        && matches!(
            stored.status,
            UploadStatus::Failed | UploadStatus::Interrupted
        )
    {
        let mut next = stored.clone();
        next.status = UploadStatus::Processing;
        next.report = None;
        next.finished_at = None;
        ctx.uploads
            .update(next, stored.version)
            .await
            .map_err(concurrent)?;
    }
    Ok(job)
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
    let provider_of = |provider: &str| {
        ProviderId::parse(provider)
            .map_err(|_| ProcessError::Internal("job names an invalid provider".into()))
    };
    let id_of = |id: &str| {
        UploadId::parse(id).map_err(|_| ProcessError::Internal("job names an invalid id".into()))
    };
    match job {
        Job::CsvUpload { provider, upload } | Job::FacilityUpload { provider, upload } => {
            let done =
                process_upload(ctx, &provider_of(provider)?, &id_of(upload)?, attempt).await?;
            Ok(JobStatus::Upload(done.status))
        }
        Job::AnalyticsRun { provider, run } => {
            let status = process_run(ctx, &provider_of(provider)?, &id_of(run)?, attempt).await?;
            Ok(JobStatus::Run(status))
        }
    }
}

/// Marks the upload or run of a dead-lettered job failed, with the reason.
pub async fn mark_job_dead_lettered(
    ctx: &IngestContext,
    job: &Job,
    reason: &str,
) -> Result<(), ProcessError> {
    match job {
        Job::CsvUpload { provider, upload } | Job::FacilityUpload { provider, upload } => {
            if let (Ok(provider), Ok(upload)) =
                (ProviderId::parse(provider), UploadId::parse(upload))
            {
                mark_dead_lettered(ctx, &provider, &upload, reason).await?;
            }
        }
        Job::AnalyticsRun { provider, run } => {
            if let (Ok(provider), Ok(run)) = (ProviderId::parse(provider), UploadId::parse(run)) {
                mark_run_dead_lettered(ctx, &provider, &run, reason).await?;
            }
        }
    }
    Ok(())
}

pub(crate) enum ParsedRow {
    Valid {
        item: Item,
        line: u64,
        hash: String,
        raw_mrn: String,
        raw_date_time: String,
    },
    Rejected {
        problem: RowProblem,
        raw_mrn: String,
        raw_date_time: String,
    },
}

pub(crate) struct ParsedBatch {
    pub(crate) rows: Vec<ParsedRow>,
    /// The rows this batch accounts for (each row of the file is in exactly one batch).
    pub(crate) n_rows: u64,
    /// Rows rejected by a rule whose answer changes with time.
    pub(crate) n_time_dependent: u64,
}

impl ParsedBatch {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self {
            rows: Vec::with_capacity(rows),
            n_rows: 0,
            n_time_dependent: 0,
        }
    }

    /// This batch, leaving an empty one with room for `capacity` rows in its place.
    pub(crate) fn take(&mut self, capacity: usize) -> Self {
        std::mem::replace(self, Self::with_capacity(capacity))
    }
}

/// A rejected row as the writer records it.
pub(crate) fn rejected_row(
    line: u64,
    error: FieldError,
    raw_mrn: String,
    raw_date_time: String,
) -> ParsedRow {
    ParsedRow::Rejected {
        problem: RowProblem {
            line,
            outcome: "rejected".into(),
            column: error.column.to_owned(),
            reason: error.reason,
            index: None,
        },
        raw_mrn,
        raw_date_time,
    }
}

pub(crate) enum ParserMessage {
    Header {
        unknown_columns: Vec<String>,
        n_unknown_columns: u64,
    },
    Batch(ParsedBatch),
    FileFailed(FileError),
}

/// Streams the file through the parser (a blocking thread) and writes batches (this task).
async fn ingest_rows(
    ctx: &IngestContext,
    upload: &Upload,
    processing: &ObjectPath,
    errors_path: &ObjectPath,
    csv_file: &str,
    rules: VisitRules,
) -> Result<Result<(UploadReport, u64), FileError>, ProcessError> {
    let (provider, upload_id) = (&upload.provider, &upload.id);
    let reader = object_reader(
        ctx.objects.as_ref(),
        processing,
        Some(Arc::clone(&ctx.progress_bytes)),
    )
    .await?;
    // Two parsed batches ahead of the writer keep both cores busy; more only costs memory.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<ParserMessage>(2);
    let processed_at = UtcInstant::now().rfc3339_seconds();
    let source_provider = provider.clone();
    let source_upload = upload_id.clone();
    let source_file = csv_file.to_owned();
    let source_file_name = upload
        .file_name
        .as_ref()
        .map(|name| name.as_str().to_owned());
    let batch_rows = ctx.settings.batch_rows;
    let sort = ctx.key_order().then(|| SortSettings {
        dir: ctx
            .settings
            .sort_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir),
        buffer_bytes: ctx.settings.sort_buffer_bytes,
    });
    let errors_sort = sort.clone();
    let overlap_batches = sort.is_some();
    let sorted_rows = Arc::clone(&ctx.progress_sorted_rows);
    let parser = tokio::task::spawn_blocking(move || {
        let source = RecordSource {
            provider: &source_provider,
            upload: &source_upload,
            csv_file: &source_file,
            processed_at: &processed_at,
            file_name: source_file_name.as_deref(),
        };
        match sort {
            Some(sort) => parse_file_in_key_order(
                reader,
                &rules,
                &source,
                batch_rows,
                sort,
                &sorted_rows,
                &sender,
            ),
            None => parse_file(reader, &rules, &source, batch_rows, &sender),
        }
    });

    let mut report = UploadReport::default();
    // Rejections a later run could decide otherwise (a date too far ahead).
    let mut n_time_dependent = 0;
    // In key order, conflicts arrive after every rejection, so the error list is sorted
    // back into line order before it is written.
    let mut errors = ErrorsFile::new(ctx.objects.clone(), errors_path.clone(), errors_sort);
    let mut file_error = None;
    // In key order, no identity spans two batches (the parser cuts between identities), so
    // the next batch's writes may start before the last one's end: which is written first
    // changes no outcome. In file order a later batch may repeat a key of an earlier one,
    // and the earlier line must win, so each batch waits for the one before.
    let mut in_flight: Option<BatchInFlight> = None;
    while let Some(message) = receiver.recv().await {
        match message {
            ParserMessage::Header {
                unknown_columns,
                n_unknown_columns,
            } => {
                report.unknown_columns = unknown_columns;
                report.unknown_column_count = n_unknown_columns;
            }
            ParserMessage::FileFailed(error) => file_error = Some(error),
            ParserMessage::Batch(batch) => {
                n_time_dependent += batch.n_time_dependent;
                let previous = in_flight.take();
                let current = BatchInFlight::start(ctx, batch, &mut report);
                let mut result = match previous {
                    Some(previous) => {
                        finish_batch(ctx, upload_id, previous, &mut report, &mut errors).await
                    }
                    None => Ok(()),
                };
                if result.is_err() {
                    current.abandon().await;
                } else if overlap_batches {
                    in_flight = Some(current);
                } else {
                    result = finish_batch(ctx, upload_id, current, &mut report, &mut errors).await;
                }
                if let Err(error) = result {
                    drop(receiver);
                    errors.abort().await;
                    let _ = parser.await;
                    return Err(error);
                }
            }
        }
    }
    if let Some(last) = in_flight.take()
        && let Err(error) = finish_batch(ctx, upload_id, last, &mut report, &mut errors).await
    {
        errors.abort().await;
        let _ = parser.await;
        return Err(error);
    }
    parser
        .await
        .map_err(|e| ProcessError::Internal(format!("parser task: {e}")))?;
    match file_error {
        Some(FileError::Io(message)) => {
            errors.abort().await;
            Err(ProcessError::Read(message))
        }
        Some(error) => {
            errors.abort().await;
            Ok(Err(error))
        }
        None => {
            errors.finish().await?;
            report.first_problems.sort_by_key(|problem| problem.line);
            Ok(Ok((report, n_time_dependent)))
        }
    }
}

/// A blocking reader of an object, for a parser thread: a local file is read directly
/// (`object_store` would stream it in 8 KiB chunks, a blocking task each), any other
/// store through its byte stream. Bytes read are added to `progress`.
pub(crate) async fn object_reader(
    objects: &dyn ObjectStore,
    path: &ObjectPath,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Box<dyn Read + Send>, ProcessError> {
    let result = objects.get(path).await?;
    let inner: Box<dyn Read + Send> = match result.payload {
        GetResultPayload::File(mut file, _) => {
            file.seek(SeekFrom::Start(result.range.start))
                .map_err(|e| ProcessError::Read(e.to_string()))?;
            Box::new(file.take(result.range.end - result.range.start))
        }
        GetResultPayload::Stream(stream) => Box::new(tokio_util::io::SyncIoBridge::new(
            tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other)),
        )),
    };
    Ok(Box::new(CountedReader { inner, progress }))
}

struct CountedReader {
    inner: Box<dyn Read + Send>,
    progress: Option<Arc<AtomicU64>>,
}

impl Read for CountedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(progress) = &self.progress {
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

fn parse_file<R: std::io::Read>(
    input: R,
    rules: &VisitRules,
    source: &RecordSource<'_>,
    batch_rows: usize,
    sender: &tokio::sync::mpsc::Sender<ParserMessage>,
) {
    let mut reader = match VisitCsvReader::new(input) {
        Ok(reader) => reader,
        Err(error) => {
            let _ = sender.blocking_send(ParserMessage::FileFailed(error));
            return;
        }
    };
    let unknown_columns = std::mem::take(&mut reader.unknown_columns);
    let n_unknown_columns = reader.n_unknown_columns;
    if sender
        .blocking_send(ParserMessage::Header {
            unknown_columns,
            n_unknown_columns,
        })
        .is_err()
    {
        return;
    }
    let mut batch = ParsedBatch::with_capacity(batch_rows);
    loop {
        match reader.next_row(rules) {
            Ok(Some(row)) => {
                batch.n_rows += 1;
                batch.rows.push(match row.read {
                    RowRead::Valid(visit) => {
                        let hash = visit.content_hash();
                        ParsedRow::Valid {
                            item: visit_item((&visit).into(), row.line, hash.clone(), source),
                            line: row.line,
                            hash,
                            raw_mrn: row.raw_mrn,
                            raw_date_time: row.raw_date_time,
                        }
                    }
                    RowRead::Rejected(error) => {
                        batch.n_time_dependent += u64::from(error.depends_on_now);
                        rejected_row(row.line, error, row.raw_mrn, row.raw_date_time)
                    }
                });
                if batch.rows.len() >= batch_rows
                    && sender
                        .blocking_send(ParserMessage::Batch(batch.take(batch_rows)))
                        .is_err()
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = sender.blocking_send(ParserMessage::Batch(batch));
                let _ = sender.blocking_send(ParserMessage::FileFailed(error));
                return;
            }
        }
    }
    let _ = sender.blocking_send(ParserMessage::Batch(batch));
}

/// A batch whose valid rows are being written, with what accounting them needs.
struct BatchInFlight {
    write: tokio::task::JoinHandle<Result<Vec<PutOutcome>, StoreError>>,
    /// Line, content hash, raw MRN and raw date of each valid row, in the order written.
    rows: Vec<(u64, String, String, String)>,
    /// Rejected rows (conflicts join them when the outcomes are in).
    problems: Vec<(RowProblem, String, String)>,
    n_rows: u64,
}

impl BatchInFlight {
    /// Starts writing the valid rows of `batch` (on a task of its own, so that the next
    /// batch can be prepared meanwhile) and counts its rejected rows.
    fn start(ctx: &IngestContext, batch: ParsedBatch, report: &mut UploadReport) -> Self {
        let mut items = Vec::with_capacity(batch.rows.len());
        let mut rows = Vec::with_capacity(batch.rows.len());
        let mut problems = Vec::new();
        for row in batch.rows {
            match row {
                ParsedRow::Valid {
                    item,
                    line,
                    hash,
                    raw_mrn,
                    raw_date_time,
                } => {
                    items.push(item);
                    rows.push((line, hash, raw_mrn, raw_date_time));
                }
                ParsedRow::Rejected {
                    problem,
                    raw_mrn,
                    raw_date_time,
                } => {
                    report.counts.rejected += 1;
                    problems.push((problem, raw_mrn, raw_date_time));
                }
            }
        }
        let table = Arc::clone(&ctx.table);
        let write = tokio::spawn(async move { table.put_many_if_absent(items).await });
        Self {
            write,
            rows,
            problems,
            n_rows: batch.n_rows,
        }
    }

    /// Waits for the write to end, whatever its result (before giving up on an attempt, so
    /// that no write of it outlives it).
    async fn abandon(self) {
        let _ = self.write.await;
    }
}

/// Waits for a batch's writes and accounts for its rows: the report's counts, conflicts and
/// rejections in the error list, progress, and the injected fault of the tests.
async fn finish_batch(
    ctx: &IngestContext,
    upload_id: &UploadId,
    batch: BatchInFlight,
    report: &mut UploadReport,
    errors: &mut ErrorsFile,
) -> Result<(), ProcessError> {
    let BatchInFlight {
        write,
        rows,
        mut problems,
        n_rows,
    } = batch;
    let outcomes = write
        .await
        .map_err(|e| ProcessError::Internal(format!("store task: {e}")))??;
    ctx.progress_valid_rows
        .fetch_add(rows.len() as u64, Ordering::Relaxed);
    let mut outcomes = outcomes.into_iter();
    for (line, hash, raw_mrn, raw_date_time) in rows {
        let outcome = outcomes
            .next()
            .ok_or_else(|| ProcessError::Internal("store returned too few outcomes".into()))?;
        match outcome {
            PutOutcome::Written => report.counts.inserted += 1,
            PutOutcome::Exists(existing) => {
                let text = |name: &str| {
                    existing
                        .get(name)
                        .and_then(Value::as_s)
                        .unwrap_or_default()
                        .to_owned()
                };
                let same_source = text("uploadId") == upload_id.as_str()
                    && existing.get("sourceLine").and_then(Value::as_i64) == Some(line as i64);
                if same_source {
                    report.counts.inserted += 1;
                } else if text("contentHash") == hash {
                    report.counts.duplicate += 1;
                } else {
                    report.counts.conflict += 1;
                    let problem = RowProblem {
                        line,
                        index: None,
                        outcome: "conflict".into(),
                        column: "row".into(),
                        reason: format!(
                            "a different record for this patient and time already exists (from {} line {}); the stored record was kept",
                            text("csvFile"),
                            existing
                                .get("sourceLine")
                                .and_then(Value::as_i64)
                                .unwrap_or_default()
                        ),
                    };
                    problems.push((problem, raw_mrn, raw_date_time));
                }
            }
        }
    }
    // Rejected rows and conflicts, in line order, in the error list and the report.
    problems.sort_by_key(|(problem, _, _)| problem.line);
    for (problem, raw_mrn, raw_date_time) in problems {
        errors.push(&problem, &raw_mrn, &raw_date_time)?;
        keep_first_problems(&mut report.first_problems, problem);
    }
    errors.flush().await?;
    report.counts.rows += n_rows;
    let rows_so_far = ctx.progress_rows.fetch_add(n_rows, Ordering::Relaxed) + n_rows;
    if let Some(limit) = ctx.settings.fault_after_rows
        && report.counts.rows >= limit
        && ctx.faults_fired.fetch_add(1, Ordering::SeqCst) < ctx.settings.fault_times
    {
        if ctx.settings.fault_panics {
            panic!("injected panic after {rows_so_far} rows");
        }
        return Err(ProcessError::Injected(rows_so_far));
    }
    Ok(())
}

/// Keeps the [`UploadReport::MAX_PROBLEMS`] problems with the lowest lines, whatever
/// order they come in (in key order, conflicts come after every rejection).
fn keep_first_problems(first: &mut Vec<RowProblem>, problem: RowProblem) {
    if first.len() < UploadReport::MAX_PROBLEMS {
        first.push(problem);
        return;
    }
    if let Some((highest, kept)) = first
        .iter()
        .enumerate()
        .max_by_key(|(_, kept)| kept.line)
        .map(|(index, kept)| (index, kept.line))
        && problem.line < kept
    {
        first[highest] = problem;
    }
}

/// The full list of rows that did not become records, streamed to object storage (in
/// key order, sorted by line on disk first).
struct ErrorsFile {
    writer: Option<object_store::buffered::BufWriter>,
    objects: Arc<dyn ObjectStore>,
    path: ObjectPath,
    pending: Vec<u8>,
    /// Lines held for sorting by line number (key order only).
    sorter: Option<SpillSorter>,
}

impl ErrorsFile {
    const HEADER: &'static [u8] = b"line,outcome,column,reason,medical_record_number,date_time\n";

    /// Problems held in memory before a sorted run of them goes to disk.
    const SORT_BUFFER_BYTES: usize = 4 * 1024 * 1024;

    fn new(objects: Arc<dyn ObjectStore>, path: ObjectPath, sort: Option<SortSettings>) -> Self {
        Self {
            writer: None,
            objects,
            path,
            pending: Vec::new(),
            sorter: sort.map(|sort| {
                SpillSorter::new(sort.dir, sort.buffer_bytes.min(Self::SORT_BUFFER_BYTES))
            }),
        }
    }

    fn push(
        &mut self,
        problem: &RowProblem,
        raw_mrn: &str,
        raw_date_time: &str,
    ) -> Result<(), ProcessError> {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        let line = problem.line.to_string();
        let fields = [
            line.as_str(),
            &problem.outcome,
            &problem.column,
            &spreadsheet_safe(&problem.reason),
            &spreadsheet_safe(raw_mrn),
            &spreadsheet_safe(raw_date_time),
        ];
        if writer.write_record(fields).is_ok()
            && let Ok(bytes) = writer.into_inner()
        {
            match &mut self.sorter {
                Some(sorter) => sorter
                    .push(&problem.line.to_be_bytes(), &bytes)
                    .map_err(|e| {
                        ProcessError::Read(format!("sorting the error list on disk: {e}"))
                    })?,
                None => self.pending.extend_from_slice(&bytes),
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let mut writer =
                    object_store::buffered::BufWriter::new(self.objects.clone(), self.path.clone());
                writer
                    .write_all(Self::HEADER)
                    .await
                    .map_err(|e| ProcessError::Read(format!("writing the error list: {e}")))?;
                self.writer.insert(writer)
            }
        };
        writer
            .write_all(&self.pending)
            .await
            .map_err(|e| ProcessError::Read(format!("writing the error list: {e}")))?;
        self.pending.clear();
        Ok(())
    }

    async fn finish(mut self) -> Result<(), ProcessError> {
        if let Some(sorter) = self.sorter.take() {
            let failed = |e: std::io::Error| {
                ProcessError::Read(format!("sorting the error list on disk: {e}"))
            };
            let mut sorted = sorter.finish().map_err(failed)?;
            let (mut line, mut bytes) = (Vec::new(), Vec::new());
            while sorted.next_into(&mut line, &mut bytes).map_err(failed)? {
                self.pending.extend_from_slice(&bytes);
                if self.pending.len() >= 1024 * 1024 {
                    self.flush().await?;
                }
            }
        }
        self.flush().await?;
        match self.writer.take() {
            Some(mut writer) => writer
                .shutdown()
                .await
                .map_err(|e| ProcessError::Read(format!("writing the error list: {e}"))),
            None => {
                // No problems: an error list with just the header, so the download exists.
                self.objects
                    .put(&self.path, Self::HEADER.to_vec().into())
                    .await?;
                Ok(())
            }
        }
    }

    async fn abort(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.abort().await;
        }
    }
}

async fn finish(
    ctx: &IngestContext,
    upload: Upload,
    status: UploadStatus,
    report: UploadReport,
    report_stage: Option<ObjectStage>,
) -> Result<Upload, ProcessError> {
    if let Some(stage) = report_stage {
        let report_path = path(key_layout::report_object_key(
            &upload.provider,
            stage,
            &upload.id,
        ));
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| ProcessError::Internal(e.to_string()))?;
        ctx.objects.put(&report_path, json.into()).await?;
    }
    let OutcomeCounts {
        rows,
        inserted,
        duplicate,
        conflict,
        rejected,
    } = report.counts.clone();
    info!(
        status = status.as_str(),
        rows, inserted, duplicate, conflict, rejected, "upload finished"
    );
    if ctx.settings.audit {
        audit_upload(ctx, &upload, status, &report).await?;
    }
    let mut next = upload.clone();
    next.status = status;
    next.finished_at = Some(UtcInstant::now());
    next.report = Some(report);
    ctx.uploads
        .update(next, upload.version)
        .await
        .map_err(concurrent)
}

/// One audit event for a finished upload, with its counts. Its key derives from the
/// upload (time = the upload's creation), so a retried attempt does not add a second one.
async fn audit_upload(
    ctx: &IngestContext,
    upload: &Upload,
    status: UploadStatus,
    report: &UploadReport,
) -> Result<(), ProcessError> {
    let event = crate::AuditEvent {
        event_id: format!("ingest.{}", upload.id),
        at: upload.created_at,
        provider: upload.provider.clone(),
        actor: "worker".into(),
        action: "INGEST".into(),
        resource_type: "UPLOAD".into(),
        resource_id: Some(upload.id.to_string()),
        patient: None,
        result: if status == UploadStatus::Completed {
            "SUCCESS".into()
        } else {
            "FAILED".into()
        },
        request_id: None,
        client_address: None,
        detail: Some(serde_json::json!({
            "kind": upload.kind.as_str(),
            "counts": report.counts,
        })),
    };
    match ctx
        .table
        .put(event.to_item(), ward_store::Condition::NotExists)
        .await
    {
        Ok(()) | Err(ward_store::StoreError::ConditionFailed { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Puts the file in `processing/`: from `uploaded/` on a first attempt, or, when an earlier
/// attempt died after moving it on but before recording the upload's final status, back
/// from `completed/` or `failed/`. `false` if the file is nowhere.
async fn claim_file(
    objects: &dyn ObjectStore,
    provider: &ProviderId,
    upload_id: &UploadId,
    kind: UploadKind,
    uploaded: &ObjectPath,
    processing: &ObjectPath,
) -> Result<bool, ProcessError> {
    if move_object(objects, uploaded, processing).await? {
        return Ok(true);
    }
    for stage in [ObjectStage::Completed, ObjectStage::Failed] {
        let moved_on = path(key_layout::upload_object_key(
            provider, stage, upload_id, kind,
        ));
        if move_object(objects, &moved_on, processing).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves an object (copy, then delete). Returns `false` if neither the source nor the
/// destination exists. A crash between copy and delete is harmless: the next attempt
/// finds the destination and finishes the delete.
pub async fn move_object(
    objects: &dyn ObjectStore,
    from: &ObjectPath,
    to: &ObjectPath,
) -> Result<bool, ProcessError> {
    match objects.copy(from, to).await {
        Ok(()) => {}
        Err(object_store::Error::NotFound { .. }) => {
            return match objects.head(to).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(error) => Err(error.into()),
            };
        }
        Err(error) => return Err(error.into()),
    }
    match objects.delete(from).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

async fn provider_time_zone(
    ctx: &IngestContext,
    provider: &ProviderId,
) -> Result<Option<ProviderTimeZone>, ProcessError> {
    let key = ward_store::Key::new(key_layout::provider_pk(provider), key_layout::PROVIDER_SK);
    let item = ctx.table.get(&key).await?;
    let zone = item
        .as_ref()
        .and_then(|item| item.get("timeZone"))
        .and_then(Value::as_s)
        .and_then(|name| ProviderTimeZone::parse(name).ok());
    Ok(zone)
}

fn path(key: String) -> ObjectPath {
    ObjectPath::from(key)
}

pub(crate) fn concurrent(error: StoreError) -> ProcessError {
    match error {
        StoreError::ConditionFailed { .. } => ProcessError::Concurrent,
        error => error.into(),
    }
}

pub(crate) fn queue_error(error: QueueError) -> ProcessError {
    match error {
        QueueError::Store(error) => ProcessError::Store(error),
        error => ProcessError::Internal(error.to_string()),
    }
}

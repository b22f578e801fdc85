//! Jobs that did not end well: dead-lettered jobs marked on their upload or run, a replay
//! that puts them back in progress, and the start-up pass that requeues uploads a crash
//! left between receiving the file and queueing its job.

use object_store::ObjectStoreExt;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, RunId, UploadId, UtcInstant};
use ward_ports::{Job, ProcessError, RunStatus, UploadReport, UploadStatus};
use ward_store::Value;

use crate::context::{IngestContext, concurrent, path, queue_error};
use crate::outcome::finish;

/// Marks a run failed for good (its job was dead-lettered).
pub(crate) async fn mark_run_dead_lettered(
    ctx: &IngestContext,
    provider: &ProviderId,
    run_id: &RunId,
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
                        let _ = ctx.uploads.release(&upload).await;
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
        && let Some(stored) = ctx.runs.get(provider, run).await?
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
        && let Some(stored) = ctx.uploads.get(provider, upload).await?
        && matches!(
            stored.status,
            UploadStatus::Failed | UploadStatus::Interrupted
        )
    {
        ctx.uploads.reopen(&stored).await.map_err(concurrent)?;
    }
    Ok(job)
}

/// Marks the upload or run of a dead-lettered job failed, with the reason.
pub async fn mark_job_dead_lettered(
    ctx: &IngestContext,
    job: &Job,
    reason: &str,
) -> Result<(), ProcessError> {
    match job {
        Job::CsvUpload { provider, upload } | Job::FacilityUpload { provider, upload } => {
            mark_dead_lettered(ctx, provider, upload, reason).await?;
        }
        Job::AnalyticsRun { provider, run } => {
            mark_run_dead_lettered(ctx, provider, run, reason).await?;
        }
    }
    Ok(())
}

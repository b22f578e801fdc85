//! A facility file's job, after `upload_job` has claimed it.

use std::time::Instant;

use object_store::path::Path as ObjectPath;
use ward_domain::key_layout::{self, ObjectStage};
use ward_domain::{RunId, UtcInstant};
use ward_ports::{
    AnalyticsRun, FacilityOutcome, Job, NO_ANALYTICS, ProcessError, RunRequest, Upload,
    UploadStatus,
};

use crate::context::{IngestContext, path, queue_error};
use crate::objects::move_object;
use crate::outcome::{fail_file, failure_report, finish};

/// A facility file: validated and merged into the dataset by the analytics port, then an
/// analytics run queued (its id is the upload's, so a retry queues the same run).
pub(crate) async fn process_facilities(
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
        .ingest_facilities(&ctx.storage(), &upload.provider, &upload.id, processing)
        .await?;
    let mut report = match outcome {
        FacilityOutcome::Processed(report) => report,
        FacilityOutcome::FileFailed(reason) => {
            let report = failure_report(reason, attempt, started);
            return fail_file(ctx, upload, processing, report).await;
        }
    };
    let run_id = RunId::of_upload(&upload.id);
    let run = AnalyticsRun::queued(
        &upload.provider,
        &run_id,
        RunRequest {
            as_of: UtcInstant::now().civil_date(),
            months_ahead: 6,
        },
        Some(&upload.id),
    );
    ctx.runs.create(&run).await?;
    ctx.queue
        .enqueue(Job::AnalyticsRun {
            provider: upload.provider.clone(),
            run: run_id,
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

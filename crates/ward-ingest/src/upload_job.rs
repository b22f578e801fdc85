//! An upload's job: claims the file, answers a byte-identical file from an earlier upload,
//! or reads its rows (`write`), then moves the file on and finishes the upload
//! (`outcome`). A facility file goes on to `facility_job`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use object_store::ObjectStoreExt;
use tracing::instrument;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::time::ProviderTimeZone;
use ward_domain::visit::VisitRules;
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ports::{ProcessError, Upload, UploadReport, UploadStatus};
use ward_store::Value;

use crate::context::{IngestContext, concurrent, path};
use crate::facility_job::process_facilities;
use crate::identical;
use crate::objects::{claim_file, move_object};
use crate::outcome::{fail_file, failure_report, finish};
use crate::write::ingest_rows;

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
        upload = ctx
            .uploads
            .start_processing(&upload)
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
        upload = ctx
            .uploads
            .mark_rows_read(&upload)
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

pub(crate) async fn provider_time_zone(
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

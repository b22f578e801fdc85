//! How an upload ends: its report beside the file, its audit event, its final status.

use std::time::Instant;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use tracing::info;
use ward_domain::key_layout::{self, ObjectStage};
use ward_ports::{AuditEvent, OutcomeCounts, ProcessError, Upload, UploadReport, UploadStatus};

use crate::context::{IngestContext, concurrent, path};
use crate::objects::move_object;

pub(crate) fn failure_report(reason: String, attempt: u32, started: Instant) -> UploadReport {
    UploadReport {
        failure: Some(reason),
        attempts: attempt,
        duration_ms: started.elapsed().as_millis() as u64,
        ..UploadReport::default()
    }
}

/// A file that fails as a whole: moved to `failed/`, the upload finished as failed.
pub(crate) async fn fail_file(
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

pub(crate) async fn finish(
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
    ctx.uploads
        .finish(&upload, status, report)
        .await
        .map_err(concurrent)
}

/// One audit event for a finished upload, with its counts. Its key derives from the
/// upload (time = the upload's creation), so a retried attempt does not add a second one.
pub(crate) async fn audit_upload(
    ctx: &IngestContext,
    upload: &Upload,
    status: UploadStatus,
    report: &UploadReport,
) -> Result<(), ProcessError> {
    let event = AuditEvent {
        event_id: format!("ingest.{}", upload.id),
        at: upload.created_at,
        provider: upload.provider.clone(),
        actor: "worker".into(),
        role: None,
        sign_in: None,
        emergency_reason: None,
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
        .put(
            event.to_item(&ctx.pseudonyms),
            ward_store::Condition::NotExists,
        )
        .await
    {
        Ok(()) | Err(ward_store::StoreError::ConditionFailed { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

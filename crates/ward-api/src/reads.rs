//! The audit of reads that happen outside the EMR service (CSV visits, upload reports
//! and error lists): one event per read, its outcome taken from the answer.

use ward_emr::Actor;

use crate::{ApiError, AppState};

/// Appends the audit event of a read outside the EMR service (CSV visits, upload
/// reports and error lists): `result` decides the outcome.
pub(crate) async fn audit_read<T>(
    state: &AppState,
    actor: &Actor,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    patient: Option<&str>,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let outcome = match &result {
        Ok(_) => "SUCCESS",
        Err(ApiError::NotFound(_)) => "NOT_FOUND",
        Err(ApiError::Invalid { .. } | ApiError::Fields(_)) => "INVALID",
        Err(ApiError::NotReady(_)) => "NOT_READY",
        Err(_) => "ERROR",
    };
    state
        .emr
        .audit_log()
        .record(actor.event(action, resource_type, Some(resource_id), patient, outcome))
        .await;
    result
}

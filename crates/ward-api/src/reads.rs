//! The audit of what happens outside the EMR service: reads of CSV visits, upload reports
//! and error lists (one event per read, its outcome taken from the answer), and the
//! administration of users and keys.

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

/// Appends the audit event of a change to a provider's users or keys (a success: refused
/// changes changed nothing).
pub(crate) async fn audit_admin(
    state: &AppState,
    principal: &crate::principal::Principal,
    action: &str,
    resource_type: &str,
    resource_id: &str,
) -> Result<(), ApiError> {
    let actor = principal.actor()?;
    state
        .emr
        .audit_log()
        .record(actor.event(action, resource_type, Some(resource_id), None, "SUCCESS"))
        .await;
    Ok(())
}

//! An analytics run's job: the standard queries, through the analytics port.

use tracing::{info, instrument};
use ward_domain::{ProviderId, RunId, UtcInstant};
use ward_ports::{NO_ANALYTICS, ProcessError, RunStatus};

use crate::context::{IngestContext, concurrent};

/// Runs an analytics run to its end. Safe to call again after any failure: results are
/// rewritten in place under the run's own prefix.
#[instrument(skip_all, fields(provider_id = %provider, run_id = %run_id))]
pub async fn process_run(
    ctx: &IngestContext,
    provider: &ProviderId,
    run_id: &RunId,
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
        Some(analytics) => analytics.run_standard_queries(&ctx.storage(), &run).await?,
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

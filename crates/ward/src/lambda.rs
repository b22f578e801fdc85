//! The Lambda entry point of the AWS shape's worker: an SQS event (a batch of messages,
//! each an S3 notification or a Ward job) runs the same processing as `ward worker`.
//!
//! Failures are reported per message (partial batch response), so SQS retries only those,
//! after the queue's visibility timeout; the attempt is the message's receive count. A job
//! that fails its last attempt is put in the dead-letter queue with the reason and its
//! upload marked failed, as the long-running worker does; a message nobody can read is
//! reported failed every time and left to the redrive policy (dead-letter queue after 3).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tracing::warn;
use ward_aws::{SqsJobQueue, jobs_of_message};
use ward_ingest::mark_job_dead_lettered;
use ward_ingest::{IngestContext, run_job};
use ward_ports::{Job, ProcessError};

/// Handles one SQS event; returns the messages to retry.
// `..Default::default()` below fills the event types' catch-all fields, which exist when
// another crate turns on aws_lambda_events' `catch-all-fields` feature.
#[allow(clippy::needless_update)]
pub async fn handle_sqs_event(
    ctx: &IngestContext,
    dead_letters: &SqsJobQueue,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let attempt: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let jobs = match jobs_of_message(message.body.as_deref().unwrap_or_default()) {
            Ok(jobs) => jobs,
            Err(reason) => {
                // Never logs the body.
                warn!(message_id = %id, %reason, "unreadable message left to the redrive policy");
                failures.push(id);
                continue;
            }
        };
        for job in jobs {
            let Err(error) = run(ctx, &job, attempt).await else {
                continue;
            };
            if attempt < ctx.settings.max_attempts {
                warn!(job_id = %job.id(), attempt, error = %error, "job failed; SQS will retry");
                failures.push(id.clone());
                break;
            }
            warn!(job_id = %job.id(), attempt, error = %error, "job failed for good; dead-lettered");
            let reason = error.to_string();
            if let Err(error) = dead_letters.send_dead_letter(&job, attempt, &reason).await {
                warn!(error = %error, "could not dead-letter; SQS will retry");
                failures.push(id.clone());
                break;
            }
            if let Err(error) = mark_job_dead_lettered(ctx, &job, &reason).await {
                warn!(error = %error, "could not mark the job's upload or run failed");
            }
        }
    }
    SqsBatchResponse {
        batch_item_failures: failures
            .into_iter()
            .map(|item_identifier| BatchItemFailure {
                item_identifier,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn run(ctx: &IngestContext, job: &Job, attempt: u32) -> Result<(), ProcessError> {
    run_job(ctx, job, attempt).await.map(|_| ())
}

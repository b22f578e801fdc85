//! The job queue on SQS.
//!
//! One queue carries S3 `ObjectCreated` notifications (the bucket sends them) and Ward's
//! own jobs (replays). A lease is the message's visibility timeout; `extend` is
//! `ChangeMessageVisibility`; `complete` is `DeleteMessage`; `retry` makes the message
//! visible again after the backoff delay, and the attempt is SQS's receive count.
//! Messages nobody can read (or that crash the worker) are left alone: the queue's redrive
//! policy moves them to the dead-letter queue after 3 receives. A job that failed its last
//! attempt is moved there by the worker with the reason, as a small JSON envelope.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde::{Deserialize, Serialize};
use tracing::warn;
use ward_ports::s3_events::jobs_of_notification;
use ward_ports::{DeadJob, Delivery, Job, JobQueue, QueueError};

/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// How many messages one receive skips (test events, keys that are not uploads) before it
/// reports "nothing visible".
const MAX_SKIPPED: usize = 20;

/// The jobs a message body carries: a Ward job, or an S3 notification (none for S3's test
/// event or for keys outside `{provider}/uploaded/`).
pub fn jobs_of_message(body: &str) -> Result<Vec<Job>, String> {
    if let Ok(job) = serde_json::from_str::<Job>(body) {
        return Ok(vec![job]);
    }
    jobs_of_notification(body).map_err(|error| error.to_string())
}

/// What the worker puts in the dead-letter queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetter {
    job: Job,
    attempts: u32,
    reason: String,
    failed_at_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    dead_letter: DeadLetter,
}

/// The job queue on an SQS queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
    wait: Duration,
}

impl SqsJobQueue {
    /// The queue at `queue_url`, whose redrive policy sends to `dead_letter_url`.
    /// `receive` long-polls for up to `wait` (at most 20 s; zero polls once).
    pub fn new(client: Client, queue_url: &str, dead_letter_url: &str, wait: Duration) -> Self {
        Self {
            client,
            queue_url: queue_url.to_owned(),
            dead_letter_url: dead_letter_url.to_owned(),
            wait: wait.min(Duration::from_secs(20)),
        }
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The dead-letter queue's URL.
    pub fn dead_letter_url(&self) -> &str {
        &self.dead_letter_url
    }

    /// Puts a job that failed for good in the dead-letter queue, with why (used by the
    /// worker and by the Lambda entry point, which gets its messages from Lambda).
    pub async fn send_dead_letter(
        &self,
        job: &Job,
        attempts: u32,
        reason: &str,
    ) -> Result<(), QueueError> {
        let envelope = Envelope {
            dead_letter: DeadLetter {
                job: job.clone(),
                attempts,
                reason: reason.to_owned(),
                failed_at_ms: now_ms(),
            },
        };
        let body =
            serde_json::to_string(&envelope).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(body)
            .send()
            .await
            .map_err(service)?;
        Ok(())
    }

    async fn send(&self, job: &Job) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(service)?;
        Ok(())
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        match self
            .client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if lease_lost(error.code()) => Err(QueueError::LeaseLost),
            Err(error) => Err(service(error)),
        }
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        match self
            .client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(after))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if lease_lost(error.code()) => Err(QueueError::LeaseLost),
            Err(error) => Err(service(error)),
        }
    }

    /// Reads the dead-letter queue (every message, leased for a short while so that one
    /// pass sees each once), hands each to `visit`, then makes the ones `visit` kept
    /// visible again. `visit` returns `true` to keep a message in the queue.
    async fn scan_dead(
        &self,
        mut visit: impl FnMut(DeadJob) -> bool,
    ) -> Result<Vec<String>, QueueError> {
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        loop {
            let page = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(service)?;
            let messages = page.messages();
            if messages.is_empty() {
                break;
            }
            let mut new = 0;
            for message in messages {
                let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle())
                else {
                    continue;
                };
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                new += 1;
                let keep = dead_jobs_of(message).into_iter().fold(true, |keep, dead| {
                    let kept_this = visit(dead);
                    keep && kept_this
                });
                if keep {
                    kept.push(receipt.to_owned());
                } else {
                    removed.push(receipt.to_owned());
                }
            }
            if new == 0 {
                break;
            }
        }
        for receipt in &kept {
            // Visible again for the next reader; a failure only delays that by 30 s.
            let _ = self
                .set_visibility(&self.dead_letter_url, receipt, Duration::ZERO)
                .await;
        }
        Ok(removed)
    }
}

fn dead_jobs_of(message: &Message) -> Vec<DeadJob> {
    let body = message.body().unwrap_or_default();
    if let Ok(envelope) = serde_json::from_str::<Envelope>(body) {
        let dead = envelope.dead_letter;
        return vec![DeadJob {
            id: dead.job.id(),
            job: dead.job,
            attempts: dead.attempts,
            reason: dead.reason,
            failed_at_ms: dead.failed_at_ms,
        }];
    }
    // Moved here by the redrive policy: the original message.
    let receives = receive_count(message);
    let sent_ms = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    jobs_of_message(body)
        .unwrap_or_default()
        .into_iter()
        .map(|job| DeadJob {
            id: job.id(),
            job,
            attempts: receives,
            reason: "moved to the dead-letter queue by its redrive policy".into(),
            failed_at_ms: sent_ms,
        })
        .collect()
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        self.send(&job).await
    }

    async fn receive(&self, lease: Duration) -> Result<Option<Delivery>, QueueError> {
        for _ in 0..MAX_SKIPPED {
            let page = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(1)
                .visibility_timeout(whole_seconds(lease))
                .wait_time_seconds(self.wait.as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(service)?;
            let Some(message) = page.messages().first() else {
                return Ok(None);
            };
            let Some(receipt) = message.receipt_handle() else {
                continue;
            };
            let jobs = match jobs_of_message(message.body().unwrap_or_default()) {
                Ok(jobs) => jobs,
                Err(reason) => {
                    // Never logs the body. The redrive policy moves it after 3 receives.
                    warn!(message_id = message.message_id().unwrap_or_default(), %reason, "unreadable queue message left to the redrive policy");
                    continue;
                }
            };
            let mut jobs = jobs.into_iter();
            let Some(first) = jobs.next() else {
                // S3's test event, or an object Ward does not process: nothing to do.
                self.delete(&self.queue_url, receipt)
                    .await
                    .or_else(|e| match e {
                        QueueError::LeaseLost => Ok(()),
                        e => Err(e),
                    })?;
                continue;
            };
            for job in jobs {
                // A notification naming several objects: one message per further job.
                self.send(&job).await?;
            }
            return Ok(Some(Delivery {
                job: first,
                attempt: receive_count(message),
                receipt: receipt.to_owned(),
            }));
        }
        Ok(None)
    }

    async fn extend(&self, delivery: &mut Delivery, lease: Duration) -> Result<(), QueueError> {
        self.set_visibility(&self.queue_url, &delivery.receipt, lease)
            .await
    }

    async fn complete(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.delete(&self.queue_url, &delivery.receipt).await
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        tracing::debug!(job_id = %delivery.job.id(), reason, "retry after {delay:?}");
        self.set_visibility(&self.queue_url, &delivery.receipt, delay)
            .await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.send_dead_letter(&delivery.job, delivery.attempt, reason)
            .await?;
        self.delete(&self.queue_url, &delivery.receipt).await
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let mut dead = Vec::new();
        self.scan_dead(|job| {
            dead.push(job);
            true
        })
        .await?;
        dead.sort_by(|a, b| a.id.cmp(&b.id));
        dead.truncate(limit);
        Ok(dead)
    }

    async fn replay(&self, id: &str) -> Result<Option<Job>, QueueError> {
        let mut found = None;
        let removed = self
            .scan_dead(|dead| {
                if found.is_none() && dead.id == id {
                    found = Some(dead.job);
                    false
                } else {
                    true
                }
            })
            .await?;
        let Some(job) = found else {
            return Ok(None);
        };
        self.send(&job).await?;
        for receipt in removed {
            self.delete(&self.dead_letter_url, &receipt).await?;
        }
        Ok(Some(job))
    }
}

fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// SQS takes whole seconds; round up so a lease is never shorter than asked.
fn whole_seconds(duration: Duration) -> i32 {
    let duration = duration.min(MAX_VISIBILITY);
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    seconds as i32
}

fn lease_lost(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ReceiptHandleIsInvalid" | "MessageNotInflight" | "InvalidParameterValue")
            | Some("AWS.SimpleQueueService.MessageNotInflight")
    )
}

fn service<E: std::error::Error + Send + Sync + 'static>(
    error: aws_sdk_sqs::error::SdkError<E>,
) -> QueueError {
    let error = aws_sdk_sqs::error::DisplayErrorContext(error);
    QueueError::Service(error.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_up_to_whole_seconds_within_sqs_limits() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(60)), 60);
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_secs(100_000)), 43_200);
    }

    #[test]
    fn a_message_is_a_ward_job_or_an_s3_notification() {
        let job = Job::CsvUpload {
            provider: ward_domain::ProviderId::parse("PROV001").unwrap(),
            upload: ward_domain::UploadId::parse("20250101T000000Z-0000000000000001").unwrap(),
        };
        let body = serde_json::to_string(&job).unwrap();
        assert_eq!(jobs_of_message(&body).unwrap(), vec![job.clone()]);
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"PROV001%2Fuploaded%2F20250101T000000Z-0000000000000001.csv"}}}]}"#;
        assert_eq!(jobs_of_message(event).unwrap(), vec![job]);
        assert!(
            jobs_of_message(r#"{"Event":"s3:TestEvent"}"#)
                .unwrap()
                .is_empty()
        );
        assert!(jobs_of_message("not json").is_err());
    }
}

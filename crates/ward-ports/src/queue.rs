//! The job queue port (durable, at-least-once, with leases and a dead-letter list) and its
//! table-backed implementation for the embedded shape.
//!
//! The port maps onto SQS: `receive` = ReceiveMessage with a visibility timeout,
//! `extend` = ChangeMessageVisibility, `complete` = DeleteMessage, `retry` = visibility
//! set to the backoff delay, `dead_letter` = the queue's redrive policy.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use ward_domain::key_layout::UploadKind;
use ward_domain::{ProviderId, RunId, UploadId};
use ward_store::{
    Condition, Item, Key, PK, Query, SK, SkCondition, StoreError, Table, VERSION, Value, WriteOp,
};

/// A unit of work. Its ids are parsed once, when the job is read from the queue: a job
/// whose provider or id is malformed is not a job (the queue reports it corrupt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JobText", into = "JobText")]
pub enum Job {
    /// Process an uploaded visit CSV.
    CsvUpload {
        /// The tenant (taken from the object key Ward wrote).
        provider: ProviderId,
        /// The upload.
        upload: UploadId,
    },
    /// Process an uploaded facility file (JSON).
    FacilityUpload {
        /// The tenant (taken from the object key Ward wrote).
        provider: ProviderId,
        /// The upload.
        upload: UploadId,
    },
    /// Run the standard facility analytics.
    AnalyticsRun {
        /// The tenant.
        provider: ProviderId,
        /// The run (its item says the run date and what started it).
        run: RunId,
    },
}

/// A job as stored and sent (JSON with a `kind` tag).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JobText {
    CsvUpload { provider: String, upload: String },
    FacilityUpload { provider: String, upload: String },
    AnalyticsRun { provider: String, run: String },
}

impl From<Job> for JobText {
    fn from(job: Job) -> Self {
        match job {
            Job::CsvUpload { provider, upload } => Self::CsvUpload {
                provider: provider.to_string(),
                upload: upload.to_string(),
            },
            Job::FacilityUpload { provider, upload } => Self::FacilityUpload {
                provider: provider.to_string(),
                upload: upload.to_string(),
            },
            Job::AnalyticsRun { provider, run } => Self::AnalyticsRun {
                provider: provider.to_string(),
                run: run.to_string(),
            },
        }
    }
}

impl TryFrom<JobText> for Job {
    type Error = String;

    fn try_from(text: JobText) -> Result<Self, String> {
        let provider = |p: &str| {
            ProviderId::parse(p).map_err(|e| format!("job names an invalid provider: {e}"))
        };
        let upload =
            |u: &str| UploadId::parse(u).map_err(|e| format!("job names an invalid upload: {e}"));
        Ok(match text {
            JobText::CsvUpload {
                provider: p,
                upload: u,
            } => Self::CsvUpload {
                provider: provider(&p)?,
                upload: upload(&u)?,
            },
            JobText::FacilityUpload {
                provider: p,
                upload: u,
            } => Self::FacilityUpload {
                provider: provider(&p)?,
                upload: upload(&u)?,
            },
            JobText::AnalyticsRun { provider: p, run } => Self::AnalyticsRun {
                provider: provider(&p)?,
                run: RunId::parse(&run).map_err(|e| format!("job names an invalid run: {e}"))?,
            },
        })
    }
}

impl Job {
    /// A stable id: the same work always has the same id, so enqueueing twice is harmless.
    pub fn id(&self) -> String {
        match self {
            Self::CsvUpload { provider, upload } => format!("csv.{provider}.{upload}"),
            Self::FacilityUpload { provider, upload } => {
                format!("facilities.{provider}.{upload}")
            }
            Self::AnalyticsRun { provider, run } => format!("analytics.{provider}.{run}"),
        }
    }

    /// The job that processes an upload of this kind.
    pub fn for_upload(provider: &ProviderId, upload: &UploadId, kind: UploadKind) -> Self {
        let (provider, upload) = (provider.clone(), upload.clone());
        match kind {
            UploadKind::Visits => Self::CsvUpload { provider, upload },
            UploadKind::Facilities => Self::FacilityUpload { provider, upload },
        }
    }

    /// The provider and upload of an upload job (`None` for other jobs).
    pub fn upload(&self) -> Option<(&ProviderId, &UploadId)> {
        match self {
            Self::CsvUpload { provider, upload } | Self::FacilityUpload { provider, upload } => {
                Some((provider, upload))
            }
            Self::AnalyticsRun { .. } => None,
        }
    }
}

/// A job handed to a worker, leased until completed, retried, or the lease runs out.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// The lease's handle (opaque).
    pub receipt: String,
}

/// A job in the dead-letter list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    /// The job's id.
    pub id: String,
    /// The job.
    pub job: Job,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub reason: String,
    /// When it was dead-lettered (ms since the epoch).
    pub failed_at_ms: i64,
}

/// What can go wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The lease ran out and another worker may hold the job now.
    #[error("the job's lease was lost")]
    LeaseLost,
    /// The backing store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored message could not be read.
    #[error("unreadable job: {0}")]
    Corrupt(String),
    /// The queue service failed or could not be reached (SQS).
    #[error("queue service: {0}")]
    Service(String),
}

/// A durable, at-least-once job queue. Every job may be delivered more than once (a lease
/// that runs out, a second enqueue on SQS), so processing a job must be idempotent; the
/// worker's is.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Adds a job, visible at once. The table queue keeps one copy per job id; SQS may
    /// deliver a job enqueued twice twice.
    async fn enqueue(&self, job: Job) -> Result<(), QueueError>;
    /// Leases the next visible job for `lease`, or `None` when none is visible.
    async fn receive(&self, lease: Duration) -> Result<Option<Delivery>, QueueError>;
    /// Extends a lease held by this worker.
    async fn extend(&self, delivery: &mut Delivery, lease: Duration) -> Result<(), QueueError>;
    /// Removes a finished job. With a lease that ran out, either `LeaseLost`, or (SQS, which
    /// accepts stale receipts) `Ok`, removing the job from under its new holder: harmless,
    /// since a job is only completed once it is done. Completing twice is harmless.
    async fn complete(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Makes the job visible again after `delay`, noting why this attempt failed.
    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError>;
    /// Moves the job to the dead-letter list.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
    /// The dead-letter list, oldest id first.
    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError>;
    /// Moves a dead job back into the queue with a fresh attempt count. `false` if no dead
    /// job has this id.
    async fn replay(&self, id: &str) -> Result<Option<Job>, QueueError>;
}

/// The embedded queue: jobs are items in the table, so they are as durable as records.
/// Visible jobs are found through index GSI1, keyed by visibility time.
pub struct TableJobQueue {
    table: Arc<dyn Table>,
    name: String,
    notify: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for TableJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableJobQueue")
            .field("name", &self.name)
            .finish()
    }
}

const INDEX: &str = "GSI1";

impl TableJobQueue {
    /// A queue named `name` in the table.
    pub fn new(table: Arc<dyn Table>, name: &str) -> Self {
        Self {
            table,
            name: name.to_owned(),
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notified whenever a job is enqueued or replayed, to wake an idle worker.
    pub fn notifier(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.notify)
    }

    /// Makes every leased job visible now: the embedded store has one owner process, so at
    /// start-up no lease can belong to a live worker, and unfinished jobs resume at once.
    pub async fn release_all_leases(&self) -> Result<usize, QueueError> {
        let mut released = 0;
        let mut cursor = None;
        let now = now_ms();
        loop {
            let page = self
                .table
                .query(Query {
                    cursor,
                    limit: 100,
                    ..Query::partition(self.jobs_pk(), SkCondition::BeginsWith("JOB#".into()))
                })
                .await?;
            for item in &page.items {
                let visible_at = item.get("visibleAt").and_then(Value::as_i64).unwrap_or(0);
                if visible_at > now {
                    let version = item.get(VERSION).and_then(Value::as_i64).unwrap_or(0);
                    let job = decode_job(item)?;
                    let attempt = attempt_of(item);
                    let next = self.job_item(&job, now, attempt, version + 1, last_error(item));
                    if self
                        .table
                        .put(next, Condition::VersionIs(version))
                        .await
                        .is_ok()
                    {
                        released += 1;
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(released),
            }
        }
    }

    fn jobs_pk(&self) -> String {
        format!("PLATFORM#QUEUE#{}", self.name)
    }

    fn dead_pk(&self) -> String {
        format!("PLATFORM#DLQ#{}", self.name)
    }

    fn ready_pk(&self) -> String {
        format!("PLATFORM#QUEUE#{}#READY", self.name)
    }

    fn job_item(
        &self,
        job: &Job,
        visible_at: i64,
        attempt: u32,
        version: i64,
        error: Option<&str>,
    ) -> Item {
        let mut item = Item::new();
        item.insert(PK.into(), Value::s(self.jobs_pk()));
        item.insert(SK.into(), Value::s(format!("JOB#{}", job.id())));
        item.insert(
            "job".into(),
            Value::s(serde_json::to_string(job).unwrap_or_default()),
        );
        item.insert("visibleAt".into(), Value::n(visible_at));
        item.insert("attempt".into(), Value::n(i64::from(attempt)));
        item.insert(VERSION.into(), Value::n(version));
        item.insert("GSI1PK".into(), Value::s(self.ready_pk()));
        item.insert(
            "GSI1SK".into(),
            Value::s(format!("{visible_at:015}#{}", job.id())),
        );
        if let Some(error) = error {
            item.insert("lastError".into(), Value::s(error));
        }
        item
    }

    fn job_key(&self, id: &str) -> Key {
        Key::new(self.jobs_pk(), format!("JOB#{id}"))
    }

    async fn release(
        &self,
        delivery: &Delivery,
        visible_at: i64,
        error: &str,
    ) -> Result<(), QueueError> {
        let version = receipt_version(delivery)?;
        let item = self.job_item(
            &delivery.job,
            visible_at,
            delivery.attempt,
            version + 1,
            Some(error),
        );
        self.table
            .put(item, Condition::VersionIs(version))
            .await
            .map_err(lease_error)
    }
}

#[async_trait]
impl JobQueue for TableJobQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let item = self.job_item(&job, now_ms(), 0, 0, None);
        match self.table.put(item, Condition::NotExists).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        self.notify.notify_one();
        Ok(())
    }

    async fn receive(&self, lease: Duration) -> Result<Option<Delivery>, QueueError> {
        loop {
            let now = now_ms();
            let page = self
                .table
                .query(Query {
                    index: Some(INDEX),
                    limit: 1,
                    ..Query::partition(self.ready_pk(), SkCondition::Lt(format!("{:015}~", now)))
                })
                .await?;
            let Some(item) = page.items.into_iter().next() else {
                return Ok(None);
            };
            let job = decode_job(&item)?;
            let version = item.get(VERSION).and_then(Value::as_i64).unwrap_or(0);
            let attempt = attempt_of(&item) + 1;
            let leased_until = now + lease.as_millis() as i64;
            let next = self.job_item(&job, leased_until, attempt, version + 1, last_error(&item));
            match self.table.put(next, Condition::VersionIs(version)).await {
                Ok(()) => {
                    return Ok(Some(Delivery {
                        job,
                        attempt,
                        receipt: (version + 1).to_string(),
                    }));
                }
                // Another worker leased it first: look again.
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn extend(&self, delivery: &mut Delivery, lease: Duration) -> Result<(), QueueError> {
        let version = receipt_version(delivery)?;
        let current = self.table.get(&self.job_key(&delivery.job.id())).await?;
        let error = current.as_ref().and_then(last_error).map(str::to_owned);
        let item = self.job_item(
            &delivery.job,
            now_ms() + lease.as_millis() as i64,
            delivery.attempt,
            version + 1,
            error.as_deref(),
        );
        self.table
            .put(item, Condition::VersionIs(version))
            .await
            .map_err(lease_error)?;
        delivery.receipt = (version + 1).to_string();
        Ok(())
    }

    async fn complete(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let version = receipt_version(delivery)?;
        self.table
            .delete(
                &self.job_key(&delivery.job.id()),
                Condition::VersionIs(version),
            )
            .await
            .map_err(lease_error)
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.release(delivery, now_ms() + delay.as_millis() as i64, reason)
            .await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let version = receipt_version(delivery)?;
        let id = delivery.job.id();
        let mut dead = Item::new();
        dead.insert(PK.into(), Value::s(self.dead_pk()));
        dead.insert(SK.into(), Value::s(format!("JOB#{id}")));
        dead.insert(
            "job".into(),
            Value::s(serde_json::to_string(&delivery.job).unwrap_or_default()),
        );
        dead.insert("attempt".into(), Value::n(i64::from(delivery.attempt)));
        dead.insert("lastError".into(), Value::s(reason));
        dead.insert("failedAt".into(), Value::n(now_ms()));
        self.table
            .transact_write(vec![
                WriteOp::Delete {
                    key: self.job_key(&id),
                    condition: Condition::VersionIs(version),
                },
                WriteOp::Put {
                    item: dead,
                    condition: Condition::None,
                },
            ])
            .await
            .map_err(|error| match error {
                StoreError::TransactionCanceled { .. } => QueueError::LeaseLost,
                error => error.into(),
            })
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let page = self
            .table
            .query(Query {
                limit: limit.clamp(1, 1000),
                ..Query::partition(self.dead_pk(), SkCondition::BeginsWith("JOB#".into()))
            })
            .await?;
        page.items
            .iter()
            .map(|item| {
                let job = decode_job(item)?;
                Ok(DeadJob {
                    id: job.id(),
                    job,
                    attempts: attempt_of(item),
                    reason: last_error(item).unwrap_or_default().to_owned(),
                    failed_at_ms: item.get("failedAt").and_then(Value::as_i64).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn replay(&self, id: &str) -> Result<Option<Job>, QueueError> {
        let dead_key = Key::new(self.dead_pk(), format!("JOB#{id}"));
        let Some(item) = self.table.get(&dead_key).await? else {
            return Ok(None);
        };
        let job = decode_job(&item)?;
        let queued = self.job_item(&job, now_ms(), 0, 0, None);
        self.table
            .transact_write(vec![
                WriteOp::Delete {
                    key: dead_key,
                    condition: Condition::Exists,
                },
                WriteOp::Put {
                    item: queued,
                    condition: Condition::NotExists,
                },
            ])
            .await
            .map_err(|error| match error {
                StoreError::TransactionCanceled { .. } => QueueError::LeaseLost,
                error => error.into(),
            })?;
        self.notify.notify_one();
        Ok(Some(job))
    }
}

fn decode_job(item: &Item) -> Result<Job, QueueError> {
    let text = item
        .get("job")
        .and_then(Value::as_s)
        .ok_or_else(|| QueueError::Corrupt("job item lacks its body".into()))?;
    serde_json::from_str(text).map_err(|e| QueueError::Corrupt(e.to_string()))
}

fn attempt_of(item: &Item) -> u32 {
    item.get("attempt").and_then(Value::as_i64).unwrap_or(0) as u32
}

fn last_error(item: &Item) -> Option<&str> {
    item.get("lastError").and_then(Value::as_s)
}

fn receipt_version(delivery: &Delivery) -> Result<i64, QueueError> {
    delivery
        .receipt
        .parse()
        .map_err(|_| QueueError::Corrupt("receipt is not a version".into()))
}

fn lease_error(error: StoreError) -> QueueError {
    match error {
        StoreError::ConditionFailed { .. } => QueueError::LeaseLost,
        error => error.into(),
    }
}

fn now_ms() -> i64 {
    ward_domain::UtcInstant::now().unix_millis()
}

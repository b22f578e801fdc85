//! The audit trail of the EMR API.
//!
//! Writes are audited inside their own transaction (a change is never stored without its
//! event). Reads and refused requests go through [`AuditLog`]: the request hands the event
//! to a background writer over a channel and returns; the writer stores events in batches
//! (`put_many_if_absent`, one store round trip for up to 100 events) at least every
//! [`FLUSH_EVERY`]. That keeps the table off the read path (the budget: at most 10%
//! on a patient read's p99) at the price of a window of at most one flush interval in
//! which a crash loses read events; [`AuditLog::flush`] closes the window on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use ward_domain::{ProviderId, UtcInstant, key_layout};
use ward_ingest::AuditEvent;
use ward_ingest::audit::new_event_id;
use ward_store::{Item, Order, Query, SkCondition, StoreError, Table, Value};

use crate::merge::{self, Stream};

/// How often buffered events are written at the latest.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Events per store batch.
const BATCH: usize = 100;

/// Who is acting, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The provider (from the credentials).
    pub provider: ProviderId,
    /// `key:{keyId}`.
    pub actor: String,
    /// The request id, if the client sent one.
    pub request_id: Option<String>,
    /// The client's address.
    pub client_address: Option<String>,
}

impl Actor {
    /// An event of this actor.
    pub fn event(
        &self,
        action: &str,
        resource_type: &str,
        resource_id: Option<&str>,
        patient: Option<&str>,
        result: &str,
    ) -> AuditEvent {
        AuditEvent {
            event_id: new_event_id(),
            at: UtcInstant::now(),
            provider: self.provider.clone(),
            actor: self.actor.clone(),
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: resource_id.map(str::to_owned),
            patient: patient.map(str::to_owned),
            result: result.into(),
            request_id: self.request_id.clone(),
            client_address: self.client_address.clone(),
            detail: None,
        }
    }
}

enum Message {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
    Close,
}

/// The buffered audit writer (cheap to clone).
#[derive(Clone)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<Message>>,
    writer: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.sender.is_some())
            .finish()
    }
}

impl AuditLog {
    /// A log writing to `table` from a background task (needs a Tokio runtime).
    pub fn start(table: Arc<dyn Table>) -> Self {
        let (sender, receiver) = mpsc::channel(16_384);
        let writer = tokio::spawn(write_loop(table, receiver));
        Self {
            sender: Some(sender),
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
        }
    }

    /// A log that drops every event: only for measuring what audit costs.
    pub fn disabled() -> Self {
        Self {
            sender: None,
            writer: Arc::default(),
        }
    }

    /// Stores every event recorded so far and stops the writer (it lets go of the table,
    /// so the store can be reopened). Later events are not stored.
    pub async fn close(&self) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(Message::Close).await;
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }

    /// Whether events are kept.
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Hands an event to the writer (waits only if 16k events are already queued).
    pub async fn record(&self, event: AuditEvent) {
        if let Some(sender) = &self.sender
            && sender.send(Message::Event(Box::new(event))).await.is_err()
        {
            tracing::error!("audit writer has stopped; an audit event was not stored");
        }
    }

    /// Waits until every event recorded before this call is stored.
    pub async fn flush(&self) {
        if let Some(sender) = &self.sender {
            let (done, wait) = oneshot::channel();
            if sender.send(Message::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

async fn write_loop(table: Arc<dyn Table>, mut receiver: mpsc::Receiver<Message>) {
    let mut pending: Vec<Item> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_now = tokio::select! {
            message = receiver.recv() => match message {
                Some(Message::Event(event)) => {
                    pending.push(event.to_item());
                    pending.len() >= BATCH
                }
                Some(Message::Flush(done)) => {
                    waiting.push(done);
                    true
                }
                Some(Message::Close) | None => {
                    write(table.as_ref(), &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => !pending.is_empty(),
        };
        if flush_now {
            write(table.as_ref(), &mut pending).await;
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// Stores pending events, retrying transient faults; events are never logged (they name
/// patients).
async fn write(table: &dyn Table, pending: &mut Vec<Item>) {
    while !pending.is_empty() {
        let batch: Vec<Item> = pending.drain(..pending.len().min(BATCH)).collect();
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match table.put_many_if_absent(batch.clone()).await {
                Ok(_) => break,
                Err(error) if attempt < 5 && error.is_transient() => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => {
                    tracing::error!(%error, events = batch.len(), "audit events could not be stored");
                    break;
                }
            }
        }
    }
}

/// A page of audit events.
#[derive(Debug)]
pub struct AuditPage {
    /// The events (JSON), newest first.
    pub events: Vec<serde_json::Value>,
    /// The next page's cursor.
    pub next: Option<String>,
}

/// The longest time range one audit query may span.
pub const MAX_AUDIT_DAYS: i64 = 31;

/// What `GET /v1/audit` asks for.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// From this instant.
    pub from: UtcInstant,
    /// Up to this instant (at most [`MAX_AUDIT_DAYS`] after `from`).
    pub to: UtcInstant,
    /// Only events about this patient (MRN).
    pub patient: Option<String>,
    /// Only events of this actor (`key:{keyId}`, `worker`).
    pub actor: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Where to resume.
    pub cursor: Option<String>,
}

/// A provider's audit events in a time range, newest first, optionally only those of one
/// patient or one actor: the day partitions of the range and their shards, merged.
pub async fn list(
    table: &dyn Table,
    provider: &ProviderId,
    query: AuditQuery,
) -> Result<AuditPage, StoreError> {
    let AuditQuery {
        from,
        to,
        patient,
        actor,
        limit,
        cursor,
    } = query;
    if to < from || to.unix_seconds() - from.unix_seconds() > MAX_AUDIT_DAYS * 86_400 {
        return Err(StoreError::InvalidRequest(format!(
            "the time range must run forward and span at most {MAX_AUDIT_DAYS} days"
        )));
    }
    let after = cursor.as_deref().map(merge::decode_cursor).transpose()?;
    let low = from.sortable();
    let high = format!("{}~", to.sortable());
    let mut streams = Vec::new();
    let first_day = from.unix_seconds().div_euclid(86_400);
    let last_day = to.unix_seconds().div_euclid(86_400);
    for day in first_day..=last_day {
        let date =
            UtcInstant::from_unix_nanos(i128::from(day) * 86_400 * 1_000_000_000).civil_date();
        for shard in 0..key_layout::AUDIT_SHARDS {
            let upper = match &after {
                Some(after) if after.as_str() < high.as_str() => after.clone(),
                _ => high.clone(),
            };
            let (patient, actor, after) = (patient.clone(), actor.clone(), after.clone());
            streams.push(Stream {
                query: Query {
                    index: None,
                    pk: key_layout::audit_pk(provider, &date, shard),
                    sk: SkCondition::Between(low.clone(), upper),
                    order: Order::Reverse,
                    limit: limit.min(1000),
                    cursor: None,
                },
                keep: Box::new(move |item| {
                    let sk = item.get("SK").and_then(Value::as_s).unwrap_or_default();
                    after.as_deref().is_none_or(|after| sk < after)
                        && patient
                            .as_deref()
                            .is_none_or(|p| item.get("patient").and_then(Value::as_s) == Some(p))
                        && actor
                            .as_deref()
                            .is_none_or(|a| item.get("actor").and_then(Value::as_s) == Some(a))
                }),
            });
        }
    }
    let merged = merge::merge(table, streams, Order::Reverse, limit, |item| {
        item.get("SK")
            .and_then(Value::as_s)
            .unwrap_or_default()
            .to_owned()
    })
    .await?;
    Ok(AuditPage {
        events: merged
            .items
            .iter()
            .filter_map(AuditEvent::json_of)
            .collect(),
        next: merged.next,
    })
}

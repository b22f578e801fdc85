//! The audit trail of the EMR API.
//!
//! Writes are audited inside their own transaction (a change is never stored without its
//! event). Reads and refused requests go through [`AuditLog`]: the request hands the event
//! to a background writer over a channel and returns; the writer stores events in batches
//! (`put_many_if_absent`: one embedded commit for up to 200 events) at least every
//! [`FLUSH_EVERY`], synced at least every [`DURABLE_EVERY`]. That keeps the table off the
//! read path (the budget: at most 10% on a patient read's p99) at the price of a
//! window of at most a second in which a crash loses read events; [`AuditLog::close`]
//! closes the window on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use ward_domain::{Link, ProviderId, Pseudonyms, Role, UtcInstant, key_layout};
use ward_ports::AuditEvent;
use ward_ports::audit::new_event_id;
use ward_store::{Item, Order, Query, SkCondition, StoreError, Table, Value};

use ward_store::merge::{self, Stream};

/// How often buffered events are written at the latest.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How often stored events are made durable at the latest.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Events per store batch: one embedded commit, or that many concurrent DynamoDB puts.
const BATCH: usize = 200;

/// Who is acting, and what it reaches: the audit trail's principal and the row-level
/// rules' input.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The provider (from the credentials).
    pub provider: ProviderId,
    /// The principal: `key:{keyId}`, `user:{userId}` (built-in), `oidc:{sub}`, or a
    /// process (`worker`, `signed-url`).
    pub actor: String,
    /// The role it acts in (`None` for a scoped key or a process).
    pub role: Option<Role>,
    /// What the role is linked to: a clinician reaches the patients it cares for, a
    /// patient its own record; [`Link::None`] reaches the whole provider.
    pub link: Link,
    /// How it signed in: `api_key`, `scoped_key`, `password`, `oidc`, `signed_url`.
    pub sign_in: &'static str,
    /// The reason of the break-glass grant this access goes through, if it does.
    pub emergency: Option<String>,
    /// The request id, if the client sent one.
    pub request_id: Option<String>,
    /// The client's address.
    pub client_address: Option<String>,
}

impl Actor {
    /// A principal that reaches the whole provider (an API key, a process).
    pub fn provider_wide(
        provider: ProviderId,
        actor: impl Into<String>,
        role: Option<Role>,
        sign_in: &'static str,
    ) -> Self {
        Self {
            provider,
            actor: actor.into(),
            role,
            link: Link::None,
            sign_in,
            emergency: None,
            request_id: None,
            client_address: None,
        }
    }

    /// Whether it may see clinical content (notes, clinical records, documents, the
    /// reason of a visit): not front desk, not billing.
    pub fn sees_clinical_content(&self) -> bool {
        self.role.is_none_or(Role::sees_clinical_content)
    }

    /// Whether its role reads items of `kind` at all (the timeline queries only those).
    pub fn reads(&self, kind: crate::model::Kind) -> bool {
        use crate::model::Kind;
        match kind {
            Kind::ClinicalRecord | Kind::Document => self.sees_clinical_content(),
            Kind::Bill => self.role.is_none_or(|role| {
                matches!(role, Role::ProviderAdmin | Role::Billing | Role::Patient)
            }),
            Kind::Patient | Kind::Clinician | Kind::Appointment => true,
        }
    }

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
            role: self.role.map(|role| role.as_str().to_owned()),
            sign_in: Some(self.sign_in.to_owned()),
            emergency_reason: self.emergency.clone(),
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
///
/// Recording is a non-blocking send on a channel; the writer is a thread of its own (not a
/// task of the request runtime), so turning events into items and storing them never
/// waits on the same worker thread as a request.
#[derive(Clone)]
pub struct AuditLog {
    sender: Option<std::sync::mpsc::Sender<Message>>,
    writer: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.sender.is_some())
            .finish()
    }
}

impl AuditLog {
    /// A log writing to `table` from a writer thread (call inside a Tokio runtime: the
    /// writer drives the store's futures on it).
    pub fn start(table: Arc<dyn Table>, pseudonyms: Arc<Pseudonyms>) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        let writer = std::thread::Builder::new()
            .name("ward-audit".into())
            .spawn(move || write_loop(&runtime, table.as_ref(), &pseudonyms, &receiver))
            .ok();
        if writer.is_none() {
            tracing::error!("the audit writer thread could not start");
        }
        Self {
            sender: Some(sender),
            writer: Arc::new(std::sync::Mutex::new(writer)),
        }
    }

    /// A log that drops every event: only for measuring what audit costs.
    pub fn disabled() -> Self {
        Self {
            sender: None,
            writer: Arc::default(),
        }
    }

    /// Whether events are kept.
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Hands an event to the writer; never waits.
    pub async fn record(&self, event: AuditEvent) {
        if let Some(sender) = &self.sender
            && sender.send(Message::Event(Box::new(event))).is_err()
        {
            tracing::error!("audit writer has stopped; an audit event was not stored");
        }
    }

    /// Waits until every event recorded before this call is stored.
    pub async fn flush(&self) {
        if let Some(sender) = &self.sender {
            let (done, wait) = oneshot::channel();
            if sender.send(Message::Flush(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }

    /// Stores every event recorded so far and stops the writer (it lets go of the table,
    /// so the store can be reopened). Later events are not stored.
    pub async fn close(&self) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(Message::Close);
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

/// The writer thread: every [`FLUSH_EVERY`] it drains the channel and stores what came.
/// It sleeps instead of waiting on the channel, so recording an event never has to wake
/// a thread (no system call on the request path).
fn write_loop(
    runtime: &tokio::runtime::Handle,
    table: &dyn Table,
    pseudonyms: &Pseudonyms,
    receiver: &std::sync::mpsc::Receiver<Message>,
) {
    use std::sync::mpsc::TryRecvError;
    let mut pending: Vec<Item> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut wrote = false;
    let mut last_durable = std::time::Instant::now();
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let mut close = false;
        loop {
            match receiver.try_recv() {
                Ok(Message::Event(event)) => {
                    pending.push(event.to_item(pseudonyms));
                    if pending.len() >= BATCH {
                        runtime.block_on(write(table, std::mem::take(&mut pending)));
                        wrote = true;
                    }
                }
                Ok(Message::Flush(done)) => waiting.push(done),
                Ok(Message::Close) | Err(TryRecvError::Disconnected) => {
                    close = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if !pending.is_empty() {
            runtime.block_on(write(table, std::mem::take(&mut pending)));
            wrote = true;
        }
        // Batch writes may skip the sync (the port allows it); an ordinary put makes them
        // durable. Once a second at most (a sync is tail latency for concurrent reads), and
        // always when asked to flush or close: a crash loses at most a second of events.
        let asked = !waiting.is_empty() || close;
        if wrote && (asked || last_durable.elapsed() >= DURABLE_EVERY) {
            runtime.block_on(mark_durable(table));
            wrote = false;
            last_durable = std::time::Instant::now();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if close {
            return;
        }
    }
}

/// One ordinary (synced) write after a flush: `PLATFORM#AUDIT` / `FLUSHED`.
async fn mark_durable(table: &dyn Table) {
    let mut marker = Item::new();
    marker.insert(ward_store::PK.into(), Value::s("PLATFORM#AUDIT"));
    marker.insert(ward_store::SK.into(), Value::s("FLUSHED"));
    marker.insert("at".into(), Value::n(UtcInstant::now().unix_seconds()));
    if let Err(error) = table.put(marker, ward_store::Condition::None).await {
        tracing::error!(%error, "audit events could not be made durable");
    }
}

/// Stores events, retrying transient faults; events are never logged (they name
/// patients).
async fn write(table: &dyn Table, mut pending: Vec<Item>) {
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

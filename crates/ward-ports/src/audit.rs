//! Audit events: who did what to which patient data, when, from where, with what result.
//!
//! An event is one item in a date-partitioned, sharded audit partition
//! (`PROV#{p}#AUDIT#{yyyy-mm-dd}#S{nn}`, sort key `{sortable instant}#{eventId}`), so a busy
//! day's writes spread over [`key_layout::AUDIT_SHARDS`] partitions and a time-range read
//! merges them. Events name resources by id (MRN, entity id, upload id), never by content:
//! no names, notes or values of patient data.

use ward_domain::key_layout::LIST_INDEX;
use ward_domain::{Mrn, ProviderId, Pseudonyms, UtcInstant, key_layout};
use ward_store::{Item, PK, SK, Value};

/// One audit event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Unique id (random hex, or derived from the upload for ingest events).
    pub event_id: String,
    /// When.
    #[serde(serialize_with = "instant_text")]
    pub at: UtcInstant,
    /// The provider whose data it is (and whose key acted).
    #[serde(rename = "providerId", serialize_with = "provider_text")]
    pub provider: ProviderId,
    /// Who: `key:{keyId}` for an API key, `user:{userId}` for a built-in user,
    /// `oidc:{sub}` for a person signed in at the OpenID provider, `worker` for the ingest
    /// worker.
    pub actor: String,
    /// The role the actor acted in, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// How the actor signed in (`api_key`, `scoped_key`, `password`, `oidc`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
    /// The reason given for break-glass access, when the access went through it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emergency_reason: Option<String>,
    /// What: `READ`, `LIST`, `CREATE`, `UPDATE`, `INGEST`, ...
    pub action: String,
    /// The resource type (`PATIENT`, `APPOINTMENT`, `UPLOAD`, ...).
    pub resource_type: String,
    /// The resource id, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The patient concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// `SUCCESS`, or why not: `NOT_FOUND`, `INVALID`, `CONFLICT`, `PRECONDITION_FAILED`.
    pub result: String,
    /// The request's id (`x-request-id`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client's address, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// Counts and similar non-identifying detail (an upload's outcome counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

fn provider_text<S: serde::Serializer>(provider: &ProviderId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(provider.as_str())
}

fn instant_text<S: serde::Serializer>(at: &UtcInstant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.sortable())
}

/// The attributes of an audit item that may hold patient data (the event's body, the
/// patient's MRN): sealed at rest (`ward-protect`).
pub const PROTECTED_ATTRIBUTES: [&str; 2] = ["event", "patient"];

impl AuditEvent {
    /// The table item (its patient named in the access log's key by `pseudonyms`).
    pub fn to_item(&self, pseudonyms: &Pseudonyms) -> Item {
        let day = self.at.civil_date();
        let shard = key_layout::shard_of(&self.event_id, key_layout::AUDIT_SHARDS);
        let mut item = Item::new();
        item.insert(
            PK.into(),
            Value::s(key_layout::audit_pk(&self.provider, &day, shard)),
        );
        item.insert(
            SK.into(),
            Value::s(format!("{}#{}", self.at.sortable(), self.event_id)),
        );
        item.insert("entity".into(), Value::s("AUDIT"));
        let body = serde_json::to_string(self).unwrap_or_default();
        item.insert("event".into(), Value::s(body));
        item.insert("actor".into(), Value::s(self.actor.clone()));
        if let Some(patient) = &self.patient {
            item.insert("patient".into(), Value::s(patient.clone()));
            // The patient's access log: its events, from an index partition of its own
            // (only a well-formed MRN names a patient).
            if let Ok(mrn) = Mrn::parse(patient) {
                let patient = pseudonyms.patient(&self.provider, &mrn);
                item.insert(
                    LIST_INDEX.pk.into(),
                    Value::s(key_layout::access_log_pk(&self.provider, &patient)),
                );
                item.insert(
                    LIST_INDEX.sk.into(),
                    Value::s(format!("{}#{}", self.at.sortable(), self.event_id)),
                );
            }
        }
        item
    }

    /// The event's JSON (as listed by `GET /v1/audit`) from a stored item.
    pub fn json_of(item: &Item) -> Option<serde_json::Value> {
        item.get("event")
            .and_then(Value::as_s)
            .and_then(|text| serde_json::from_str(text).ok())
    }
}

/// A new event id (16 hex digits): distinct within a process (a counter through a
/// bijective mix), spread evenly over the shards.
pub fn new_event_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static BASE: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let now = UtcInstant::now();
        (now.unix_seconds() as u64).rotate_left(32)
            ^ u64::from(now.subsec_nanos())
            ^ u64::from(std::process::id()) << 40
    });
    let mut z = base.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
}

//! Uploads: the state machine and its item in the table (the single source of truth for
//! an upload's status), and the report every processed upload ends with.

use serde::{Deserialize, Serialize};
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, SourceFileName, UploadId, UtcInstant};
use ward_store::{
    Condition, Item, Key, Order, PK, Query, SK, SkCondition, StoreError, Table, VERSION, Value,
};

/// An upload's life: `Pending -> Received -> Processing -> Completed | Failed`, or
/// `Interrupted` when processing stopped for good after rows may have been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// A pre-signed URL was issued; no file yet.
    Pending,
    /// The file is being received through the signed URL.
    Receiving,
    /// The file is stored and its job queued.
    Received,
    /// A worker is processing the file.
    Processing,
    /// Every row has an outcome; the report is final.
    Completed,
    /// The file was unusable as a whole, or processing failed for good before any of its
    /// rows was written.
    Failed,
    /// Processing failed for good (the job is dead-lettered) after an attempt may have
    /// written some of its rows: not `failed`, since records of it may be stored. A replay
    /// of the job finishes it (its records count as inserted). Not final: its file is kept.
    Interrupted,
}

/// The attributes of an upload item that may hold patient data (its report echoes the
/// first rejected rows' values; the client's file name may name someone): sealed at rest
/// (`ward-protect`).
pub const PROTECTED_ATTRIBUTES: [&str; 2] = ["report", "fileName"];

impl UploadStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Receiving => "receiving",
            Self::Received => "received",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Receiving,
            Self::Received,
            Self::Processing,
            Self::Completed,
            Self::Failed,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// Whether the upload will not change any more (short of a replay).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether no more processing will happen without someone acting (a final status, or
    /// an interrupted upload awaiting a replay): where a client stops waiting.
    pub fn is_settled(self) -> bool {
        self.is_final() || self == Self::Interrupted
    }
}

/// Counts of row outcomes; they add up to `rows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Data rows read.
    pub rows: u64,
    /// New records written.
    pub inserted: u64,
    /// Rows whose record already existed with the same content.
    pub duplicate: u64,
    /// Rows whose key existed with different content (the stored record was kept).
    pub conflict: u64,
    /// Rows that failed validation.
    pub rejected: u64,
}

/// One row that did not become a record, as shown in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    /// The physical line where the CSV record starts.
    pub line: u64,
    /// `rejected` or `conflict`.
    pub outcome: String,
    /// The column at fault (`row` for the row as a whole).
    pub column: String,
    /// Why, in plain words.
    pub reason: String,
    /// For an element of a JSON array: its position (from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

/// What happened to an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadReport {
    /// Row outcome counts.
    pub counts: OutcomeCounts,
    /// Header columns Ward does not know (ignored): the first 20, each name shortened to
    /// 100 characters, so a report always fits in one store item.
    pub unknown_columns: Vec<String>,
    /// How many header columns Ward does not know, in all.
    #[serde(default)]
    pub unknown_column_count: u64,
    /// The first problems (at most [`UploadReport::MAX_PROBLEMS`]); the full list is the
    /// errors CSV.
    pub first_problems: Vec<RowProblem>,
    /// Why the file failed as a whole, when it did.
    pub failure: Option<String>,
    /// Processing attempts it took (1 without retries).
    pub attempts: u32,
    /// Milliseconds spent in the attempt that finished.
    pub duration_ms: u64,
    /// Facility uploads: the analytics run the upload started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics_run: Option<String>,
    /// Visit uploads whose bytes are those of an earlier completed upload (processed
    /// under the same rules): that upload. Its outcomes were carried over without
    /// reading a row (every row it inserted or matched is now a duplicate; conflicts and
    /// rejections are the same), and its error list was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identical_to: Option<String>,
}

impl UploadReport {
    /// How many problems the report itself lists.
    pub const MAX_PROBLEMS: usize = 20;
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// The tenant.
    pub provider: ProviderId,
    /// The upload's id.
    pub id: UploadId,
    /// What the file carries.
    pub kind: UploadKind,
    /// Where it is in its life.
    pub status: UploadStatus,
    /// When the URL was issued.
    pub created_at: UtcInstant,
    /// When the URL stops working.
    pub url_expires_at: UtcInstant,
    /// Bytes received.
    pub bytes: Option<u64>,
    /// When processing finished.
    pub finished_at: Option<UtcInstant>,
    /// The final report (set when completed or failed).
    pub report: Option<UploadReport>,
    /// A visit file: an attempt has started reading its rows (and may have written
    /// records), so its outcomes are no longer taken from an identical earlier upload.
    pub rows_read: bool,
    /// The provider's own name for the file (never used in a key or path).
    pub file_name: Option<SourceFileName>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl Upload {
    /// A new pending upload.
    pub fn pending(
        provider: ProviderId,
        id: UploadId,
        created_at: UtcInstant,
        url_ttl_seconds: i64,
    ) -> Self {
        Self {
            provider,
            id,
            kind: UploadKind::Visits,
            status: UploadStatus::Pending,
            created_at,
            url_expires_at: created_at.plus_seconds(url_ttl_seconds),
            bytes: None,
            finished_at: None,
            report: None,
            rows_read: false,
            file_name: None,
            version: 0,
        }
    }

    /// The table key.
    pub fn key(provider: &ProviderId, id: &UploadId) -> Key {
        Key::new(key_layout::uploads_pk(provider), key_layout::upload_sk(id))
    }

    /// Where the file is, given the status.
    pub fn object_key(&self) -> String {
        let stage = match self.status {
            UploadStatus::Pending | UploadStatus::Receiving | UploadStatus::Received => {
                ObjectStage::Uploaded
            }
            UploadStatus::Processing | UploadStatus::Interrupted => ObjectStage::Processing,
            UploadStatus::Completed => ObjectStage::Completed,
            UploadStatus::Failed => ObjectStage::Failed,
        };
        key_layout::upload_object_key(&self.provider, stage, &self.id, self.kind)
    }

    fn to_item(&self) -> Item {
        let mut item = Item::new();
        let key = Self::key(&self.provider, &self.id);
        item.insert(PK.into(), Value::S(key.pk));
        item.insert(SK.into(), Value::S(key.sk));
        item.insert("entity".into(), Value::s("UPLOAD"));
        item.insert("providerId".into(), Value::s(self.provider.as_str()));
        item.insert("uploadId".into(), Value::s(self.id.as_str()));
        item.insert("status".into(), Value::s(self.status.as_str()));
        item.insert("kind".into(), Value::s(self.kind.as_str()));
        item.insert("createdAt".into(), Value::n(self.created_at.unix_millis()));
        item.insert(
            "urlExpiresAt".into(),
            Value::n(self.url_expires_at.unix_millis()),
        );
        if let Some(bytes) = self.bytes {
            item.insert("bytes".into(), Value::n(bytes as i64));
        }
        if let Some(finished_at) = self.finished_at {
            item.insert("finishedAt".into(), Value::n(finished_at.unix_millis()));
        }
        if let Some(report) = &self.report {
            let json = serde_json::to_string(report).unwrap_or_default();
            item.insert("report".into(), Value::S(json));
        }
        if self.rows_read {
            item.insert("rowsRead".into(), Value::Bool(true));
        }
        if let Some(file_name) = &self.file_name {
            item.insert("fileName".into(), Value::s(file_name.as_str()));
        }
        item.insert(VERSION.into(), Value::n(self.version));
        if self.status == UploadStatus::Pending {
            // An upload session: gone (absent to every read) a day after its URL lapsed
            // if no file ever came; a file arriving removes the expiry.
            let expires = self
                .url_expires_at
                .plus_seconds(Self::SESSION_GRACE_SECONDS);
            item.insert(
                ward_store::EXPIRES_AT.into(),
                Value::n(expires.unix_seconds()),
            );
        }
        item
    }

    /// How long a pending upload outlives its URL.
    pub const SESSION_GRACE_SECONDS: i64 = 24 * 3600;

    fn from_item(item: &Item) -> Result<Self, StoreError> {
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_s)
                .ok_or_else(|| StoreError::Internal(format!("upload item lacks {name}")))
        };
        let millis = |name: &str| {
            item.get(name)
                .and_then(Value::as_i64)
                .map(|ms| UtcInstant::from_unix_nanos(i128::from(ms) * 1_000_000))
        };
        let bad = |what: &str| StoreError::Internal(format!("upload item has a bad {what}"));
        Ok(Self {
            provider: ProviderId::parse(text("providerId")?).map_err(|_| bad("providerId"))?,
            id: UploadId::parse(text("uploadId")?).map_err(|_| bad("uploadId"))?,
            // Items written before facility uploads existed have no kind: visits.
            kind: match item.get("kind").and_then(Value::as_s) {
                Some(kind) => UploadKind::parse(kind).ok_or_else(|| bad("kind"))?,
                None => UploadKind::Visits,
            },
            status: UploadStatus::parse(text("status")?).ok_or_else(|| bad("status"))?,
            created_at: millis("createdAt").ok_or_else(|| bad("createdAt"))?,
            url_expires_at: millis("urlExpiresAt").ok_or_else(|| bad("urlExpiresAt"))?,
            bytes: item.get("bytes").and_then(Value::as_i64).map(|b| b as u64),
            finished_at: millis("finishedAt"),
            report: match item.get("report").and_then(Value::as_s) {
                Some(json) => Some(serde_json::from_str(json).map_err(|_| bad("report"))?),
                None => None,
            },
            rows_read: matches!(item.get("rowsRead"), Some(Value::Bool(true))),
            file_name: match item.get("fileName").and_then(Value::as_s) {
                Some(name) => Some(SourceFileName::parse(name).map_err(|_| bad("fileName"))?),
                None => None,
            },
            version: item
                .get(VERSION)
                .and_then(Value::as_i64)
                .unwrap_or_default(),
        })
    }
}

/// Reads and writes upload items.
#[derive(Clone)]
pub struct UploadRepository {
    table: std::sync::Arc<dyn Table>,
}

impl std::fmt::Debug for UploadRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadRepository").finish_non_exhaustive()
    }
}

impl UploadRepository {
    /// A repository over the table.
    pub fn new(table: std::sync::Arc<dyn Table>) -> Self {
        Self { table }
    }

    /// Stores a new upload; fails if the id is taken.
    pub async fn create(&self, upload: &Upload) -> Result<(), StoreError> {
        self.table.put(upload.to_item(), Condition::NotExists).await
    }

    /// The provider's upload with this id, if any.
    pub async fn get(
        &self,
        provider: &ProviderId,
        id: &UploadId,
    ) -> Result<Option<Upload>, StoreError> {
        let item = self.table.get(&Upload::key(provider, id)).await?;
        item.as_ref().map(Upload::from_item).transpose()
    }

    // The upload's life, one write each (all conditional on the version read, so of two
    // writers one wins and the other sees `ConditionFailed`). Ward's code changes an
    // upload's status only through these.

    /// `pending -> receiving`: the one PUT that stores the file claims the upload.
    pub async fn claim_for_receiving(&self, upload: &Upload) -> Result<Upload, StoreError> {
        self.change(upload, |next| next.status = UploadStatus::Receiving)
            .await
    }

    /// `-> received`, with the stored file's size: its job is queued.
    pub async fn mark_received(&self, upload: &Upload, bytes: u64) -> Result<Upload, StoreError> {
        self.change(upload, |next| {
            next.status = UploadStatus::Received;
            next.bytes = Some(bytes);
        })
        .await
    }

    /// `receiving -> pending`: the file was not stored, so its URL works again.
    pub async fn release(&self, upload: &Upload) -> Result<Upload, StoreError> {
        self.change(upload, |next| next.status = UploadStatus::Pending)
            .await
    }

    /// `-> processing`: a worker starts, or goes on with, the upload.
    pub async fn start_processing(&self, upload: &Upload) -> Result<Upload, StoreError> {
        self.change(upload, |next| next.status = UploadStatus::Processing)
            .await
    }

    /// Records that an attempt reads the file's rows (from here on it may write records).
    pub async fn mark_rows_read(&self, upload: &Upload) -> Result<Upload, StoreError> {
        self.change(upload, |next| next.rows_read = true).await
    }

    /// `failed | interrupted -> processing`: a replayed job starts the upload again.
    pub async fn reopen(&self, upload: &Upload) -> Result<Upload, StoreError> {
        self.change(upload, |next| {
            next.status = UploadStatus::Processing;
            next.report = None;
            next.finished_at = None;
        })
        .await
    }

    /// The upload's end (or interruption), with its report.
    pub async fn finish(
        &self,
        upload: &Upload,
        status: UploadStatus,
        report: UploadReport,
    ) -> Result<Upload, StoreError> {
        self.change(upload, |next| {
            next.status = status;
            next.finished_at = Some(UtcInstant::now());
            next.report = Some(report);
        })
        .await
    }

    async fn change(
        &self,
        upload: &Upload,
        change: impl FnOnce(&mut Upload),
    ) -> Result<Upload, StoreError> {
        let mut next = upload.clone();
        change(&mut next);
        self.update(next, upload.version).await
    }

    /// Writes `next` if the stored version equals `expected_version`; `next` is stored
    /// (and returned) with `expected_version + 1`. The raw write under the transitions
    /// above (tests use it to set up a state).
    pub async fn update(
        &self,
        mut next: Upload,
        expected_version: i64,
    ) -> Result<Upload, StoreError> {
        next.version = expected_version + 1;
        self.table
            .put(next.to_item(), Condition::VersionIs(expected_version))
            .await?;
        Ok(next)
    }

    /// The provider's uploads, newest first.
    pub async fn list(
        &self,
        provider: &ProviderId,
        limit: usize,
        cursor: Option<ward_store::Cursor>,
    ) -> Result<(Vec<Upload>, Option<ward_store::Cursor>), StoreError> {
        newest_first(
            self.table.as_ref(),
            key_layout::uploads_pk(provider),
            "UPLOAD#",
            limit,
            cursor,
            Upload::from_item,
        )
        .await
    }
}

/// One page of a partition's items whose sort key starts with `prefix`, in reverse sort
/// order (newest first, for keys that begin with a time-ordered id), decoded.
pub(crate) async fn newest_first<T>(
    table: &dyn Table,
    pk: String,
    prefix: &str,
    limit: usize,
    cursor: Option<ward_store::Cursor>,
    decode: fn(&Item) -> Result<T, StoreError>,
) -> Result<(Vec<T>, Option<ward_store::Cursor>), StoreError> {
    let page = table
        .query(Query {
            index: None,
            pk,
            sk: SkCondition::BeginsWith(prefix.into()),
            order: Order::Reverse,
            limit,
            cursor,
        })
        .await?;
    let items = page
        .items
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, page.next))
}

//! What the pipeline works with: its settings and the context the composition root builds
//! from concrete adapters (nothing here knows which), and the small conversions every job
//! shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use ward_domain::Pseudonyms;
use ward_domain::visit::DEFAULT_MAX_NOTES_CHARS;
use ward_ports::{
    Analytics, AnalyticsSettings, JobQueue, ProcessError, QueueError, RunRepository, Storage,
    UploadRepository,
};
use ward_store::{StoreError, Table};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Rows per store write batch.
    pub batch_rows: usize,
    /// Attempts per job before it is dead-lettered (3 in all).
    pub max_attempts: u32,
    /// Delay before the first retry; each later one is 4x longer.
    pub retry_base: Duration,
    /// How long a worker holds a job before it must extend its lease.
    pub lease: Duration,
    /// The longest doctor's note.
    pub max_notes_chars: usize,
    /// The largest file processed; a larger one fails as a whole. (The embedded upload
    /// endpoint refuses it while streaming; an S3 pre-signed PUT cannot, so this is where
    /// the AWS shape enforces the limit.)
    pub max_file_bytes: u64,
    /// Facility analytics: query timeout, ad hoc SQL limits.
    pub analytics: AnalyticsSettings,
    /// Append one audit event per finished upload (its counts). On by default; off only
    /// to measure what audit costs.
    pub audit: bool,
    /// Answer a visit file whose bytes are those of an earlier completed upload from that
    /// upload's outcomes, without reading a row (see `identical`). On by default; off to
    /// measure the per-row path.
    pub reuse_identical_files: bool,
    /// Read a visit file's valid rows in the store's key order before writing them
    /// (see `key_order`): `None` asks the store ([`Table::prefers_key_order`]).
    pub key_order: Option<bool>,
    /// The folder for the temporary files of that sort (`None`: the system's temporary
    /// folder). The embedded shape puts them in its data folder.
    pub sort_dir: Option<std::path::PathBuf>,
    /// Bytes of rows held in memory by that sort before a sorted run goes to disk.
    pub sort_buffer_bytes: usize,
    /// Test hook: an attempt fails (as a transient fault) after writing this many rows...
    pub fault_after_rows: Option<u64>,
    /// ...this many times in this process (then attempts run clean).
    pub fault_times: u32,
    /// Test hook: the injected fault is a panic rather than an error.
    pub fault_panics: bool,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            batch_rows: 1024,
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            max_notes_chars: DEFAULT_MAX_NOTES_CHARS,
            max_file_bytes: 1024 * 1024 * 1024,
            analytics: AnalyticsSettings::default(),
            audit: true,
            reuse_identical_files: true,
            key_order: None,
            sort_dir: None,
            sort_buffer_bytes: 16 * 1024 * 1024,
            fault_after_rows: None,
            fault_times: 1,
            fault_panics: false,
        }
    }
}

/// Everything the pipeline works with. The composition root builds it from concrete
/// adapters; nothing here knows which.
pub struct IngestContext {
    /// The record store.
    pub table: Arc<dyn Table>,
    /// What names patients in keys.
    pub pseudonyms: Arc<Pseudonyms>,
    /// Object storage.
    pub objects: Arc<dyn ObjectStore>,
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// Upload items.
    pub uploads: UploadRepository,
    /// Analytics run items.
    pub runs: RunRepository,
    /// The facility pipeline and SQL engine (`None` in a build without them).
    pub analytics: Option<Arc<dyn Analytics>>,
    /// Tuning.
    pub settings: IngestSettings,
    /// Data rows read so far by this process (for progress displays).
    pub progress_rows: AtomicU64,
    /// Bytes of files read so far by this process (for progress displays).
    pub progress_bytes: Arc<AtomicU64>,
    /// Valid rows put into a key-order sort so far by this process: in key order, a file
    /// is read whole (these grow) before its records are written (see `key_order`).
    pub progress_sorted_rows: Arc<AtomicU64>,
    /// Valid rows sent to the store so far by this process.
    pub progress_valid_rows: AtomicU64,
    pub(crate) faults_fired: AtomicU32,
}

impl std::fmt::Debug for IngestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestContext").finish_non_exhaustive()
    }
}

impl IngestContext {
    /// Builds a context.
    pub fn new(
        table: Arc<dyn Table>,
        pseudonyms: Arc<Pseudonyms>,
        objects: Arc<dyn ObjectStore>,
        queue: Arc<dyn JobQueue>,
        settings: IngestSettings,
    ) -> Self {
        Self {
            uploads: UploadRepository::new(Arc::clone(&table)),
            runs: RunRepository::new(Arc::clone(&table)),
            analytics: None,
            table,
            pseudonyms,
            objects,
            queue,
            settings,
            progress_rows: AtomicU64::new(0),
            progress_bytes: Arc::new(AtomicU64::new(0)),
            progress_sorted_rows: Arc::new(AtomicU64::new(0)),
            progress_valid_rows: AtomicU64::new(0),
            faults_fired: AtomicU32::new(0),
        }
    }

    /// Whether visit files are read in the store's key order (see `key_order`).
    pub fn key_order(&self) -> bool {
        self.settings
            .key_order
            .unwrap_or_else(|| self.table.prefers_key_order())
    }

    /// The table and object storage, as the analytics port receives them.
    pub fn storage(&self) -> Storage {
        Storage {
            table: Arc::clone(&self.table),
            objects: Arc::clone(&self.objects),
        }
    }

    /// The context with a facility pipeline.
    pub fn with_analytics(mut self, analytics: Arc<dyn Analytics>) -> Self {
        self.analytics = Some(analytics);
        self
    }
}

pub(crate) fn path(key: String) -> ObjectPath {
    ObjectPath::from(key)
}

pub(crate) fn concurrent(error: StoreError) -> ProcessError {
    match error {
        StoreError::ConditionFailed { .. } => ProcessError::Concurrent,
        error => error.into(),
    }
}

pub(crate) fn queue_error(error: QueueError) -> ProcessError {
    match error {
        QueueError::Store(error) => ProcessError::Store(error),
        error => ProcessError::Internal(error.to_string()),
    }
}

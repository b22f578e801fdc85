//! The facility analytics port (SPEC section 4) and the analytics run's item.
//!
//! The pipeline here knows that facility uploads and analytics runs exist and drives them
//! through the same queue, retries and dead-letter list as CSV uploads; what happens inside
//! (parsing facilities, the Parquet dataset, the SQL engine) sits behind [`Analytics`], in
//! the `ward-analytics` crate, so the SQL engine is a leaf the rest of Ward never compiles
//! against.

use async_trait::async_trait;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use ward_domain::key_layout;
use ward_domain::{ProviderId, RunId, UploadId, UtcInstant};
use ward_store::{Condition, Item, Key, PK, SK, StoreError, Table, VERSION, Value};

use crate::Storage;
use crate::error::ProcessError;
use crate::uploads::UploadReport;

/// Settings of the standard queries and of ad hoc SQL.
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// The longest one query may run (the seed's 240 s).
    pub query_timeout: std::time::Duration,
    /// The most rows an ad hoc query returns.
    pub max_sql_rows: usize,
    /// Memory one query may use before it fails.
    pub query_memory_bytes: usize,
    /// Ad hoc queries one provider may run at once (more answer "busy").
    pub max_sql_per_provider: usize,
    /// Ad hoc queries the server runs at once, all providers together.
    pub max_sql_queries: usize,
    /// The program that runs ad hoc SQL in a child process (`PROGRAM sql-sandbox`);
    /// `None`: this executable.
    pub sql_sandbox_program: Option<std::path::PathBuf>,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            query_timeout: std::time::Duration::from_secs(240),
            max_sql_rows: 10_000,
            query_memory_bytes: 1024 * 1024 * 1024,
            max_sql_per_provider: 1,
            max_sql_queries: 2,
            sql_sandbox_program: None,
        }
    }
}

/// What a run of the standard queries is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// The run date (`YYYY-MM-DD`); results depend only on it and the dataset.
    pub as_of: String,
    /// The horizon of the expiring-accreditations query, in months.
    pub months_ahead: u32,
}

/// The summary of one query's result in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    /// The query's id (`per_state`, `expiring_accreditations`, `facility_summary`).
    pub query_id: String,
    /// Rows in the result.
    pub row_count: u64,
    /// Milliseconds the query took.
    pub execution_ms: u64,
    /// The JSON result's object key.
    pub json_file: String,
    /// The CSV result's object key.
    pub csv_file: String,
}

/// An analytics run's life: `Queued -> Running -> Completed | Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is running the queries.
    Running,
    /// Every query's result is written.
    Completed,
    /// The run failed for good; `failure` says why.
    Failed,
}

impl RunStatus {
    /// Whether the run will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// One run of the standard queries, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsRun {
    /// The run's id (the upload's id for a run an upload started).
    pub run_id: String,
    /// The tenant.
    pub provider_id: String,
    /// Where it is in its life.
    pub status: RunStatus,
    /// The run date and horizon.
    #[serde(flatten)]
    pub request: RunRequest,
    /// The upload that started it, if one did.
    pub source_upload: Option<String>,
    /// The dataset file the queries read (set when they ran).
    pub source_file: Option<String>,
    /// When the run was asked for (RFC 3339, UTC).
    pub created_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Each query's result.
    pub results: Vec<QueryResult>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Optimistic-concurrency version.
    #[serde(skip)]
    pub version: i64,
}

impl AnalyticsRun {
    /// A queued run.
    pub fn queued(
        provider: &ProviderId,
        run: &RunId,
        request: RunRequest,
        source_upload: Option<&UploadId>,
    ) -> Self {
        Self {
            run_id: run.to_string(),
            provider_id: provider.to_string(),
            status: RunStatus::Queued,
            request,
            source_upload: source_upload.map(ToString::to_string),
            source_file: None,
            created_at: UtcInstant::now().rfc3339_seconds(),
            finished_at: None,
            attempts: 0,
            results: Vec::new(),
            failure: None,
            version: 0,
        }
    }

    fn key(provider: &ProviderId, run: &RunId) -> Key {
        Key::new(
            key_layout::analytics_pk(provider),
            key_layout::analytics_run_sk(run),
        )
    }

    fn to_item(&self) -> Result<Item, StoreError> {
        let provider = ProviderId::parse(&self.provider_id)
            .map_err(|_| StoreError::Internal("run with a bad provider".into()))?;
        let run = RunId::parse(&self.run_id)
            .map_err(|_| StoreError::Internal("run with a bad id".into()))?;
        let key = Self::key(&provider, &run);
        let mut item = Item::new();
        item.insert(PK.into(), Value::S(key.pk));
        item.insert(SK.into(), Value::S(key.sk));
        item.insert("entity".into(), Value::s("ANALYTICS_RUN"));
        let body = serde_json::to_string(self).map_err(|e| StoreError::Internal(e.to_string()))?;
        item.insert("run".into(), Value::S(body));
        item.insert(VERSION.into(), Value::n(self.version));
        Ok(item)
    }

    fn from_item(item: &Item) -> Result<Self, StoreError> {
        let body = item
            .get("run")
            .and_then(Value::as_s)
            .ok_or_else(|| StoreError::Internal("run item lacks its body".into()))?;
        let mut run: Self = serde_json::from_str(body)
            .map_err(|e| StoreError::Internal(format!("unreadable run item: {e}")))?;
        run.version = item
            .get(VERSION)
            .and_then(Value::as_i64)
            .unwrap_or_default();
        Ok(run)
    }
}

/// Reads and writes run items (`PROV#{p}#ANALYTICS`, `RUN#{runId}`).
#[derive(Clone)]
pub struct RunRepository {
    table: std::sync::Arc<dyn Table>,
}

impl std::fmt::Debug for RunRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRepository").finish_non_exhaustive()
    }
}

impl RunRepository {
    /// A repository over the table.
    pub fn new(table: std::sync::Arc<dyn Table>) -> Self {
        Self { table }
    }

    /// Stores a new run; `false` if one with this id exists (it is kept).
    pub async fn create(&self, run: &AnalyticsRun) -> Result<bool, StoreError> {
        match self.table.put(run.to_item()?, Condition::NotExists).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The provider's run with this id.
    pub async fn get(
        &self,
        provider: &ProviderId,
        run: &RunId,
    ) -> Result<Option<AnalyticsRun>, StoreError> {
        let item = self.table.get(&AnalyticsRun::key(provider, run)).await?;
        item.as_ref().map(AnalyticsRun::from_item).transpose()
    }

    /// Writes `next` if the stored version is `expected`; returns it with the new version.
    pub async fn update(
        &self,
        mut next: AnalyticsRun,
        expected: i64,
    ) -> Result<AnalyticsRun, StoreError> {
        next.version = expected + 1;
        self.table
            .put(next.to_item()?, Condition::VersionIs(expected))
            .await?;
        Ok(next)
    }

    /// The provider's runs, newest first.
    pub async fn list(
        &self,
        provider: &ProviderId,
        limit: usize,
        cursor: Option<ward_store::Cursor>,
    ) -> Result<(Vec<AnalyticsRun>, Option<ward_store::Cursor>), StoreError> {
        crate::uploads::newest_first(
            self.table.as_ref(),
            key_layout::analytics_pk(provider),
            "RUN#",
            limit,
            cursor,
            AnalyticsRun::from_item,
        )
        .await
    }
}

/// An ad hoc query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlAnswer {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows as JSON objects.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Whether rows were cut at the row limit.
    pub truncated: bool,
    /// Milliseconds the query took.
    pub execution_ms: u64,
}

/// Why an ad hoc query was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Not a single read-only SELECT, or it names what it may not.
    #[error("{0}")]
    Refused(String),
    /// The query is not valid SQL or does not plan.
    #[error("{0}")]
    Invalid(String),
    /// It ran longer than the limit.
    #[error("the query ran longer than {0} s")]
    Timeout(u64),
    /// The provider has no facility dataset yet.
    #[error("no facilities have been uploaded yet")]
    NoData,
    /// Too many queries are running (the provider's own, or the server's).
    #[error("{0}")]
    Busy(String),
    /// The server is shutting down.
    #[error("the server is shutting down; try again")]
    Unavailable,
    /// Storage or the engine failed.
    #[error("{0}")]
    Internal(String),
}

/// The message for facility work in a build without the analytics engine.
pub const NO_ANALYTICS: &str =
    "this Ward was built without facility analytics (build it with --features analytics)";

/// What a facility file's processing came to.
#[derive(Debug)]
pub enum FacilityOutcome {
    /// The file was read: the report counts and lists per-record problems.
    Processed(UploadReport),
    /// The file is unusable as a whole (not JSON, wrong shape).
    FileFailed(String),
}

/// The facility pipeline behind the port: the `ward-analytics` crate implements it.
#[async_trait]
pub trait Analytics: Send + Sync + 'static {
    /// Validates the facility file at `file` (already claimed into `processing/`), merges
    /// its valid facilities into the provider's dataset, and says what became of each
    /// record. Must be idempotent: processing the same file again leaves the same dataset.
    async fn ingest_facilities(
        &self,
        storage: &Storage,
        provider: &ProviderId,
        upload: &UploadId,
        file: &ObjectPath,
    ) -> Result<FacilityOutcome, ProcessError>;

    /// Runs the standard queries for a run and writes their results. `Ok(Err(reason))` is
    /// a failure that retrying cannot fix (no dataset); `Err` is worth a retry.
    async fn run_standard_queries(
        &self,
        storage: &Storage,
        run: &AnalyticsRun,
    ) -> Result<Result<(String, Vec<QueryResult>), String>, ProcessError>;

    /// Runs one read-only SELECT over the provider's own datasets.
    async fn sql(
        &self,
        storage: &Storage,
        provider: &ProviderId,
        sql: &str,
        max_rows: usize,
    ) -> Result<SqlAnswer, SqlError>;

    /// Ends every running ad hoc query (graceful shutdown): each answers
    /// [`SqlError::Unavailable`]. Queries started afterwards are refused the same way.
    fn cancel_queries(&self) {}
}

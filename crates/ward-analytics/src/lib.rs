//! Facility analytics (SPEC section 4): facility files validated at the edge, kept as one
//! Parquet dataset per provider, and queried with Apache DataFusion in process.
//!
//! Owns: the facility file formats and rules, the dataset's layout and merge, the SQL
//! sandbox and the standard queries, result files. Deliberately does not: know HTTP or
//! which store, object store or queue it runs on (it implements `ward_ports::Analytics`
//! over `dyn Table` and `dyn ObjectStore`). It is a leaf: only the composition root
//! depends on it, so the rest of Ward builds without the SQL engine.

pub mod dataset;
pub mod engine;
pub mod facility;
pub mod generate;
pub mod record;
pub mod sandbox;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use tracing::info;
use ward_domain::key_layout::{self, ObjectStage};
use ward_domain::{ProviderId, RunId, UploadId, UtcInstant};
use ward_ports::{
    Analytics, AnalyticsRun, AnalyticsSettings, FacilityOutcome, OutcomeCounts, ProcessError,
    QueryResult, RowProblem, SqlAnswer, SqlError, Storage, UploadReport,
};

use crate::engine::StandardQuery;
use crate::facility::{FacilityProblem, ParsedFile};

/// The DataFusion implementation of the analytics port.
#[derive(Debug, Clone, Default)]
pub struct FacilityAnalytics {
    settings: AnalyticsSettings,
    isolation: sandbox::SqlIsolation,
    gate: Arc<sandbox::SqlGate>,
}

impl FacilityAnalytics {
    /// An engine with these settings, running ad hoc SQL in this process (see
    /// [`FacilityAnalytics::with_isolation`]).
    pub fn new(settings: AnalyticsSettings) -> Self {
        let gate = Arc::new(sandbox::SqlGate::new(
            settings.max_sql_per_provider,
            settings.max_sql_queries,
        ));
        Self {
            settings,
            isolation: sandbox::SqlIsolation::InProcess,
            gate,
        }
    }

    /// The same engine running ad hoc SQL as `isolation` says.
    pub fn with_isolation(mut self, isolation: sandbox::SqlIsolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Runs the standard queries over the provider's dataset for a run date, returning each
    /// query's columns, rows and time. Used by runs and by the benchmark.
    pub async fn standard_results(
        &self,
        objects: Arc<dyn ObjectStore>,
        provider: &ProviderId,
        dataset: &dataset::DatasetPointer,
        as_of: &str,
        months_ahead: u32,
        queries: &[StandardQuery],
    ) -> Result<Vec<StandardResult>, ProcessError> {
        let ctx = engine::session(objects, provider, dataset, &self.settings)
            .await
            .map_err(|e| ProcessError::Internal(format!("opening the dataset: {e}")))?;
        let mut results = Vec::new();
        for query in queries {
            let started = Instant::now();
            let sql = query.sql(as_of, months_ahead);
            let (columns, batches) = engine::collect(&ctx, &sql, None, None, &self.settings)
                .await
                .map_err(|elapsed| {
                    ProcessError::Internal(format!(
                        "query {} ran longer than {} s",
                        query.id(),
                        elapsed.0
                    ))
                })?
                .map_err(|e| ProcessError::Internal(format!("query {}: {e}", query.id())))?;
            let execution_ms = engine::millis(started);
            let rows = engine::to_json_rows(&batches)
                .map_err(|e| ProcessError::Internal(e.to_string()))?;
            results.push(StandardResult {
                query: *query,
                columns,
                rows,
                execution_ms,
            });
        }
        Ok(results)
    }
}

/// One standard query's result.
#[derive(Debug, Clone)]
pub struct StandardResult {
    /// Which query.
    pub query: StandardQuery,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// Its rows.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Milliseconds it took.
    pub execution_ms: u64,
}

#[async_trait]
impl Analytics for FacilityAnalytics {
    async fn ingest_facilities(
        &self,
        ctx: &Storage,
        provider: &ProviderId,
        upload: &UploadId,
        file: &ObjectPath,
    ) -> Result<FacilityOutcome, ProcessError> {
        // Streamed: JSON lines are validated while the rest of the file is still arriving.
        let stream = ctx.objects.get(file).await?.into_stream();
        let stream = futures::TryStreamExt::map_err(stream, std::io::Error::other);
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let upload_id = upload.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            facility::parse_reader(reader, &upload_id, threads)
        })
        .await
        .map_err(|e| ProcessError::Internal(e.to_string()))?;
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(facility::FileError::Read(error)) => return Err(ProcessError::Read(error)),
            Err(facility::FileError::Internal(error)) => return Err(ProcessError::Internal(error)),
            Err(error) => return Ok(FacilityOutcome::FileFailed(error.to_string())),
        };
        if parsed.facilities > 0 {
            let pointer = dataset::merge_upload(
                ctx.table.as_ref(),
                ctx.objects.as_ref(),
                provider,
                upload,
                &parsed.batches,
            )
            .await?;
            info!(
                facilities = parsed.facilities,
                dataset_rows = pointer.rows,
                "facility dataset updated"
            );
        }
        let errors = ObjectPath::from(key_layout::errors_object_key(
            provider,
            ObjectStage::Completed,
            upload,
        ));
        if parsed.problems.is_empty() {
            match ctx.objects.delete(&errors).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        } else {
            ctx.objects
                .put(&errors, problems_csv(&parsed.problems).into())
                .await?;
        }
        Ok(FacilityOutcome::Processed(report_of(&parsed)))
    }

    async fn run_standard_queries(
        &self,
        ctx: &Storage,
        run: &AnalyticsRun,
    ) -> Result<Result<(String, Vec<QueryResult>), String>, ProcessError> {
        let bad = |what: &str| ProcessError::Internal(format!("the run has a bad {what}"));
        let provider = ProviderId::parse(&run.provider_id).map_err(|_| bad("provider"))?;
        let run_id = RunId::parse(&run.run_id).map_err(|_| bad("id"))?;
        if facility::parse_date(&run.request.as_of).is_none() {
            return Ok(Err(format!(
                "the run date {:?} is not a date (YYYY-MM-DD)",
                run.request.as_of
            )));
        }
        let Some(pointer) = dataset::current(ctx.table.as_ref(), &provider).await? else {
            return Ok(Err("no facilities have been uploaded yet".into()));
        };
        let results = self
            .standard_results(
                Arc::clone(&ctx.objects),
                &provider,
                &pointer,
                &run.request.as_of,
                run.request.months_ahead,
                &StandardQuery::ALL,
            )
            .await?;
        let mut summaries = Vec::new();
        for result in results {
            let id = result.query.id();
            let json_key = key_layout::result_object_key(&provider, &run_id, id, "json");
            let csv_key = key_layout::result_object_key(&provider, &run_id, id, "csv");
            let document = json!({
                "query_id": id,
                "run_id": run.run_id,
                "source_file": pointer.object_key,
                "source_upload": run.source_upload,
                "as_of": run.request.as_of,
                "months_ahead": run.request.months_ahead,
                "execution_time": UtcInstant::now().rfc3339_seconds(),
                "execution_ms": result.execution_ms,
                "result_count": result.rows.len(),
                "columns": result.columns,
                "results": result.rows,
            });
            let json = serde_json::to_vec_pretty(&document)
                .map_err(|e| ProcessError::Internal(e.to_string()))?;
            ctx.objects
                .put(&ObjectPath::from(json_key.as_str()), json.into())
                .await?;
            let csv = engine::to_csv(&result.columns, &result.rows);
            ctx.objects
                .put(&ObjectPath::from(csv_key.as_str()), csv.into())
                .await?;
            summaries.push(QueryResult {
                query_id: id.to_owned(),
                row_count: result.rows.len() as u64,
                execution_ms: result.execution_ms,
                json_file: json_key,
                csv_file: csv_key,
            });
        }
        Ok(Ok((pointer.object_key, summaries)))
    }

    async fn sql(
        &self,
        ctx: &Storage,
        provider: &ProviderId,
        sql: &str,
        max_rows: usize,
    ) -> Result<SqlAnswer, SqlError> {
        engine::check_read_only(sql).map_err(SqlError::Refused)?;
        // Admitted first (the provider's and the server's limit on running queries), so a
        // refused query costs no dataset read.
        let _admitted = self.gate.admit(provider)?;
        let pointer = dataset::current(ctx.table.as_ref(), provider)
            .await
            .map_err(|e| SqlError::Internal(e.to_string()))?
            .ok_or(SqlError::NoData)?;
        let (relative, bytes) = engine::dataset_bytes(Arc::clone(&ctx.objects), provider, &pointer)
            .await
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        let max_rows = max_rows.clamp(1, self.settings.max_sql_rows);
        match &self.isolation {
            sandbox::SqlIsolation::InProcess => {
                let threads = std::thread::available_parallelism().map_or(2, usize::from);
                let session = engine::session_over_bytes(&relative, bytes, &self.settings, threads)
                    .await
                    .map_err(|e| SqlError::Internal(e.to_string()))?;
                engine::answer(&session, sql, max_rows, &self.settings).await
            }
            sandbox::SqlIsolation::ChildProcess(program) => {
                let request = sandbox::SandboxRequest {
                    sql: sql.to_owned(),
                    max_rows,
                    dataset_name: relative,
                    query_timeout_ms: self.settings.query_timeout.as_millis() as u64,
                    query_memory_bytes: self.settings.query_memory_bytes,
                    max_sql_rows: self.settings.max_sql_rows,
                };
                sandbox::run_in_child(program, &request, bytes, &self.settings, &self.gate).await
            }
        }
    }

    fn cancel_queries(&self) {
        self.gate.cancel_all();
    }
}

fn report_of(parsed: &ParsedFile) -> UploadReport {
    UploadReport {
        counts: OutcomeCounts {
            rows: parsed.records,
            inserted: parsed.facilities,
            duplicate: parsed.superseded,
            conflict: 0,
            rejected: parsed.rejected,
        },
        first_problems: parsed
            .problems
            .iter()
            .take(UploadReport::MAX_PROBLEMS)
            .map(|problem| RowProblem {
                line: problem.line,
                index: problem.index,
                outcome: outcome_of(problem).into(),
                column: problem.field.clone(),
                reason: problem.reason.clone(),
            })
            .collect(),
        ..UploadReport::default()
    }
}

fn outcome_of(problem: &FacilityProblem) -> &'static str {
    if problem.reason.contains("the later record is kept") {
        "superseded"
    } else {
        "rejected"
    }
}

fn problems_csv(problems: &[FacilityProblem]) -> Vec<u8> {
    let columns = ["line", "index", "outcome", "field", "reason"].map(str::to_owned);
    let rows: Vec<_> = problems
        .iter()
        .map(|problem| {
            let mut row = serde_json::Map::new();
            row.insert("line".into(), json!(problem.line));
            row.insert("index".into(), json!(problem.index));
            row.insert("outcome".into(), json!(outcome_of(problem)));
            row.insert("field".into(), json!(problem.field));
            row.insert("reason".into(), json!(problem.reason));
            row
        })
        .collect();
    engine::to_csv(&columns, &rows)
}

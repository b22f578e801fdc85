//! The SQL engine (Apache DataFusion), sandboxed per provider, and the standard queries.
//!
//! Every query runs in a session built for one provider: its only object store is an
//! in-memory copy of that provider's current dataset file (a registry that knows no other
//! store, not even the local file system), URL tables are off, DDL, DML and statements are refused, memory is
//! capped, and time is limited. So no SQL — table functions, file paths, URLs — reaches
//! another provider's data: there is nothing else in the session to reach.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
pub use datafusion::prelude::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionConfig};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Map, Value as Json};
use url::Url;
use ward_domain::ProviderId;
use ward_ports::AnalyticsSettings;

use crate::dataset::DatasetPointer;

const STORE_URL: &str = "ward://dataset/";

/// A registry holding exactly one store: the provider's datasets.
#[derive(Debug)]
struct OneStore {
    store: Arc<dyn ObjectStore>,
}

impl ObjectStoreRegistry for OneStore {
    fn register_store(
        &self,
        _url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if url.scheme() == "ward" && url.host_str() == Some("dataset") {
            Ok(Arc::clone(&self.store))
        } else {
            Err(DataFusionError::Plan(format!(
                "no storage other than the provider's own datasets can be read ({url} is refused)"
            )))
        }
    }
}

/// A session over one provider's facility dataset: tables `facilities` (one row per
/// facility, nested lists) and `accreditations` (one row per accreditation).
pub async fn session(
    objects: Arc<dyn ObjectStore>,
    provider: &ProviderId,
    dataset: &DatasetPointer,
    settings: &AnalyticsSettings,
) -> Result<SessionContext, DataFusionError> {
    let (relative, bytes) = dataset_bytes(objects, provider, dataset).await?;
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    session_over_bytes(&relative, bytes, settings, threads).await
}

/// The provider's current dataset object: its name below the provider's dataset prefix,
/// and its bytes.
pub async fn dataset_bytes(
    objects: Arc<dyn ObjectStore>,
    provider: &ProviderId,
    dataset: &DatasetPointer,
) -> Result<(String, bytes::Bytes), DataFusionError> {
    let prefix = format!("{provider}/datasets/");
    let relative = dataset
        .object_key
        .strip_prefix(&prefix)
        .ok_or_else(|| DataFusionError::Internal("dataset outside its prefix".into()))?;
    let bytes = objects
        .get(&ObjectPath::from(dataset.object_key.as_str()))
        .await
        .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?
        .bytes()
        .await
        .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?;
    Ok((relative.to_owned(), bytes))
}

/// A session over a dataset file's bytes (`relative` is its name below the provider's
/// dataset prefix), running on `threads` partitions.
pub async fn session_over_bytes(
    relative: &str,
    bytes: bytes::Bytes,
    settings: &AnalyticsSettings,
    threads: usize,
) -> Result<SessionContext, DataFusionError> {
    // The session's one store is an in-memory copy of this provider's current dataset
    // object: there is no path, in any form, to anything else.
    let current =
        crate::dataset::is_current(&bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
    if !current {
        // Written before the derived column: read it into memory with the column added.
        // The next upload rewrites the dataset in the current form.
        let batches = crate::dataset::from_parquet(bytes)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        return session_over_batches(batches, settings).await;
    }
    let copy = InMemory::new();
    copy.put(&ObjectPath::from(relative), bytes.into())
        .await
        .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?;
    let store: Arc<dyn ObjectStore> = Arc::new(copy);
    let ctx = sandbox(store, settings, threads)?;
    ctx.register_parquet(
        "facilities",
        format!("{STORE_URL}{relative}"),
        ParquetReadOptions::default(),
    )
    .await?;
    register_views(&ctx).await?;
    Ok(ctx)
}

/// A sandboxed session whose one object store is `store`. Nothing spills: a query that
/// needs more memory than allowed fails (no temporary files anywhere, in the data folder
/// or out of it).
fn sandbox(
    store: Arc<dyn ObjectStore>,
    settings: &AnalyticsSettings,
    threads: usize,
) -> Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(settings.query_memory_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .with_object_store_registry(Arc::new(OneStore { store }))
        .build_arc()?;
    let config = SessionConfig::new()
        .with_target_partitions(threads)
        .with_information_schema(false);
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// The `accreditations` view over `facilities`.
async fn register_views(ctx: &SessionContext) -> Result<(), DataFusionError> {
    let accreditations = ctx
        .sql(
            "SELECT facility_id, facility_name, state, \
                    a['accreditation_body'] AS accreditation_body, \
                    a['accreditation_id'] AS accreditation_id, \
                    a['valid_until'] AS valid_until \
             FROM (SELECT facility_id, facility_name, state, unnest(accreditations) AS a FROM facilities)",
        )
        .await?
        .into_view();
    ctx.register_table("accreditations", accreditations)?;
    Ok(())
}

/// The same tables over facilities already in memory (the benchmark's "from the JSON
/// file" path: parse and validate the file, then query).
pub async fn session_over_batches(
    batches: Vec<RecordBatch>,
    settings: &AnalyticsSettings,
) -> Result<SessionContext, DataFusionError> {
    // One partition per core, so the scan runs on all of them.
    let partitions = std::thread::available_parallelism().map_or(2, usize::from);
    let ctx = sandbox(Arc::new(InMemory::new()), settings, partitions)?;
    let schema = crate::dataset::schema();
    let mut parts = vec![Vec::new(); partitions];
    for (at, batch) in batches.into_iter().enumerate() {
        parts[at % partitions].push(batch);
    }
    let table = datafusion::datasource::MemTable::try_new(schema, parts)?;
    ctx.register_table("facilities", Arc::new(table))?;
    register_views(&ctx).await?;
    Ok(ctx)
}

/// One of the standard queries, with its SQL for a run date and horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardQuery {
    /// Per state: facilities, employees (each facility once), accredited facilities and
    /// valid accreditations on the run date.
    PerState,
    /// Accreditations expiring between the run date and N months after it.
    ExpiringAccreditations,
    /// Per facility: services, labs, the earliest accreditation expiry.
    FacilitySummary,
}

impl StandardQuery {
    /// All of them, in the order a run writes them.
    pub const ALL: [Self; 3] = [
        Self::PerState,
        Self::ExpiringAccreditations,
        Self::FacilitySummary,
    ];

    /// The id used in result file names and the API.
    pub fn id(self) -> &'static str {
        match self {
            Self::PerState => "per_state",
            Self::ExpiringAccreditations => "expiring_accreditations",
            Self::FacilitySummary => "facility_summary",
        }
    }

    /// The SQL. `as_of` must be a validated `YYYY-MM-DD` date (it is inlined).
    pub fn sql(self, as_of: &str, months_ahead: u32) -> String {
        debug_assert!(crate::facility::parse_date(as_of).is_some());
        match self {
            // Two aggregations by state joined on 16-odd rows, both over the derived list of
            // valid-until dates (no accreditation bodies or ids decoded): a facility is
            // accredited when its latest date is on or after the run date.
            Self::PerState => format!(
                "SELECT f.state, f.facility_count, f.total_employees, \
                        f.accredited_facilities, \
                        coalesce(v.valid_accreditations, 0) AS valid_accreditations \
                 FROM (SELECT state, count(*) AS facility_count, \
                              sum(employee_count) AS total_employees, \
                              count(*) FILTER (WHERE array_max({dates}) >= DATE '{as_of}') \
                                AS accredited_facilities \
                       FROM facilities GROUP BY state) f \
                 LEFT JOIN (SELECT state, count(*) AS valid_accreditations \
                            FROM (SELECT state, unnest({dates}) AS valid_until FROM facilities) \
                            WHERE valid_until >= DATE '{as_of}' \
                            GROUP BY state) v \
                   ON v.state = f.state \
                 ORDER BY f.state",
                dates = crate::dataset::VALID_UNTIL_DATES
            ),
            Self::ExpiringAccreditations => format!(
                "SELECT facility_id, facility_name, state, accreditation_body, accreditation_id, \
                        valid_until, CAST(valid_until - DATE '{as_of}' AS BIGINT) AS days_left \
                 FROM accreditations \
                 WHERE valid_until >= DATE '{as_of}' \
                   AND valid_until <= DATE '{as_of}' + INTERVAL '{months_ahead} months' \
                 ORDER BY valid_until, facility_id, accreditation_id"
            ),
            Self::FacilitySummary => "SELECT f.facility_id, f.facility_name, f.employee_count, \
                        CAST(cardinality(f.services) AS BIGINT) AS number_of_services, \
                        CAST(cardinality(f.labs) AS BIGINT) AS number_of_labs, \
                        e.earliest_accreditation_expiry \
                 FROM facilities f \
                 LEFT JOIN (SELECT facility_id, min(valid_until) AS earliest_accreditation_expiry \
                            FROM accreditations GROUP BY facility_id) e \
                   ON e.facility_id = f.facility_id \
                 ORDER BY f.facility_id"
                .to_owned(),
        }
    }
}

/// Answers one ad hoc query (already checked read-only) in `session`: at most `max_rows`
/// rows, within the settings' time and memory.
pub async fn answer(
    session: &SessionContext,
    sql: &str,
    max_rows: usize,
    settings: &AnalyticsSettings,
) -> Result<ward_ports::SqlAnswer, ward_ports::SqlError> {
    use ward_ports::SqlError;
    let started = Instant::now();
    let (columns, batches) = collect(
        session,
        sql,
        Some(read_only_options()),
        Some(max_rows + 1),
        settings,
    )
    .await
    .map_err(|elapsed| SqlError::Timeout(elapsed.0))?
    .map_err(|e| {
        // Memory errors come wrapped (an operator that "cannot spill", a shared error).
        if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
            SqlError::Refused(format!(
                "the query needs more memory than allowed (about {} MiB); aggregate, filter or limit it",
                settings.query_memory_bytes >> 20
            ))
        } else {
            SqlError::Invalid(e.to_string())
        }
    })?;
    let mut rows = to_json_rows(&batches).map_err(|e| SqlError::Internal(e.to_string()))?;
    let truncated = rows.len() > max_rows;
    rows.truncate(max_rows);
    Ok(ward_ports::SqlAnswer {
        columns,
        rows,
        truncated,
        execution_ms: millis(started),
    })
}

/// Runs SQL to completion within the time limit.
pub async fn collect(
    ctx: &SessionContext,
    sql: &str,
    options: Option<SQLOptions>,
    limit: Option<usize>,
    settings: &AnalyticsSettings,
) -> Result<Result<(Vec<String>, Vec<RecordBatch>), DataFusionError>, Elapsed> {
    let work = async {
        let frame = match options {
            Some(options) => ctx.sql_with_options(sql, options).await?,
            None => ctx.sql(sql).await?,
        };
        let frame = match limit {
            Some(limit) => frame.limit(0, Some(limit))?,
            None => frame,
        };
        let names = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Ok((names, frame.collect().await?))
    };
    tokio::time::timeout(settings.query_timeout, work)
        .await
        .map_err(|_| Elapsed(settings.query_timeout.as_secs()))
}

/// A query ran out of time.
#[derive(Debug, Clone, Copy)]
pub struct Elapsed(pub u64);

/// Checks that `sql` is one read-only SELECT (or WITH ... SELECT).
pub fn check_read_only(sql: &str) -> Result<(), String> {
    if sql.len() > 100_000 {
        return Err("the query is longer than 100,000 characters".into());
    }
    let statements = DFParser::parse_sql(sql).map_err(|error| error.to_string())?;
    match statements.len() {
        0 => return Err("the query is empty".into()),
        1 => {}
        n => return Err(format!("one statement is allowed, not {n}")),
    }
    match statements.front() {
        Some(DfStatement::Statement(statement)) if matches!(**statement, Statement::Query(_)) => {
            Ok(())
        }
        _ => Err("only a single SELECT is allowed (no DDL, DML, COPY, SET or EXPLAIN)".into()),
    }
}

/// The options ad hoc SQL runs with: nothing but queries.
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Result rows as JSON objects (numbers stay numbers; dates and nested values are text).
pub fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Json>>, DataFusionError> {
    let mut rows = Vec::new();
    for batch in batches {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let columns = batch
            .columns()
            .iter()
            .map(json_column)
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let mut object = Map::with_capacity(names.len());
            for (name, column) in names.iter().zip(&columns) {
                object.insert(name.clone(), column(row));
            }
            rows.push(object);
        }
    }
    Ok(rows)
}

type Cell<'a> = Box<dyn Fn(usize) -> Json + 'a>;

fn json_column(array: &ArrayRef) -> Result<Cell<'_>, DataFusionError> {
    use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array};
    let nulls = array.logical_nulls();
    let is_null = move |row: usize| nulls.as_ref().is_some_and(|n| n.is_null(row));
    Ok(match array.data_type() {
        DataType::Null => Box::new(|_| Json::Null),
        DataType::Boolean => {
            let values = array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("boolean column".into()))?;
            Box::new(move |row| {
                if is_null(row) {
                    Json::Null
                } else {
                    Json::Bool(values.value(row))
                }
            })
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            let cast = cast(array, &DataType::Int64)?;
            let values = cast
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("integer column".into()))?;
            Box::new(move |row| {
                if is_null(row) {
                    Json::Null
                } else {
                    Json::from(values.value(row))
                }
            })
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let cast = cast(array, &DataType::Float64)?;
            let values = cast
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("float column".into()))?;
            Box::new(move |row| {
                if is_null(row) {
                    Json::Null
                } else {
                    serde_json::Number::from_f64(values.value(row)).map_or(Json::Null, Json::Number)
                }
            })
        }
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
            let texts: Vec<Json> = (0..array.len())
                .map(|row| {
                    if is_null(row) {
                        Json::Null
                    } else {
                        Json::String(formatter.value(row).to_string())
                    }
                })
                .collect();
            Box::new(move |row| texts[row].clone())
        }
    })
}

/// Result rows as CSV (header first; text that a spreadsheet would run as a formula is
/// quoted with a leading `'`).
pub fn to_csv(columns: &[String], rows: &[Map<String, Json>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |fields: Vec<String>| {
        let quoted: Vec<String> = fields
            .into_iter()
            .map(|field| {
                if field.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", field.replace('"', "\"\""))
                } else {
                    field
                }
            })
            .collect();
        out.extend_from_slice(quoted.join(",").as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(columns.to_vec());
    for row in rows {
        line(
            columns
                .iter()
                .map(|name| match row.get(name) {
                    None | Some(Json::Null) => String::new(),
                    Some(Json::String(text)) => ward_domain::spreadsheet_safe(text),
                    Some(other) => other.to_string(),
                })
                .collect(),
        );
    }
    out
}

/// Milliseconds since `started`.
pub fn millis(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

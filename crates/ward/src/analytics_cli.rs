//! `ward analytics run|sql` (HTTP clients of a server) and `ward gen facilities`, and the
//! composition hook that gives the pipeline its SQL engine when Ward is built with the
//! `analytics` feature.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use ward_ingest::IngestContext;

use crate::client::Client;

/// What `ward analytics` was asked to do.
#[derive(Debug)]
pub enum Action {
    /// Run the standard queries.
    Run {
        /// The run date.
        as_of: Option<String>,
        /// The expiring query's horizon.
        months: u32,
        /// Server URL.
        server: String,
        /// API key.
        key: String,
    },
    /// Ad hoc SQL.
    Sql {
        /// The query.
        sql: String,
        /// Row limit.
        limit: usize,
        /// Server URL.
        server: String,
        /// API key.
        key: String,
    },
}

/// Runs `ward analytics ...`.
pub async fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Run {
            as_of,
            months,
            server,
            key,
        } => {
            let client = Client::new(&server, &key);
            let mut body = json!({ "monthsAhead": months });
            if let Some(as_of) = as_of {
                body["asOf"] = json!(as_of);
            }
            let run = client.post_json("/v1/analytics/runs", &body).await?;
            let run_id = run["runId"].as_str().context("no runId in the answer")?;
            eprintln!("run {run_id} queued (as of {})", run["asOf"]);
            let run = client
                .wait_for_run(run_id, Duration::from_secs(30 * 60))
                .await?;
            if let Some(failure) = run["failure"].as_str() {
                anyhow::bail!("run {run_id} failed: {failure}");
            }
            for result in run["results"].as_array().into_iter().flatten() {
                let path = result["json"].as_str().context("no result link")?;
                let document = client.get(path).await?;
                println!(
                    "== {} ({} rows, {} ms; {})",
                    result["queryId"].as_str().unwrap_or("?"),
                    result["rowCount"],
                    result["executionMs"],
                    result["csvFile"].as_str().unwrap_or("?"),
                );
                for row in document["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(20)
                {
                    println!("{}", serde_json::to_string(row)?);
                }
                if result["rowCount"].as_u64().unwrap_or(0) > 20 {
                    println!("... (all rows: GET {path})");
                }
            }
            Ok(())
        }
        Action::Sql {
            sql,
            limit,
            server,
            key,
        } => {
            let answer = Client::new(&server, &key)
                .post_json("/v1/analytics/sql", &json!({ "sql": sql, "limit": limit }))
                .await?;
            for row in answer["rows"].as_array().into_iter().flatten() {
                println!("{}", serde_json::to_string(row)?);
            }
            if answer["truncated"] == Value::Bool(true) {
                eprintln!("(cut at {limit} rows)");
            }
            Ok(())
        }
    }
}

/// Writes `count` seeded facilities as JSON lines.
#[cfg(feature = "analytics")]
pub fn generate(count: u64, seed: u64, out: Option<&Path>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut writer: Box<dyn std::io::Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    ward_analytics::generate::write_json_lines(&mut writer, count, seed)?;
    writer.flush()?;
    Ok(())
}

/// Without the engine there is no generator either.
#[cfg(not(feature = "analytics"))]
pub fn generate(_count: u64, _seed: u64, _out: Option<&Path>) -> anyhow::Result<()> {
    anyhow::bail!("{}", ward_ports::NO_ANALYTICS)
}

/// Gives the pipeline its facility analytics (with the `analytics` feature).
#[cfg(feature = "analytics")]
pub fn attach(ctx: IngestContext) -> IngestContext {
    // Ad hoc SQL runs in a child process of this very program (`ward sql-sandbox`), so a
    // query that exhausts its memory ends only itself (see ward_analytics::sandbox).
    let program = ctx
        .settings
        .analytics
        .sql_sandbox_program
        .clone()
        .or_else(|| std::env::current_exe().ok());
    let engine = ward_analytics::FacilityAnalytics::new(ctx.settings.analytics.clone());
    let engine = match program {
        Some(program) => {
            engine.with_isolation(ward_analytics::sandbox::SqlIsolation::ChildProcess(program))
        }
        None => {
            tracing::warn!("the program's own path is unknown: ad hoc SQL is refused");
            engine.with_isolation(ward_analytics::sandbox::SqlIsolation::ChildProcess(
                std::path::PathBuf::from("/nonexistent/ward"),
            ))
        }
    };
    ctx.with_analytics(std::sync::Arc::new(engine))
}

/// `ward sql-sandbox`: one ad hoc query in a child process (see ward_analytics::sandbox).
#[cfg(feature = "analytics")]
pub fn sql_sandbox() -> std::process::ExitCode {
    ward_analytics::sandbox::child_main()
}

/// A build without the `analytics` feature runs no SQL.
#[cfg(not(feature = "analytics"))]
pub fn sql_sandbox() -> std::process::ExitCode {
    std::process::ExitCode::from(2)
}

/// A build without the `analytics` feature: facility uploads and runs are refused with
/// a message saying how to build it.
#[cfg(not(feature = "analytics"))]
pub fn attach(ctx: IngestContext) -> IngestContext {
    ctx
}

/// `ward bench analytics`: the per-state and expiring queries over `count` generated
/// facilities, from the JSON file (read, validate, query) and from the Parquet dataset,
/// with DuckDB on the same files in the same run.
#[cfg(feature = "analytics")]
pub async fn bench(count: u64, work_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::time::Instant;

    use object_store::ObjectStoreExt;
    use ward_analytics::dataset::{self, DatasetPointer};
    use ward_analytics::engine::{self, StandardQuery};
    use ward_domain::{ProviderId, UploadId, UtcInstant};

    const AS_OF: &str = "2026-01-15";
    const MONTHS: u32 = 6;
    let temp;
    let dir = match work_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    std::fs::create_dir_all(dir.join("objects"))?;
    let json_path = dir.join(format!("facilities-{count}.jsonl"));
    if !json_path.exists() {
        let started = Instant::now();
        generate(count, 42, Some(&json_path))?;
        eprintln!(
            "generated {} in {:.1?}",
            json_path.display(),
            started.elapsed()
        );
    }
    let size_mib = std::fs::metadata(&json_path)?.len() as f64 / (1 << 20) as f64;
    let settings = ward_ports::AnalyticsSettings::default();
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let upload = UploadId::new(UtcInstant::now(), 1);
    let timed_query = async |ctx: &engine::SessionContext, query: StandardQuery| {
        let started = Instant::now();
        let (_, batches) = engine::collect(ctx, &query.sql(AS_OF, MONTHS), None, None, &settings)
            .await
            .map_err(|_| anyhow::anyhow!("{} timed out", query.id()))??;
        anyhow::Ok((batches, started.elapsed().as_secs_f64()))
    };

    // From the JSON file: read, validate every record into Arrow, run both queries. The
    // file is streamed as the product streams an upload from object storage.
    let started = Instant::now();
    let file = std::fs::File::open(&json_path)?;
    let parsed = ward_analytics::facility::parse_reader(file, &upload, threads)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(parsed.rejected == 0, "generated facilities were rejected");
    let parse_s = started.elapsed().as_secs_f64();
    let batches = parsed.batches;
    let ctx = engine::session_over_batches(batches.clone(), &settings).await?;
    let (per_state, json_per_state_s) = timed_query(&ctx, StandardQuery::PerState).await?;
    let (expiring, json_expiring_s) =
        timed_query(&ctx, StandardQuery::ExpiringAccreditations).await?;
    let json_total_s = started.elapsed().as_secs_f64();
    let per_state_rows = engine::to_json_rows(&per_state)?;
    let expiring_rows: usize = expiring.iter().map(|b| b.num_rows()).sum();

    // From the Parquet dataset, as a run reads it: open the session (the dataset object
    // copied into the sandbox), then the query. Median of 5.
    let parquet = dataset::to_parquet(&batches)?;
    let parquet_mib = parquet.len() as f64 / (1 << 20) as f64;
    let provider = ProviderId::parse("BENCH").map_err(|e| anyhow::anyhow!("{e}"))?;
    let object_key = ward_domain::key_layout::facility_dataset_object_key(&provider, 1, &upload);
    let objects: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.join("objects"))?,
    );
    objects
        .put(
            &object_store::path::Path::from(object_key.as_str()),
            parquet.into(),
        )
        .await?;
    let parquet_path = dir.join("objects").join(&object_key);
    let pointer = DatasetPointer {
        object_key,
        rows: count,
        version: 1,
    };
    let mut open_and_query = Vec::new();
    let mut query_only = Vec::new();
    let mut expiring_only = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let ctx = engine::session(Arc::clone(&objects), &provider, &pointer, &settings).await?;
        query_only.push(timed_query(&ctx, StandardQuery::PerState).await?.1);
        open_and_query.push(started.elapsed().as_secs_f64());
        expiring_only.push(
            timed_query(&ctx, StandardQuery::ExpiringAccreditations)
                .await?
                .1,
        );
    }
    let median = |samples: &mut Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };

    println!(
        "facilities: {count} ({size_mib:.0} MiB of JSON lines; Parquet dataset {parquet_mib:.0} MiB), run date {AS_OF}, horizon {MONTHS} months, {threads} threads"
    );
    println!("Ward (DataFusion 55), from the JSON file:");
    println!("  read + validate + Arrow  {parse_s:>8.3} s  (streamed)");
    println!("  per-state query          {json_per_state_s:>8.3} s");
    println!("  expiring query           {json_expiring_s:>8.3} s  ({expiring_rows} rows)");
    println!("  total                    {json_total_s:>8.3} s");
    println!("Ward, from the Parquet dataset (median of 5):");
    println!(
        "  per-state query          {:>8.3} s",
        median(&mut query_only)
    );
    println!(
        "  open + per-state query   {:>8.3} s",
        median(&mut open_and_query)
    );
    println!(
        "  expiring query           {:>8.3} s",
        median(&mut expiring_only)
    );

    let python = std::env::var("WARD_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/duckdb_analytics.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&json_path)
        .arg(&parquet_path)
        .arg(AS_OF)
        .arg(MONTHS.to_string())
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !output.status.success() {
        println!(
            "DuckDB not measured (pip install duckdb): {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return Ok(());
    }
    let duck: Value = serde_json::from_slice(&output.stdout)?;
    let f = |name: &str| duck[name].as_f64().unwrap_or(f64::NAN);
    let duck_json_total = f("load_s") + f("table_per_state_s") + f("table_expiring_s");
    println!(
        "DuckDB {} (2 threads), same files:",
        duck["version"].as_str().unwrap_or("?")
    );
    println!(
        "  per-state from the file  {:>8.3} s",
        f("file_per_state_s")
    );
    println!(
        "  expiring from the file   {:>8.3} s  ({} rows)",
        f("file_expiring_s"),
        duck["expiring_rows"]
    );
    println!("  load the file once       {:>8.3} s", f("load_s"));
    println!(
        "  then per-state           {:>8.3} s",
        f("table_per_state_s")
    );
    println!(
        "  then expiring            {:>8.3} s",
        f("table_expiring_s")
    );
    println!("  total (load + both)      {duck_json_total:>8.3} s");
    println!(
        "  per-state from Parquet   {:>8.3} s",
        f("parquet_per_state_s")
    );
    println!(
        "  expiring from Parquet    {:>8.3} s",
        f("parquet_expiring_s")
    );
    println!(
        "from JSON, Ward / DuckDB (load once + both queries): {:.2}x (target <= 1.5x); vs both queries straight from the file: {:.2}x",
        json_total_s / duck_json_total,
        json_total_s / (f("file_per_state_s") + f("file_expiring_s"))
    );
    // Both engines must agree before their times mean anything.
    let ours: Vec<Value> = per_state_rows
        .iter()
        .map(|row| {
            json!([
                row["state"],
                row["facility_count"],
                row["total_employees"],
                row["accredited_facilities"],
                row["valid_accreditations"]
            ])
        })
        .collect();
    let agree = Value::Array(ours.clone()) == duck["per_state"]
        && Value::Array(ours) == duck["parquet_per_state"]
        && duck["expiring_rows"].as_u64() == Some(expiring_rows as u64);
    println!("results agree with DuckDB: {agree}");
    anyhow::ensure!(agree, "Ward and DuckDB disagree on the results");
    Ok(())
}

#[cfg(feature = "analytics")]
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ward-bench-analytics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Without the engine there is nothing to measure.
#[cfg(not(feature = "analytics"))]
pub async fn bench(_count: u64, _work_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("{}", ward_ports::NO_ANALYTICS)
}

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
    anyhow::bail!("{}", ward_ingest::NO_ANALYTICS)
}

/// Gives the pipeline its facility analytics (with the `analytics` feature).
#[cfg(feature = "analytics")]
pub fn attach(ctx: IngestContext) -> IngestContext {
    let engine = ward_analytics::FacilityAnalytics::new(ctx.settings.analytics.clone());
    ctx.with_analytics(std::sync::Arc::new(engine))
}

/// A build without the `analytics` feature: facility uploads and runs are refused with
/// a message saying how to build it.
#[cfg(not(feature = "analytics"))]
pub fn attach(ctx: IngestContext) -> IngestContext {
    ctx
}

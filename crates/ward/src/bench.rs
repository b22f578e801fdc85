//! `ward bench ingest`: first load and re-upload of generated rows, peak memory, and
//! patient-record query latency in process and over HTTP, with DuckDB (Python package) on
//! the same file as the yardstick. Build with `--release`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use ward_domain::key_layout::{self, VISIT_SK_PREFIX};
use ward_domain::{Mrn, ProviderId};
use ward_store::{Query, SkCondition};

use crate::client::Client;
use crate::local_ingest;
use crate::server::{self, ServerOptions};
use crate::synthetic::{RecordSpec, write_records};

/// Runs the ingest benchmark and prints a Markdown table.
pub async fn ingest(rows: u64, work_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release -p ward -- bench ingest` for real figures"
        );
    }
    let work_dir = work_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ward-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work_dir)?;
    let csv_path = work_dir.join(format!("visits-{rows}.csv"));
    if !csv_path.exists() {
        eprintln!("generating {rows} rows -> {}", csv_path.display());
        let file = std::fs::File::create(&csv_path)?;
        write_records(
            &RecordSpec {
                rows,
                seed: 1,
                bad_share: 0.001,
            },
            std::io::BufWriter::new(file),
        )?;
    }
    let file_mb = std::fs::metadata(&csv_path)?.len() as f64 / 1e6;
    let data_dir = work_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let options = ServerOptions {
        data_dir: data_dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        api: ward_api::ApiSettings::default(),
        ingest: ward_ingest::IngestSettings::default(),
        operator_key: Default::default(),
        retention: Default::default(),
        store: Default::default(),
        shape: Default::default(),
    };
    let running = server::start(options).await?;
    let ctx = running.state.ctx.clone();
    let provider = ProviderId::parse("PROV001").map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = ward_api::auth::create_provider(ctx.table.as_ref(), &provider, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    eprintln!("first load...");
    let (first, first_elapsed) =
        local_ingest::ingest_file(&ctx, &provider, &csv_path, false).await?;
    let rss_after_first = peak_rss_mib();
    eprintln!("re-upload...");
    let (second, second_elapsed) =
        local_ingest::ingest_file(&ctx, &provider, &csv_path, false).await?;
    let first_counts = first.report.clone().unwrap_or_default().counts;
    let second_counts = second.report.clone().unwrap_or_default().counts;
    anyhow::ensure!(second_counts.inserted == 0, "re-upload inserted rows");
    let first_rate = first_counts.rows as f64 / first_elapsed.as_secs_f64();
    let second_rate = second_counts.rows as f64 / second_elapsed.as_secs_f64();

    let n_patients = (rows / 4).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mrns: Vec<Mrn> = (0..2000)
        .map(|_| Mrn::parse(&format!("MRN{:07}", rng.random_range(0..n_patients))))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut in_process = Vec::with_capacity(mrns.len());
    for mrn in &mrns {
        let started = Instant::now();
        let page = ctx
            .table
            .query(Query {
                limit: 100,
                ..Query::partition(
                    key_layout::patient_pk(&provider, mrn),
                    SkCondition::BeginsWith(VISIT_SK_PREFIX.into()),
                )
            })
            .await?;
        in_process.push(started.elapsed());
        std::hint::black_box(page);
    }
    let client = Client::new(&running.base_url, &key.0);
    let mut over_http = Vec::with_capacity(mrns.len());
    for mrn in &mrns {
        let started = Instant::now();
        let page = client.get(&format!("/v1/patients/{mrn}/records")).await?;
        over_http.push(started.elapsed());
        std::hint::black_box(page);
    }
    running.stop().await?;
    let peak_rss = peak_rss_mib();

    let duckdb = run_duckdb(&csv_path);
    println!("\n| measure | Ward | DuckDB | Ward / DuckDB |");
    println!("|---|---|---|---|");
    let (duck_first, duck_reload) = match &duckdb {
        Ok((n, first_s, reload_s)) => (Some(*n as f64 / first_s), Some(*n as f64 / reload_s)),
        Err(_) => (None, None),
    };
    let cell = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.0} rows/s"));
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.2}x", a / b));
    println!(
        "| first load ({} rows, {file_mb:.0} MB) | {first_rate:.0} rows/s | {} | {} |",
        first_counts.rows,
        cell(duck_first),
        ratio(first_rate, duck_first)
    );
    println!(
        "| re-upload (same file) | {second_rate:.0} rows/s | {} | {} |",
        cell(duck_reload),
        ratio(second_rate, duck_reload)
    );
    println!("| peak RSS after first load | {rss_after_first:.0} MiB | | |");
    println!("| peak RSS, whole run | {peak_rss:.0} MiB | | |");
    println!(
        "| patient records p50 / p99, in process | {} / {} | | |",
        micros(&mut in_process, 0.50),
        micros(&mut in_process, 0.99)
    );
    println!(
        "| patient records p50 / p99, over HTTP | {} / {} | | |",
        micros(&mut over_http, 0.50),
        micros(&mut over_http, 0.99)
    );
    println!(
        "\nfirst load: {} inserted, {} duplicate, {} conflict, {} rejected; re-upload: {} duplicate",
        first_counts.inserted,
        first_counts.duplicate,
        first_counts.conflict,
        first_counts.rejected,
        second_counts.duplicate
    );
    if let Err(error) = duckdb {
        println!("DuckDB not measured: {error:#}");
    }
    Ok(())
}

fn run_duckdb(csv: &std::path::Path) -> anyhow::Result<(u64, f64, f64)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/duckdb_ingest.py");
    let python = std::env::var("WARD_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(csv)
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    anyhow::ensure!(
        output.status.success(),
        "DuckDB script failed (pip install duckdb): {}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok((
        result["rows"].as_u64().unwrap_or(0),
        result["first_load_s"].as_f64().unwrap_or(f64::NAN),
        result["reload_s"].as_f64().unwrap_or(f64::NAN),
    ))
}

fn micros(samples: &mut [Duration], quantile: f64) -> String {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
    format!("{:.0} µs", samples[index].as_secs_f64() * 1e6)
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

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
pub async fn ingest(rows: u64, pairs: usize, work_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release -p ward -- bench ingest` for real figures"
        );
    }
    let temporary = work_dir.is_none();
    let work_dir = work_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ward-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work_dir)?;
    let csv_path = benchmark_csv(&work_dir, rows)?;
    let file_mb = std::fs::metadata(&csv_path)?.len() as f64 / 1e6;
    let data_dir = work_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let options = |ingest| ServerOptions {
        data_dir: data_dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        api: ward_api::ApiSettings::default(),
        ingest,
        operator_key: Default::default(),
        retention: Default::default(),
        store: Default::default(),
        shape: Default::default(),
        table_layer: None,
    };
    let running = server::start(options(ward_ingest::IngestSettings::default())).await?;
    let ctx = running.state.ctx.clone();
    let provider = ProviderId::parse("PROV001").map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = ward_ports::Tenants::new(ctx.table.clone())
        .create(&provider, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    eprintln!("first load...");
    let (first, first_elapsed) =
        local_ingest::ingest_file(&ctx, &provider, &csv_path, false).await?;
    let rss_after_first = peak_rss_mib();
    eprintln!("re-upload (byte-identical: the first upload's outcomes)...");
    let (second, second_elapsed) =
        local_ingest::ingest_file(&ctx, &provider, &csv_path, false).await?;
    anyhow::ensure!(
        second.report.as_ref().and_then(|r| r.identical_to.as_ref()) == Some(&first.id.to_string()),
        "the re-upload did not take the first upload's outcomes"
    );
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
                    key_layout::patient_pk(&provider, &ctx.pseudonyms.patient(&provider, mrn)),
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
    drop(ctx);

    eprintln!("re-upload, every row read (the shortcut off)...");
    let per_row = server::start(options(ward_ingest::IngestSettings {
        reuse_identical_files: false,
        ..Default::default()
    }))
    .await?;
    let (third, third_elapsed) =
        local_ingest::ingest_file(&per_row.state.ctx, &provider, &csv_path, false).await?;
    per_row.stop().await?;
    let third_counts = third.report.clone().unwrap_or_default().counts;
    anyhow::ensure!(
        third_counts == second_counts,
        "the per-row re-upload ended differently: {third_counts:?} vs {second_counts:?}"
    );
    let third_rate = third_counts.rows as f64 / third_elapsed.as_secs_f64();
    let peak_rss = peak_rss_mib();

    // What sealing patient data costs: first loads of the same file into fresh data
    // folders, sealed and sealing nothing (never a shape Ward serves), alternating.
    let compared =
        sealed_against_unsealed(&work_dir, &provider, &csv_path, pairs, &first_counts).await?;

    let duckdb = run_duckdb(&csv_path);
    // The store is over a gigabyte at 1M rows: keep only a CSV the caller asked to keep.
    let _ = std::fs::remove_dir_all(if temporary { &work_dir } else { &data_dir });
    let _ = std::fs::remove_dir_all(crate::protection::default_keys_dir(&data_dir));
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
        "| re-upload (same file; Ward: byte-identical, outcomes carried over) | {second_rate:.0} rows/s | {} | {} |",
        cell(duck_reload),
        ratio(second_rate, duck_reload)
    );
    println!(
        "| re-upload (same file; Ward: every row read and checked) | {third_rate:.0} rows/s | {} | {} |",
        cell(duck_reload),
        ratio(third_rate, duck_reload)
    );
    let (sealed_rate, unsealed_rate) = (median(&compared.sealed), median(&compared.unsealed));
    println!(
        "| first load into a fresh folder, sealed / nothing sealed (median of {pairs} each, alternating) | {sealed_rate:.0} / {unsealed_rate:.0} rows/s | | sealed / unsealed {:.2}x |",
        sealed_rate / unsealed_rate
    );
    println!(
        "| store file, sealed / unsealed (the same records) | {:.0} MB / {:.0} MB | | |",
        compared.sealed_bytes as f64 / 1e6,
        compared.unsealed_bytes as f64 / 1e6
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
    let rates = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "first loads in order run, rows/s: sealed {}; nothing sealed {}",
        rates(&compared.sealed),
        rates(&compared.unsealed)
    );
    if let Err(error) = duckdb {
        println!("DuckDB not measured: {error:#}");
    }
    Ok(())
}

/// First-load rates into fresh folders, sealed and not, and each store file's size.
struct Compared {
    sealed: Vec<f64>,
    unsealed: Vec<f64>,
    sealed_bytes: u64,
    unsealed_bytes: u64,
}

/// `pairs` first loads of `csv` sealed and as many sealing nothing, each into a fresh data
/// folder, in the order sealed, unsealed, unsealed, sealed, ... so that a drift of the
/// machine (page cache, writeback, another tenant) weighs on both alike.
async fn sealed_against_unsealed(
    work_dir: &std::path::Path,
    provider: &ProviderId,
    csv: &std::path::Path,
    pairs: usize,
    expected: &ward_ports::uploads::OutcomeCounts,
) -> anyhow::Result<Compared> {
    let mut compared = Compared {
        sealed: Vec::new(),
        unsealed: Vec::new(),
        sealed_bytes: 0,
        unsealed_bytes: 0,
    };
    for load in 0..pairs * 2 {
        let sealed = matches!(load % 4, 0 | 3);
        eprintln!(
            "first load {}/{}, {}...",
            load + 1,
            pairs * 2,
            if sealed { "sealed" } else { "nothing sealed" }
        );
        let dir = work_dir.join("data-compared");
        let keys = crate::protection::default_keys_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&keys);
        let opened = crate::embedded::open_with(
            &dir,
            ward_ingest::IngestSettings::default(),
            &Default::default(),
            sealed,
        )
        .await?;
        local_ingest::ensure_provider(&opened.ctx, provider).await?;
        let (upload, elapsed) =
            local_ingest::ingest_file(&opened.ctx, provider, csv, false).await?;
        let counts = upload.report.clone().unwrap_or_default().counts;
        anyhow::ensure!(
            &counts == expected,
            "a compared first load ended differently: {counts:?} vs {expected:?}"
        );
        let rate = counts.rows as f64 / elapsed.as_secs_f64();
        let bytes = std::fs::metadata(dir.join("ward.redb"))?.len();
        drop(opened);
        if sealed {
            compared.sealed.push(rate);
            compared.sealed_bytes = bytes;
        } else {
            compared.unsealed.push(rate);
            compared.unsealed_bytes = bytes;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&keys);
    }
    Ok(compared)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The benchmark's generated CSV (seed 1, 0.1% bad rows), made once per folder and size.
pub(crate) fn benchmark_csv(work_dir: &std::path::Path, rows: u64) -> anyhow::Result<PathBuf> {
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
    Ok(csv_path)
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

/// The `quantile` of `samples` (sorted in place), in whole microseconds.
pub(crate) fn micros(samples: &mut [Duration], quantile: f64) -> String {
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

/// `ward bench audit`: what the audit trail costs. Ingest throughput with the upload's
/// audit event on and off (fresh stores, same file, alternating), and the p50/p99 of
/// patient reads (profile; a page of clinical records) with read auditing on and off
/// (same store, alternating rounds). Prints a Markdown table.
pub async fn audit(rows: u64, patients: u64, work_dir: Option<PathBuf>) -> anyhow::Result<()> {
    use std::sync::Arc;
    use ward_emr::{Actor, AuditLog, Emr, Kind, ListFilter};

    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for real figures");
    }
    let temporary = work_dir.is_none();
    let work_dir = work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ward-bench-audit-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work_dir)?;
    let provider = ProviderId::parse("PROV001").map_err(|e| anyhow::anyhow!("{e}"))?;

    // Reads: one store with the EMR demo dataset.
    let store_path = work_dir.join("emr.redb");
    let _ = std::fs::remove_file(&store_path);
    let table: Arc<dyn ward_store::Table> = Arc::new(crate::embedded::open_table(
        &store_path,
        &Default::default(),
    )?);
    let actor = Actor::provider_wide(
        provider.clone(),
        "key:bench",
        Some(ward_domain::Role::ProviderAdmin),
        "api_key",
    );
    let pseudonyms = Arc::new(ward_domain::Pseudonyms::new(&rand::random()));
    let loader = Emr::new(
        Arc::clone(&table),
        Arc::clone(&pseudonyms),
        AuditLog::disabled(),
    );
    let data = ward_emr::generate::dataset(ward_emr::generate::EmrSpec {
        patients,
        clinicians: (patients / 100).max(1),
        seed: 42,
    });
    eprintln!("loading {patients} patients...");
    for clinician in &data.clinicians {
        loader
            .create_clinician(&actor, clinician, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for bundle in &data.patients {
        let mrn = bundle.profile["mrn"].as_str().unwrap_or_default();
        loader
            .create_patient(&actor, &bundle.profile, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (kind, body) in &bundle.items {
            loader
                .create_child(&actor, *kind, mrn, body, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let audited = Emr::new(
        Arc::clone(&table),
        Arc::clone(&pseudonyms),
        AuditLog::start(Arc::clone(&table), Arc::clone(&pseudonyms)),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let picks: Vec<String> = (0..40_000)
        .map(|_| format!("MRN{:07}", rng.random_range(0..patients)))
        .collect();
    let mut profile = [Vec::new(), Vec::new()];
    let mut records = [Vec::new(), Vec::new()];
    // 40 rounds of 1,000 patients, alternating off / on, so both modes see the same
    // machine; after an audited round its events are flushed before the next round.
    for (round, chunk) in picks.chunks(1_000).enumerate() {
        let audit_on = round % 2 == 1;
        let emr = if audit_on { &audited } else { &loader };
        for mrn in chunk {
            let started = Instant::now();
            std::hint::black_box(
                emr.get_patient(&actor, mrn)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            profile[usize::from(audit_on)].push(started.elapsed());
            let started = Instant::now();
            let filter = ListFilter {
                limit: 20,
                ..ListFilter::default()
            };
            std::hint::black_box(
                emr.list_children(&actor, Kind::ClinicalRecord, mrn, filter)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            records[usize::from(audit_on)].push(started.elapsed());
        }
        if audit_on {
            audited.audit_log().flush().await;
        }
    }
    audited.audit_log().close().await;
    // Ingest after the reads (its file, writes and deletions would disturb them): off,
    // on, off, on; each into a fresh store; best of each.
    let csv_path = benchmark_csv(&work_dir, rows.max(1))?;
    let mut rates = [Vec::new(), Vec::new()];
    let ingest_rounds = if rows == 0 {
        vec![]
    } else {
        vec![false, true, false, true]
    };
    for (round, audit_on) in ingest_rounds.into_iter().enumerate() {
        let data_dir = work_dir.join(format!("ingest-{round}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        let running = server::start(ServerOptions {
            data_dir: data_dir.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            api: ward_api::ApiSettings::default(),
            ingest: ward_ingest::IngestSettings {
                audit: audit_on,
                ..Default::default()
            },
            operator_key: Default::default(),
            retention: Default::default(),
            store: Default::default(),
            shape: Default::default(),
            table_layer: None,
        })
        .await?;
        let ctx = running.state.ctx.clone();
        ward_ports::Tenants::new(ctx.table.clone())
            .create(&provider, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        eprintln!("ingest, audit {}...", if audit_on { "on" } else { "off" });
        let (upload, elapsed) =
            local_ingest::ingest_file(&ctx, &provider, &csv_path, false).await?;
        let counts = upload.report.unwrap_or_default().counts;
        rates[usize::from(audit_on)].push(counts.rows as f64 / elapsed.as_secs_f64());
        drop(ctx);
        running.stop().await?;
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (ingest_off, ingest_on) = (best(&rates[0]), best(&rates[1]));

    println!("\n| measure | audit off | audit on | on / off |");
    println!("|---|---|---|---|");
    if rows > 0 {
        println!(
            "| ingest, {rows} rows (best of 2 each) | {ingest_off:.0} rows/s | {ingest_on:.0} rows/s | {:.3} |",
            ingest_on / ingest_off
        );
    }
    for (name, samples) in [
        ("patient profile", &mut profile),
        ("patient's clinical records, first page", &mut records),
    ] {
        let [off, on] = samples;
        let p99 = |s: &mut Vec<Duration>| {
            s.sort();
            s[((s.len() as f64 * 0.99) as usize).min(s.len() - 1)]
        };
        let (off99, on99) = (p99(off), p99(on));
        println!(
            "| {name}: p50 / p99 ({} reads each) | {} / {} | {} / {} | p99 {:.3} |",
            off.len(),
            micros(off, 0.50),
            micros(off, 0.99),
            micros(on, 0.50),
            micros(on, 0.99),
            on99.as_secs_f64() / off99.as_secs_f64()
        );
    }
    drop(table);
    if temporary {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(())
}

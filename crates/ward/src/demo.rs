//! `ward demo`: the whole intake path on a fresh embedded data folder, driven through the
//! HTTP API exactly as an outside client would, then a server left running for curl.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use ward_domain::ProviderId;

use crate::client::Client;
use crate::server::{self, ServerOptions};
use crate::synthetic::{RecordSpec, write_records};

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Data folder; default a fresh folder under the system temp dir.
    pub data_dir: Option<PathBuf>,
    /// Where to listen; falls back to a free port if taken.
    pub listen: SocketAddr,
    /// Rows to generate.
    pub rows: u64,
    /// Stop after printing instead of serving.
    pub exit: bool,
}

/// Runs the demo.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "ward-demo-{}",
            ward_domain::UtcInstant::now().compact_seconds()
        ))
    });
    println!("Ward demo");
    println!("  data folder   {}", data_dir.display());
    println!(
        "  key folder    {} (patient data is sealed at rest with these keys)",
        crate::protection::default_keys_dir(&data_dir).display()
    );
    let mut server_options = ServerOptions {
        data_dir: data_dir.clone(),
        listen: options.listen,
        public_url: None,
        api: ward_api::ApiSettings::default(),
        ingest: ward_ingest::IngestSettings::default(),
        operator_key: crate::config::Secret::new(std::env::var("WARD_OPERATOR_KEY").ok()),
        retention: Default::default(),
        store: Default::default(),
        shape: Default::default(),
        table_layer: None,
    };
    let running = match server::start(server_options.clone()).await {
        Ok(running) => running,
        Err(error) if error.to_string().contains("cannot listen") => {
            println!("  ({} is taken; using a free port)", options.listen);
            server_options.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            server::start(server_options).await?
        }
        Err(error) => return Err(error),
    };
    let base_url = running.base_url.clone();
    println!("  server        {base_url}");
    let provider = ProviderId::parse("PROV001").map_err(|e| anyhow::anyhow!("{e}"))?;
    let api_key = match ward_ports::Tenants::new(running.state.table.clone())
        .create(&provider, None)
        .await
    {
        Ok(key) => key.0,
        Err(_) => {
            ward_ports::Tenants::new(running.state.table.clone())
                .issue_full_key(&provider, true)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .0
        }
    };
    println!("  provider      {provider}");
    let csv_path = data_dir.join("demo-visits.csv");
    let file = std::fs::File::create(&csv_path).context("cannot write the demo CSV")?;
    write_records(
        &RecordSpec {
            rows: options.rows,
            seed: 42,
            bad_share: 0.02,
        },
        std::io::BufWriter::new(file),
    )?;
    println!(
        "  generated     {} ({} rows, seed 42, ~2% bad rows)",
        csv_path.display(),
        options.rows
    );

    let client = Client::new(&base_url, &api_key);
    let upload_id = client.upload_file(&csv_path, "visits", true).await?;
    println!("\nUploaded through a pre-signed URL as upload {upload_id}; processing...");
    let upload = client
        .wait_for_upload(&upload_id, Duration::from_secs(120))
        .await?;
    let report = &upload["report"];
    println!("\nReport ({}):", upload["status"].as_str().unwrap_or("?"));
    println!("  {}", crate::counts_line(report));
    if let Some(unknown) = report["unknownColumns"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        println!("  unknown columns ignored: {unknown:?}");
    }
    for problem in report["firstProblems"]
        .as_array()
        .into_iter()
        .flatten()
        .take(5)
    {
        println!(
            "  line {:>5}  {:<8}  {:<22} {}",
            problem["line"],
            problem["outcome"].as_str().unwrap_or(""),
            problem["column"].as_str().unwrap_or(""),
            problem["reason"].as_str().unwrap_or("")
        );
    }
    let first = client
        .get(&format!("/v1/uploads/{upload_id}/records?limit=1"))
        .await?;
    if let Some(mrn) = first["records"][0]["medicalRecordNumber"].as_str() {
        let records = client.get(&format!("/v1/patients/{mrn}/records")).await?;
        println!("\nPatient {mrn}, visits in time order:");
        for record in records["records"].as_array().into_iter().flatten() {
            let notes = record["doctorsNotes"]
                .as_str()
                .unwrap_or("")
                .replace(['\r', '\n'], " ");
            println!(
                "  {}  (sent as {:<25})  {} {}  {}",
                record["dateTimeUtc"].as_str().unwrap_or(""),
                record["dateTime"].as_str().unwrap_or(""),
                record["firstName"].as_str().unwrap_or(""),
                record["lastName"].as_str().unwrap_or(""),
                notes
            );
        }
    }
    // The EMR side: clinicians, patients (the CSV's MRNs), appointments, clinical
    // records, bills and documents, created through the API; then one patient's timeline.
    let spec = ward_emr::generate::EmrSpec {
        patients: 20,
        clinicians: 4,
        seed: 42,
    };
    let loaded = crate::emr_cli::load(
        &client,
        &ward_emr::generate::dataset(spec),
        spec.seed,
        false,
    )
    .await?;
    println!(
        "\nEMR: created {} clinicians, {} patients, {} appointments/records/bills, {} documents (checked uploads)",
        loaded.clinicians, loaded.patients, loaded.items, loaded.documents
    );
    crate::emr_cli::print_timeline(&client, "MRN0000001").await?;
    println!("\nTry it yourself:");
    println!("  export WARD_URL={base_url}");
    println!("  export WARD_KEY={api_key}");
    println!("  curl -s -H \"Authorization: Bearer $WARD_KEY\" $WARD_URL/v1/uploads/{upload_id}");
    println!(
        "  curl -s -H \"Authorization: Bearer $WARD_KEY\" $WARD_URL/v1/uploads/{upload_id}/errors.csv"
    );
    println!(
        "  cargo run --release -p ward -- upload {} --server $WARD_URL --key $WARD_KEY",
        csv_path.display()
    );
    println!(
        "  curl -s -H \"Authorization: Bearer $WARD_KEY\" $WARD_URL/v1/patients/MRN0000001/timeline"
    );
    println!(
        "  curl -s -H \"Authorization: Bearer $WARD_KEY\" \"$WARD_URL/v1/clinics/NORTH/appointments?date=2025-01-06\""
    );
    println!("  curl -s -H \"Authorization: Bearer $WARD_KEY\" $WARD_URL/v1/audit");
    if let Some(operator_key) = &running.new_operator_key {
        println!("  operator key (shown once): {operator_key}");
    }
    if options.exit {
        return running.stop().await;
    }
    println!("\nServing at {base_url} — Ctrl-C to stop.");
    running.run_until_signal().await
}

//! `ward gen emr`: loads the generated EMR demo dataset (`ward_emr::generate`) through the
//! HTTP API, as any client would: the API validates every body, documents go through
//! their pre-signed upload URLs. Creates carry idempotency keys derived from the seed, so
//! running it twice within a day changes nothing.

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;
use ward_emr::Kind;
use ward_emr::generate::{Dataset, EmrSpec, PatientBundle, dataset};

use crate::client::Client;

/// What a load created.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    /// Clinicians.
    pub clinicians: u64,
    /// Patients.
    pub patients: u64,
    /// Appointments, records and bills.
    pub items: u64,
    /// Documents (uploaded and checked).
    pub documents: u64,
}

fn segment(kind: Kind) -> &'static str {
    match kind {
        Kind::Appointment => "appointments",
        Kind::ClinicalRecord => "clinical-records",
        Kind::Bill => "bills",
        _ => "documents",
    }
}

async fn create(client: &Client, path: &str, body: &Value, key: &str) -> anyhow::Result<Value> {
    let (status, answer) = client
        .send(Method::POST, path, Some(body), &[("idempotency-key", key)])
        .await?;
    if !(200..300).contains(&status) {
        let detail = answer["detail"].as_str().unwrap_or("no detail");
        let errors = answer["errors"].to_string();
        bail!("POST {path} answered {status}: {detail} {errors}");
    }
    Ok(answer)
}

async fn load_patient(
    client: &Client,
    seed: u64,
    index: usize,
    bundle: &PatientBundle,
) -> anyhow::Result<(u64, u64)> {
    let mrn = bundle.profile["mrn"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    create(
        client,
        "/v1/patients",
        &bundle.profile,
        &format!("gen-{seed}-p{index}"),
    )
    .await?;
    let mut items = 0;
    for (i, (kind, body)) in bundle.items.iter().enumerate() {
        let path = format!("/v1/patients/{mrn}/{}", segment(*kind));
        create(client, &path, body, &format!("gen-{seed}-p{index}-i{i}")).await?;
        items += 1;
    }
    let mut documents = 0;
    for (i, (meta, bytes)) in bundle.documents.iter().enumerate() {
        let path = format!("/v1/patients/{mrn}/documents");
        let document = create(client, &path, meta, &format!("gen-{seed}-p{index}-d{i}")).await?;
        if document["status"] == "AVAILABLE" {
            documents += 1;
            continue;
        }
        let (status, settled) = client
            .put_granted(&document["upload"], bytes.clone())
            .await?;
        if !(200..300).contains(&status) {
            bail!("uploading a document answered {status}: {settled}");
        }
        // The embedded endpoint checks on arrival; after an S3 upload Ward is asked to.
        if settled["status"] != "AVAILABLE" {
            let id = document["id"].as_str().unwrap_or_default();
            let (status, checked) = client
                .send(Method::POST, &format!("{path}/{id}/check"), None, &[])
                .await?;
            if status != 200 || checked["status"] != "AVAILABLE" {
                bail!("the document check answered {status}: {checked}");
            }
        }
        documents += 1;
    }
    Ok((items, documents))
}

/// Loads `data` through `client` (eight patients at a time), with a progress bar.
pub async fn load(
    client: &Client,
    data: &Dataset,
    seed: u64,
    progress: bool,
) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded::default();
    for (i, clinician) in data.clinicians.iter().enumerate() {
        create(
            client,
            "/v1/clinicians",
            clinician,
            &format!("gen-{seed}-c{i}"),
        )
        .await?;
        loaded.clinicians += 1;
    }
    let bar = if progress {
        ProgressBar::new(data.patients.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} patients {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results: Vec<(u64, u64)> = futures::stream::iter(data.patients.iter().enumerate())
        .map(|(i, bundle)| {
            let bar = bar.clone();
            async move {
                let done = load_patient(client, seed, i, bundle).await;
                bar.inc(1);
                done
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    loaded.patients = results.len() as u64;
    for (items, documents) in results {
        loaded.items += items;
        loaded.documents += documents;
    }
    Ok(loaded)
}

/// `ward gen emr`: generates and loads the dataset; prints what it made.
pub async fn run(server: &str, key: &str, spec: EmrSpec) -> anyhow::Result<()> {
    let client = Client::new(server, key);
    let data = dataset(spec);
    let started = std::time::Instant::now();
    let loaded = load(&client, &data, spec.seed, true)
        .await
        .with_context(|| format!("loading the EMR demo data into {server}"))?;
    println!(
        "created {} clinicians, {} patients, {} appointments/records/bills, {} documents in {:.1} s",
        loaded.clinicians,
        loaded.patients,
        loaded.items,
        loaded.documents,
        started.elapsed().as_secs_f64()
    );
    println!("try: ward timeline MRN0000001 (or GET /v1/patients/MRN0000001/timeline)");
    Ok(())
}

/// Prints a patient's timeline, one line per entry, oldest first.
pub async fn print_timeline(client: &Client, mrn: &str) -> anyhow::Result<()> {
    let mut cursor: Option<String> = None;
    println!("\nPatient {mrn}, everything in time order:");
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/patients/{mrn}/timeline?limit=100&cursor={cursor}"),
            None => format!("/v1/patients/{mrn}/timeline?limit=100"),
        };
        let page = client.get(&path).await?;
        for entry in page["items"].as_array().into_iter().flatten() {
            let item = &entry["item"];
            let what = match entry["kind"].as_str().unwrap_or("") {
                "visit" => format!(
                    "CSV visit      {}",
                    item["doctorsNotes"]
                        .as_str()
                        .unwrap_or("")
                        .replace(['\r', '\n'], " ")
                ),
                "appointment" => format!(
                    "appointment    {} with {} ({} min, {})",
                    item["type"].as_str().unwrap_or(""),
                    item["clinicianId"].as_str().unwrap_or(""),
                    item["durationMinutes"],
                    item["status"].as_str().unwrap_or("")
                ),
                "clinicalRecord" => format!(
                    "clinical note  {}: {}",
                    item["diagnoses"][0]["code"].as_str().unwrap_or("-"),
                    item["chiefComplaint"].as_str().unwrap_or("")
                ),
                "bill" => format!(
                    "bill           {} {} ({})",
                    item["amountMinor"],
                    item["currency"].as_str().unwrap_or(""),
                    item["status"].as_str().unwrap_or("")
                ),
                "document" => format!(
                    "document       {} {} ({})",
                    item["type"].as_str().unwrap_or(""),
                    item["title"].as_str().unwrap_or(""),
                    item["status"].as_str().unwrap_or("")
                ),
                other => other.to_owned(),
            };
            println!(
                "  {}  {what}",
                entry["at"].as_str().unwrap_or("").get(..19).unwrap_or("")
            );
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(()),
        }
    }
}

//! `ward bench access`: what authorization costs a patient-records read. For a full API
//! key, a built-in administrator's token and a built-in clinician's token (whose reach
//! is one more query: its care relation), the p50/p99 of
//! - **in process**: the principal's check (key lookup, or the token's signature) plus, for
//!   the clinician, `Emr::admit`, plus the records query, as the handler runs them;
//! - **over HTTP**: `GET /v1/patients/{mrn}/records` with that credential, keep-alive.
//!
//! The principals take turns sample by sample, each first in a third of them, so drift and
//! cold pages hit them alike. Build with `--release`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use ward_domain::{ClinicianId, Link, Mrn, ProviderId, Role, UserId, key_layout};
use ward_emr::Actor;
use ward_ports::visits::VisitRange;
use ward_store::{Condition, Item, Order, PK, SK, Value};

use crate::bench::micros;
use crate::client::Client;
use crate::local_ingest;
use crate::server::{self, ServerOptions};

const SAMPLES: usize = 2000;

/// Runs the benchmark over `rows` generated visits and prints a Markdown table.
pub async fn access(rows: u64, work_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release -p ward -- bench access` for real figures"
        );
    }
    let work_dir = work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ward-bench-access-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work_dir)?;
    let csv_path = crate::bench::benchmark_csv(&work_dir, rows)?;
    let data_dir = work_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let running = server::start(ServerOptions {
        data_dir: data_dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        api: ward_api::ApiSettings::default(),
        ingest: ward_ingest::IngestSettings::default(),
        operator_key: Default::default(),
        retention: Default::default(),
        store: Default::default(),
        shape: Default::default(),
        table_layer: None,
    })
    .await?;
    let state = running.state.clone();
    let provider = ProviderId::parse("PROV001").map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = state
        .tenants
        .create(&provider, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("loading {rows} rows...");
    local_ingest::ingest_file(&state.ctx, &provider, &csv_path, false).await?;

    let n_patients = (rows / 4).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mrns: Vec<Mrn> = (0..SAMPLES)
        .map(|_| Mrn::parse(&format!("MRN{:07}", rng.random_range(0..n_patients))))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // A clinician who cares for every sampled patient: the relation items an appointment
    // or a clinical record would have written.
    let clinician = ClinicianId::parse("DR1").map_err(|e| anyhow::anyhow!("{e}"))?;
    for mrn in &mrns {
        let mut care = Item::new();
        let patient = state.ctx.pseudonyms.patient(&provider, mrn);
        care.insert(
            PK.into(),
            Value::s(key_layout::patient_pk(&provider, &patient)),
        );
        care.insert(SK.into(), Value::s(key_layout::care_sk(&clinician)));
        care.insert("entity".into(), Value::s("CARE"));
        state.table.put(care, Condition::None).await?;
    }
    let now = ward_domain::UtcInstant::now().unix_seconds();
    let mut tokens = Vec::new();
    for (user, role, link) in [
        ("admin", Role::ProviderAdmin, Link::None),
        ("dr1", Role::Clinician, Link::Clinician(clinician.clone())),
    ] {
        let id = UserId::parse(user).map_err(|e| anyhow::anyhow!("{e}"))?;
        tokens.push(
            state
                .identity
                .tokens
                .issue(&provider, &id, role, &link, now)
                .await?
                .token,
        );
    }
    let principals = [
        ("full API key", key.0.clone()),
        ("user token, provider_admin", tokens[0].clone()),
        ("user token, clinician (care relation)", tokens[1].clone()),
    ];

    let samples =
        || -> Vec<Vec<Duration>> { (0..3).map(|_| Vec::with_capacity(SAMPLES)).collect() };
    let mut in_process = samples();
    let mut over_http = samples();
    let clients: Vec<Client> = principals
        .iter()
        .map(|(_, credential)| Client::new(&running.base_url, credential))
        .collect();
    for (sample, mrn) in mrns.iter().enumerate() {
        // Who goes first changes each sample: the first read of a patient pays for its
        // pages coming into the cache.
        for turn in 0..principals.len() {
            let index = (sample + turn) % principals.len();
            let credential = &principals[index].1;
            let started = Instant::now();
            let actor = authorize(&state, credential).await?;
            let actor = state
                .emr
                .admit(&actor, mrn.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let page = state
                .visits
                .of_patient(
                    &actor.provider,
                    mrn,
                    VisitRange::default(),
                    Order::Forward,
                    100,
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            in_process[index].push(started.elapsed());
            std::hint::black_box(page);
        }
        for turn in 0..clients.len() {
            let index = (sample + turn) % clients.len();
            let client = &clients[index];
            let started = Instant::now();
            let page = client.get(&format!("/v1/patients/{mrn}/records")).await?;
            over_http[index].push(started.elapsed());
            std::hint::black_box(page);
        }
    }
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    println!(
        "\n| principal ({rows} visits, {SAMPLES} random patients) | in process p50 / p99 (check + reach + query) | over HTTP p50 / p99 |"
    );
    println!("|---|---|---|");
    for (index, (name, _)) in principals.iter().enumerate() {
        println!(
            "| {name} | {} / {} | {} / {} |",
            micros(&mut in_process[index], 0.50),
            micros(&mut in_process[index], 0.99),
            micros(&mut over_http[index], 0.50),
            micros(&mut over_http[index], 0.99)
        );
    }
    Ok(())
}

/// What the `Principal` extractor does for a credential: one key lookup for an API key,
/// a signature check for a token.
async fn authorize(state: &ward_api::AppState, credential: &str) -> anyhow::Result<Actor> {
    if ward_identity::looks_like_jwt(credential) {
        let person = state
            .identity
            .verify_bearer(credential)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the token did not verify"))?;
        Ok(Actor {
            link: person.link,
            ..Actor::provider_wide(
                person.provider,
                format!("user:{}", person.subject),
                Some(person.role),
                "password",
            )
        })
    } else {
        let key = state
            .tenants
            .verify_key(credential)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the key did not verify"))?;
        Ok(Actor::provider_wide(
            key.provider,
            format!("key:{}", key.key_id),
            Some(Role::ProviderAdmin),
            "api_key",
        ))
    }
}

//! Ingest on DynamoDB, the seed note's way against Ward's way, on the same rows and server
//! in one run (issue 3's benchmark). Run through `scripts/bench-dynamodb`, which starts
//! DynamoDB Local; a local server is not AWS (see docs/benchmarks.md).
//!
//! - seed: one conditional `PutItem` at a time, all of a provider's rows in one partition
//!   (`PK = providerId`, `SK = {mrn}#{dateTime}`), as seed note 000 wrote them;
//! - Ward: `put_many_if_absent` (concurrent conditional puts, 32 in flight) in 2,048-row
//!   batches on the patient-partition layout (`PROV#{p}#PAT#{mrn}` / `VISIT#{instant}`).

use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use ward_domain::key_layout;
use ward_domain::{Mrn, ProviderId, UtcInstant};
use ward_store::{Condition, Item, PK, SK, Table, Value};
use ward_store_dynamodb::DynamoTable;

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("WARD_DYNAMODB_ENDPOINT")
        .expect("set WARD_DYNAMODB_ENDPOINT (scripts/bench-dynamodb does)");
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "bench"))
        .build();
    let client = Client::from_conf(config);
    let provider = ProviderId::parse("PROV001").expect("provider id");
    let visits: Vec<(Mrn, UtcInstant, String)> = (0..rows)
        .map(|i| {
            let mrn = Mrn::parse(&format!("MRN{:07}", (i * 7919) % (rows / 4 + 1))).expect("mrn");
            let instant =
                UtcInstant::from_unix_nanos(1_600_000_000_000_000_000 + i as i128 * 1_000_000_000);
            (mrn, instant, format!("note {i}, with a comma"))
        })
        .collect();
    let item = |pk: String, sk: String, mrn: &Mrn, instant: UtcInstant, notes: &str| {
        let mut item = Item::new();
        item.insert(PK.into(), Value::S(pk));
        item.insert(SK.into(), Value::S(sk));
        item.insert("medicalRecordNumber".into(), Value::s(mrn.as_str()));
        item.insert("dateTime".into(), Value::S(instant.rfc3339_seconds()));
        item.insert("firstName".into(), Value::s("John"));
        item.insert("lastName".into(), Value::s("Doe"));
        item.insert("doctorsNotes".into(), Value::s(notes));
        item.insert("csvFile".into(), Value::s("PROV001/completed/bench.csv"));
        item
    };

    let seed_table = DynamoTable::new(client.clone(), "bench-seed");
    seed_table
        .create_table_if_missing()
        .await
        .expect("create seed table");
    let started = Instant::now();
    for (mrn, instant, notes) in &visits {
        let sk = format!("{mrn}#{}", instant.rfc3339_seconds());
        let row = item(provider.to_string(), sk, mrn, *instant, notes);
        match seed_table.put(row, Condition::NotExists).await {
            Ok(()) | Err(ward_store::StoreError::ConditionFailed { .. }) => {}
            Err(error) => panic!("seed put failed: {error}"),
        }
    }
    let seed_rate = rows as f64 / started.elapsed().as_secs_f64();

    let concurrency: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(32);
    let ward_table = DynamoTable::new(client, "bench-ward").with_put_concurrency(concurrency);
    ward_table
        .create_table_if_missing()
        .await
        .expect("create ward table");
    let pseudonyms = ward_domain::Pseudonyms::new(&[5; 32]);
    let started = Instant::now();
    let items: Vec<Item> = visits
        .iter()
        .map(|(mrn, instant, notes)| {
            item(
                key_layout::patient_pk(&provider, &pseudonyms.patient(&provider, mrn)),
                key_layout::visit_sk(*instant),
                mrn,
                *instant,
                notes,
            )
        })
        .collect();
    for batch in items.chunks(2048) {
        ward_table
            .put_many_if_absent(batch.to_vec())
            .await
            .expect("ward batch");
    }
    let ward_rate = rows as f64 / started.elapsed().as_secs_f64();
    println!(
        "| rows | seed way (one conditional PutItem at a time) | Ward's way (put_many_if_absent) | in flight | ratio |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {rows} | {seed_rate:.0} rows/s | {ward_rate:.0} rows/s | {concurrency} | {:.1}x |",
        ward_rate / seed_rate
    );
}

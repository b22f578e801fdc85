//! A crash (kill -9) during a re-wrap of data keys and during an erasure, on the AWS shape
//! (DynamoDB Local, moto's S3, SQS and KMS): running the same command again finishes
//! the work, and the data reads (or is gone) as it should. And a records table opened with
//! the wrong key store, or written before encryption, is refused before anything is read.

use std::process::Command;

use serde_json::{Value, json};
use ward::shape::AwsShape;

use crate::aws::{aws_resources, env, put_as_granted, raw_items, spawn_aws_app_on, start_aws};
use crate::helpers::{
    HEADER, app_for, count_after, kill_at_first_rewrap_progress, one_large_patient_csv, serve_child,
};

/// A settings file for `ward` processes on `aws`'s resources.
pub(crate) fn settings_file(aws: &AwsShape, dir: &std::path::Path) -> std::path::PathBuf {
    let moto = env("WARD_MOTO_ENDPOINT");
    let dynamodb = env("WARD_DYNAMODB_ENDPOINT");
    let text = format!(
        "[store]\nkind = \"dynamodb\"\ntable = \"{table}\"\n\
         [objects]\nkind = \"s3\"\nbucket = \"{bucket}\"\n\
         [events]\nkind = \"sqs\"\nqueue_url = \"{queue}\"\ndead_letter_queue_url = \"{dead}\"\nwait_seconds = 1\n\
         [keys]\nkms_key_id = \"{kms_key}\"\ntable = \"{keys_table}\"\n\
         [aws]\nregion = \"us-east-1\"\naccess_key_id = \"local\"\nsecret_access_key = \"local-secret\"\n\
         [aws.endpoints]\ndynamodb = \"{dynamodb}\"\ns3 = \"{moto}\"\nsqs = \"{moto}\"\nkms = \"{moto}\"\n",
        table = aws.table,
        bucket = aws.s3.bucket,
        queue = aws.queue_url,
        dead = aws.dead_letter_queue_url,
        kms_key = aws.kms_key_id,
        keys_table = aws.keys_table,
    );
    let path = dir.join("ward.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn ward(config: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ward"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("WARD_LOG", "error")
        .env_remove("WARD_KEYS_DIR");
    command
}

pub(crate) fn ward_ok(config: &std::path::Path, args: &[&str]) -> String {
    let output = ward(config, args).output().unwrap();
    assert!(
        output.status.success(),
        "ward {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Ingests `csv` on `aws` through S3 and SQS; the provider PROV001's API key.
async fn seed(aws: &AwsShape, csv: &str) -> String {
    let app = spawn_aws_app_on(aws.clone()).await;
    let grant = app.post_upload(&app.key).await;
    assert_eq!(put_as_granted(&app, &grant, csv).await, 200);
    let upload = app
        .wait_for_upload(grant["uploadId"].as_str().unwrap())
        .await;
    assert_eq!(upload["status"], "completed", "{upload}");
    let key = app.key.clone();
    app.stop().await;
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_re_wrap_on_the_aws_shape_then_rewrap_only_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let aws = aws_resources().await;
    // One patient per row: thousands of data keys to re-wrap, each a write to DynamoDB.
    let mut csv = HEADER.to_owned();
    for n in 0..1500 {
        csv.push_str(&format!(
            "MRN{n:05},2025-01-01T10:00:00Z,Ada,Lovelace,visit {n}\n"
        ));
    }
    let key = seed(&aws, &csv).await;
    let config = settings_file(&aws, dir.path());
    let status = ward_ok(&config, &["keys", "status"]);
    let made = count_after(&status, "PROV001          data keys v1: ");
    assert!(made >= 1500, "{status}");

    kill_at_first_rewrap_progress(ward(&config, &["keys", "rotate"]));
    let status = ward_ok(&config, &["keys", "status"]);
    assert!(status.contains("key versions: 1..=2"), "{status}");
    let (old, new) = (
        count_after(&status, "PROV001          data keys v1: "),
        count_after(&status, ", v2: "),
    );
    assert!(old > 0 && new >= 1000, "the kill landed mid-way: {status}");
    assert_eq!(old + new, made, "{status}");

    let finished = ward_ok(&config, &["keys", "rotate", "--rewrap-only"]);
    assert!(
        finished.contains(&format!("PROV001          {old} data keys re-wrapped")),
        "{finished}"
    );
    let status = ward_ok(&config, &["keys", "status"]);
    assert!(
        status.contains(&format!("PROV001          data keys v2: {made}\n")),
        "{status}"
    );
    // Every patient's records read under its re-wrapped key.
    let (running, _data) = start_aws(aws).await;
    let app = app_for(running, key);
    for n in [0, 999, 1000, 1499] {
        let (status, records) = app
            .get(&format!("/v1/patients/MRN{n:05}/records"), &app.key)
            .await;
        assert_eq!(status, 200, "{records}");
        assert_eq!(records["records"][0]["doctorsNotes"], format!("visit {n}"));
    }
    app.stop().await;
}

/// The erasure's tombstone state and the items left in the patient's partition, read raw
/// from the records table (neither is sealed); the patient is PROV001's only erasure.
async fn erasure_in_dynamodb(table: &str) -> (Option<String>, usize) {
    let items = raw_items(table).await;
    let text = |item: &std::collections::HashMap<String, _>, name: &str| {
        item.get(name)
            .and_then(|value: &ward_aws::aws_sdk_dynamodb::types::AttributeValue| value.as_s().ok())
            .cloned()
    };
    let Some(tombstone) = items.iter().find(|item| {
        text(item, "PK").as_deref() == Some("PROV#PROV001#ERASED")
            && text(item, "SK").is_some_and(|sk| sk.starts_with("PAT#"))
    }) else {
        return (None, 0);
    };
    let patient = text(tombstone, "SK").unwrap();
    let partition = format!("PROV#PROV001#{patient}");
    let left = items
        .iter()
        .filter(|item| text(item, "PK").as_deref() == Some(partition.as_str()))
        .count();
    (text(tombstone, "state"), left)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_erasure_on_the_aws_shape_then_running_it_again_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = one_large_patient_csv(2000);
    let reason = json!({"reason": "patient request"});
    let mut delay_ms = 400u64;
    let mut seen = Vec::new();
    // A kill that lands before the erasure began or after it ended is tried again on a
    // freshly seeded table, sooner or later.
    let (aws, key) = loop {
        let aws = aws_resources().await;
        let key = seed(&aws, &csv).await;
        let config = settings_file(&aws, dir.path());
        let (mut child, base) = serve_child(ward(&config, &["serve"])).await;
        let http = reqwest::Client::new();
        let request = http
            .delete(format!("{base}/v1/patients/MRN1"))
            .bearer_auth(&key)
            .json(&reason)
            .send();
        let answered =
            match tokio::time::timeout(std::time::Duration::from_millis(delay_ms), request).await {
                Ok(Ok(response)) => Some(response.status().as_u16()),
                _ => None,
            };
        child.kill().unwrap(); // SIGKILL
        assert!(!child.wait().unwrap().success());
        let (state, left) = erasure_in_dynamodb(&aws.table).await;
        seen.push((delay_ms, answered, state.clone(), left));
        match state.as_deref() {
            Some("ERASED") => delay_ms = (delay_ms / 2).max(1),
            None => delay_ms *= 2,
            Some(_) => break (aws, key),
        }
        assert!(seen.len() < 8, "no kill landed mid-erasure: {seen:?}");
    };

    // Started again: the patient already reads as gone, and the erasure run again ends it.
    let table = aws.table.clone();
    let (running, _data) = start_aws(aws).await;
    let app = app_for(running, key);
    let (status, _) = app.get("/v1/patients/MRN1/records", &app.key).await;
    assert_eq!(status, 410, "mid-erasure, after {seen:?}");
    let done = app
        .http
        .delete(format!("{}/v1/patients/MRN1", app.base_url))
        .bearer_auth(&app.key)
        .json(&reason)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 200);
    let done: Value = done.json().await.unwrap();
    assert!(done["itemsRemoved"].as_u64().is_some(), "{done}");
    let (status, records) = app.get("/v1/patients/MRN2/records", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(records["records"].as_array().unwrap().len(), 5);
    app.stop().await;
    assert_eq!(
        erasure_in_dynamodb(&table).await,
        (Some("ERASED".to_owned()), 0),
        "after {seen:?}"
    );
}

/// Why the AWS shape on `aws` does not start.
async fn refusal(aws: AwsShape) -> String {
    let options = crate::helpers::Options::default();
    let data_dir = tempfile::tempdir().unwrap();
    let started = ward::server::start(ward::server::ServerOptions {
        data_dir: data_dir.path().to_path_buf(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        api: options.api,
        ingest: options.ingest,
        operator_key: Default::default(),
        retention: Default::default(),
        store: Default::default(),
        shape: ward::shape::Shape::Aws(Box::new(aws)),
        table_layer: None,
    })
    .await;
    match started {
        Ok(running) => {
            running.stop().await.unwrap();
            panic!("the AWS shape started")
        }
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_table_with_an_empty_or_another_key_store_or_unsealed_is_refused() {
    let aws = aws_resources().await;
    let (running, _data) = start_aws(aws.clone()).await;
    running.stop().await.unwrap();

    // An empty key store: refused, and nothing made in it.
    let empty = AwsShape {
        keys_table: format!("{}-empty", aws.keys_table),
        ..aws.clone()
    };
    let refused = refusal(empty.clone()).await;
    assert!(refused.contains("the key store is empty"), "{refused}");
    assert!(raw_items(&empty.keys_table).await.is_empty());

    // Another deployment's key store: its keys do not match the table's record.
    let other = aws_resources().await;
    let (running, _other_data) = start_aws(other.clone()).await;
    running.stop().await.unwrap();
    let refused = refusal(AwsShape {
        keys_table: other.keys_table.clone(),
        kms_key_id: other.kms_key_id.clone(),
        ..aws.clone()
    })
    .await;
    assert!(
        refused.contains(&format!(
            "the key-store table {} (with the KMS key {}) is not the one the DynamoDB table {} was written with",
            other.keys_table, other.kms_key_id, aws.table
        )),
        "{refused}"
    );

    // A table an earlier Ward wrote without encryption (its upload-signing secret, no
    // protection record).
    let unsealed = aws_resources().await;
    let table =
        ward_store_dynamodb::DynamoTable::new(unsealed.dynamodb.dynamodb().await, &unsealed.table);
    table.create_table_if_missing().await.unwrap();
    let mut secret = ward_store::Item::new();
    secret.insert("PK".into(), ward_store::Value::s("PLATFORM#SECRETS"));
    secret.insert("SK".into(), ward_store::Value::s("UPLOAD_SIGNING"));
    secret.insert("secret".into(), ward_store::Value::B(vec![1; 32]));
    ward_store::Table::put(&table, secret, ward_store::Condition::None)
        .await
        .unwrap();
    let refused = refusal(unsealed.clone()).await;
    assert!(
        refused.contains(&format!(
            "the DynamoDB table {} was written by a Ward without encryption at rest",
            unsealed.table
        )),
        "{refused}"
    );
}

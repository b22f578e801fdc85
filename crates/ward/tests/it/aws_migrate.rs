//! `ward migrate --config FILE` on the AWS shape (DynamoDB Local, moto's S3 and KMS): a
//! table and bucket holding what the last Ward before encryption at rest wrote (the
//! fixture's items and objects, the same key layout in both shapes) are refused, then
//! encrypted in place by a migration killed (SIGKILL) mid-way and run again: afterwards no
//! MRN, name, note or email is in any item or object path, and everything reads through
//! the API as before.

use object_store::{ObjectStore as _, ObjectStoreExt as _};
use serde_json::json;
use ward_store::{PK, SK, Table as _};
use ward_store_dynamodb::DynamoTable;

use crate::aws::{aws_resources, plaintext_in, raw_bytes, raw_items, start_aws};
use crate::aws_crash::{settings_file, ward, ward_ok};
use crate::helpers::{app_for, kill_at_first_line};
use crate::migrate::{files, old_items, secrets_of, unpack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_written_before_encryption_is_encrypted_in_place_even_when_killed_mid_way() {
    let dir = tempfile::tempdir().unwrap();
    let (_fixture, data) = unpack();
    let old = old_items(&data);
    let secrets = secrets_of(&old);
    let aws = aws_resources().await;
    // The old deployment: its table and bucket as that version left them; and the key
    // store the new version's stack adds.
    let raw = DynamoTable::new(aws.dynamodb.dynamodb().await, &aws.table);
    raw.create_table_if_missing().await.unwrap();
    DynamoTable::new(aws.dynamodb.dynamodb().await, &aws.keys_table)
        .create_table_if_missing()
        .await
        .unwrap();
    for chunk in old.chunks(100) {
        raw.put_many_if_absent(chunk.to_vec()).await.unwrap();
    }
    let s3 = ward_aws::s3_object_store(&aws.s3).unwrap();
    let objects = data.join("objects");
    let mut documents = Vec::new();
    for file in files(&objects) {
        let path = file
            .strip_prefix(&objects)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = std::fs::read(&file).unwrap();
        if path.contains("/documents/MRN0000001/") {
            documents.push(bytes.clone());
        }
        s3.put(
            &object_store::path::Path::parse(&path).unwrap(),
            bytes.into(),
        )
        .await
        .unwrap();
    }
    assert!(!documents.is_empty());
    let config = settings_file(&aws, dir.path());

    // Refused, naming the command.
    let refused = ward(&config, &["keys", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("run `ward migrate --config FILE`"),
        "{stderr}"
    );

    // Killed mid-way, then run again to the end.
    kill_at_first_line(
        ward(&config, &["migrate", "--page-items", "10"]),
        "items encrypted:",
    );
    let halfway = raw_items(&aws.table).await;
    assert!(
        !plaintext_in(&raw_bytes(&halfway), &["MRN0000040"]).is_empty(),
        "the kill came after the end"
    );
    let said = ward_ok(&config, &["migrate", "--page-items", "10"]);
    assert!(
        said.contains(&format!("encrypted the DynamoDB table {}", aws.table)),
        "{said}"
    );
    let again = ward_ok(&config, &["migrate"]);
    assert!(again.contains("is encrypted at rest already"), "{again}");

    // No patient data left in any item, nor an MRN in any object's path.
    let items = raw_items(&aws.table).await;
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let leaks = plaintext_in(&raw_bytes(&items), &secrets);
    assert!(leaks.is_empty(), "plaintext left in the table: {leaks:?}");
    let paths: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(s3.list(None))
        .await
        .unwrap()
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect();
    let named: Vec<&String> = paths
        .iter()
        .filter(|path| secrets.iter().any(|secret| path.contains(secret)))
        .collect();
    assert!(named.is_empty(), "object paths naming a patient: {named:?}");
    assert_eq!(paths.len(), files(&objects).len());

    // Served, it reads as before.
    let (running, _data_dir) = start_aws(aws.clone()).await;
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let key = ward_ports::Tenants::new(running.state.table.clone())
        .issue_full_key(&provider, false)
        .await
        .unwrap()
        .0;
    let app = app_for(running, key.clone());
    let visits = old
        .iter()
        .filter(|item| {
            item.get(PK).and_then(ward_store::Value::as_s) == Some("PROV#PROV001#PAT#MRN0000040")
                && item
                    .get(SK)
                    .and_then(ward_store::Value::as_s)
                    .is_some_and(|sk| sk.starts_with("VISIT#"))
        })
        .count();
    let (status, records) = app.get_patient_records("MRN0000040", "").await;
    assert_eq!(status, 200, "{records}");
    assert_eq!(records["records"].as_array().unwrap().len(), visits);
    let (status, patient) = app.get("/v1/patients/MRN0000005", &key).await;
    assert_eq!(status, 200, "{patient}");
    let email = patient["email"].as_str().unwrap().to_owned();
    let (status, found) = app.get(&format!("/v1/patients?email={email}"), &key).await;
    assert_eq!(
        (status, &found["items"][0]["mrn"]),
        (200, &json!("MRN0000005")),
        "{found}"
    );
    let (status, listed) = app.get("/v1/clinicians/DR001/patients", &key).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"].as_array().unwrap().len(), 5, "{listed}");
    let (status, docs) = app.get("/v1/patients/MRN0000001/documents", &key).await;
    assert_eq!(status, 200, "{docs}");
    let id = docs["items"][0]["id"].as_str().unwrap();
    // The document's bytes, from the S3 object at its new path (a redirect to it).
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let content = no_redirect
        .get(format!(
            "{}/v1/patients/MRN0000001/documents/{id}/content",
            app.base_url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status().as_u16(), 303);
    let location = content.headers()["location"].to_str().unwrap().to_owned();
    let download = app.http.get(&location).send().await.unwrap();
    assert_eq!(download.status().as_u16(), 200);
    let bytes = download.bytes().await.unwrap();
    assert!(
        documents.iter().any(|old| old[..] == bytes[..]),
        "other bytes"
    );
    app.stop().await;
}

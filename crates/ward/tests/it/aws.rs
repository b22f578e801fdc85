//! The AWS shape end to end, against local servers started by `scripts/test`: DynamoDB
//! Local (`WARD_DYNAMODB_ENDPOINT`) for the table, moto (`WARD_MOTO_ENDPOINT`) for S3 and
//! SQS, because it delivers the bucket's notifications to the queue. The same assertions as
//! the embedded end-to-end test. (Signature checks of the pre-signed URLs run against
//! s3s-fs in ward-aws's tests: moto checks none.)

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use ward::server::{self, ServerOptions};
use ward::shape::{AwsShape, Shape};
use ward_aws::aws_sdk_sqs::types::QueueAttributeName;
use ward_aws::{AwsConnection, S3Settings};
use ward_domain::ProviderId;

use crate::helpers::{OPERATOR_KEY, Options, TestApp, counts};

pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test (it starts the local AWS servers)")
    })
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// A bucket whose `*.csv` creations notify a fresh queue (with a dead-letter queue after 3
/// receives), as deploy/aws/template.yaml sets them up.
pub(crate) async fn aws_resources() -> AwsShape {
    let moto = env("WARD_MOTO_ENDPOINT");
    let sqs = AwsConnection::local(&moto);
    let client = sqs.sqs().await;
    let name = unique("ward-e2e");
    let arn_of = |url: String| {
        let client = client.clone();
        async move {
            client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .unwrap()
        }
    };
    let dead_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let dead_arn = arn_of(dead_url.clone()).await;
    let queue_url = client
        .create_queue()
        .queue_name(&name)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"3"}}"#),
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queue_arn = arn_of(queue_url.clone()).await;
    let http = reqwest::Client::new();
    let bucket = name.clone();
    let created = http.put(format!("{moto}/{bucket}")).send().await.unwrap();
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    let notification = format!(
        "<NotificationConfiguration><QueueConfiguration><Queue>{queue_arn}</Queue>\
         <Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>suffix</Name>\
         <Value>.csv</Value></FilterRule></S3Key></Filter></QueueConfiguration>\
         <QueueConfiguration><Queue>{queue_arn}</Queue>\
         <Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>suffix</Name>\
         <Value>.json</Value></FilterRule></S3Key></Filter></QueueConfiguration>\
         </NotificationConfiguration>"
    );
    let configured = http
        .put(format!("{moto}/{bucket}?notification"))
        .body(notification)
        .send()
        .await
        .unwrap();
    assert!(
        configured.status().is_success(),
        "notification: {}",
        configured.status()
    );
    AwsShape {
        table: unique("ward-e2e"),
        create_table: true,
        dynamodb: AwsConnection::local(&env("WARD_DYNAMODB_ENDPOINT")),
        s3: S3Settings {
            bucket,
            connection: AwsConnection::local(&moto),
        },
        queue_url,
        dead_letter_queue_url: dead_url,
        sqs,
        wait: Duration::from_secs(1),
        keys_table: unique("ward-e2e-keys"),
        kms_key_id: kms_key(&moto).await,
        kms: AwsConnection::local(&moto),
        key_cache: Duration::from_secs(300),
    }
}

/// A new symmetric key in moto's KMS, as the template's `DataKey`.
pub(crate) async fn kms_key(moto: &str) -> String {
    AwsConnection::local(moto)
        .kms()
        .await
        .create_key()
        .description("ward e2e")
        .send()
        .await
        .expect("create a KMS key")
        .key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned()
}

pub(crate) async fn spawn_aws_app() -> TestApp {
    spawn_aws_app_on(aws_resources().await).await
}

/// Every item of the DynamoDB table `table`, raw: what an operator of the table sees.
pub(crate) async fn raw_items(
    table: &str,
) -> Vec<std::collections::HashMap<String, ward_aws::aws_sdk_dynamodb::types::AttributeValue>> {
    let client = AwsConnection::local(&env("WARD_DYNAMODB_ENDPOINT"))
        .dynamodb()
        .await;
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(last) => start = Some(last.clone()),
            None => return items,
        }
    }
}

/// The bytes of every string, number and binary value (and attribute name) of `items`.
pub(crate) fn raw_bytes(
    items: &[std::collections::HashMap<
        String,
        ward_aws::aws_sdk_dynamodb::types::AttributeValue,
    >],
) -> Vec<u8> {
    use ward_aws::aws_sdk_dynamodb::types::AttributeValue;
    fn add(value: &AttributeValue, out: &mut Vec<u8>) {
        match value {
            AttributeValue::S(text) | AttributeValue::N(text) => out.extend(text.as_bytes()),
            AttributeValue::B(blob) => out.extend(blob.as_ref()),
            AttributeValue::L(list) => list.iter().for_each(|v| add(v, out)),
            AttributeValue::M(map) => map.iter().for_each(|(name, v)| {
                out.extend(name.as_bytes());
                add(v, out);
            }),
            AttributeValue::Ss(texts) => texts.iter().for_each(|t| out.extend(t.as_bytes())),
            _ => {}
        }
        out.push(0);
    }
    let mut out = Vec::new();
    for item in items {
        for (name, value) in item {
            out.extend(name.as_bytes());
            add(value, &mut out);
        }
    }
    out
}

pub(crate) fn plaintext_in(bytes: &[u8], secrets: &[&str]) -> Vec<String> {
    secrets
        .iter()
        .filter(|secret| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
        .map(|secret| (*secret).to_owned())
        .collect()
}

/// The data keys of `provider` in the key-store table `keys_table`.
pub(crate) async fn data_keys_of(keys_table: &str, provider: &str) -> usize {
    raw_items(keys_table)
        .await
        .iter()
        .filter(|item| {
            item.get("PK").and_then(|pk| pk.as_s().ok()) == Some(&format!("DEK#{provider}"))
        })
        .count()
}

/// A server in the AWS shape on `aws`, in process.
pub(crate) async fn start_aws(aws: AwsShape) -> (server::RunningServer, tempfile::TempDir) {
    let options = Options::default();
    let data_dir = tempfile::tempdir().unwrap();
    let running = server::start(ServerOptions {
        data_dir: data_dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        api: options.api,
        ingest: options.ingest,
        operator_key: ward::config::Secret::new(Some(OPERATOR_KEY.into())),
        retention: Default::default(),
        store: Default::default(),
        shape: Shape::Aws(Box::new(aws)),
        table_layer: None,
    })
    .await
    .expect("server starts in the AWS shape");
    (running, data_dir)
}

pub(crate) async fn spawn_aws_app_on(aws: AwsShape) -> TestApp {
    let (running, data_dir) = start_aws(aws).await;
    let table = running.state.table.clone();
    let mut keys = Vec::new();
    for id in ["PROV001", "PROV002"] {
        let key = ward_ports::Tenants::new(table.clone())
            .create(&ProviderId::parse(id).unwrap(), None)
            .await
            .unwrap();
        keys.push(key.0);
    }
    TestApp {
        base_url: running.base_url.clone(),
        other_key: keys.pop().unwrap(),
        key: keys.pop().unwrap(),
        http: reqwest::Client::new(),
        running: Some(running),
        data_dir,
    }
}

/// PUTs the file exactly as the grant says (URL, method, signed headers).
pub(crate) async fn put_as_granted(app: &TestApp, grant: &Value, body: &str) -> u16 {
    assert_eq!(grant["method"], "PUT");
    let mut request = app
        .http
        .put(grant["url"].as_str().unwrap())
        .body(body.to_owned());
    for (name, value) in grant["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_shape_takes_a_presigned_s3_upload_through_sqs_into_dynamodb() {
    let aws = aws_resources().await;
    let (records_table, keys_table) = (aws.table.clone(), aws.keys_table.clone());
    let app = spawn_aws_app_on(aws).await;
    let grant = app.post_upload(&app.key).await;
    let url = grant["url"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-Signature="),
        "an S3 pre-signed URL: {url}"
    );
    assert_eq!(grant["headers"]["if-none-match"], "*", "{grant}");
    let upload_id = grant["uploadId"].as_str().unwrap().to_owned();
    let csv = crate::api::fixture();
    assert_eq!(put_as_granted(&app, &grant, &csv).await, 200);
    // Create-only: the same URL cannot replace the file.
    assert_eq!(
        put_as_granted(&app, &grant, "medical_record_number\n").await,
        412
    );

    let upload = app.wait_for_upload(&upload_id).await;
    assert_eq!(upload["status"], "completed", "{upload}");
    assert_eq!(counts(&upload), [8, 2, 1, 1, 4]);
    let lines: Vec<u64> = upload["report"]["firstProblems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![7, 8, 9, 10, 11]);
    let (status, errors) = app
        .get(&format!("/v1/uploads/{upload_id}/errors.csv"), &app.key)
        .await;
    assert_eq!(status, 200);
    let errors = errors.as_str().unwrap();
    assert_eq!(errors.lines().count(), 6, "{errors}");
    assert!(errors.contains(",'=1+2,"), "{errors}");

    // Records from DynamoDB, in time order, naming their file.
    let (status, page) = app.get_patient_records("MRN1", "").await;
    assert_eq!(status, 200, "{page}");
    let times: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dateTime"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        vec!["2024-01-02T08:00:00Z", "2025-03-26T10:30:00-07:00"]
    );
    assert_eq!(
        page["records"][0]["csvFile"],
        format!("PROV001/completed/{upload_id}.csv")
    );

    // The same file again inserts nothing.
    let again = app.post_upload(&app.key).await;
    assert_eq!(put_as_granted(&app, &again, &csv).await, 200);
    let again = app
        .wait_for_upload(again["uploadId"].as_str().unwrap())
        .await;
    assert_eq!(counts(&again), [8, 0, 3, 1, 4], "{again}");

    // Sealed in DynamoDB: no MRN, name or note in any key, index key or value of the
    // records table or the key store; its data keys are wrapped, in the key store only.
    let items = raw_items(&records_table).await;
    assert!(items.len() > 10, "{}", items.len());
    let secrets = [
        "MRN1",
        "John",
        "fever, mild",
        "earlier visit",
        "changed notes",
    ];
    assert_eq!(
        plaintext_in(&raw_bytes(&items), &secrets),
        Vec::<String>::new()
    );
    // (The search finds what is there: provider ids are not patient data.)
    assert_eq!(plaintext_in(&raw_bytes(&items), &["PROV001"]), ["PROV001"]);
    let keys = raw_items(&keys_table).await;
    assert_eq!(
        plaintext_in(&raw_bytes(&keys), &secrets),
        Vec::<String>::new()
    );
    assert!(data_keys_of(&keys_table, "PROV001").await > 0);
    assert!(
        !items
            .iter()
            .any(|item| item["PK"].as_s().unwrap().starts_with("DEK#")),
        "no data key in the records table"
    );

    // Another provider learns nothing.
    for path in [
        format!("/v1/uploads/{upload_id}"),
        format!("/v1/uploads/{upload_id}/errors.csv"),
        format!("/v1/uploads/{upload_id}/records"),
    ] {
        assert_eq!(app.get(&path, &app.other_key).await.0, 404, "{path}");
    }
    let (status, page) = app.get("/v1/patients/MRN1/records", &app.other_key).await;
    assert_eq!(status, 200);
    assert_eq!(page["records"].as_array().unwrap().len(), 0, "{page}");
    // The embedded shape's signed endpoint is not there.
    let (status, _) = app
        .request(
            reqwest::Method::PUT,
            &format!("/v1/upload-objects/PROV001/{upload_id}?expires=1&signature=00"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::needless_update)] // the event types' catch-all fields, behind a feature
async fn the_lambda_worker_processes_sqs_events_retries_failures_and_dead_letters_the_last() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use object_store::ObjectStoreExt;
    use ward_ports::{JobQueue, Upload, UploadStatus};

    let aws = aws_resources().await;
    let dead_letters = ward_aws::SqsJobQueue::new(
        aws.sqs.sqs().await,
        &aws.queue_url,
        &aws.dead_letter_queue_url,
        Duration::ZERO,
    );
    let backend = ward::shape::open(
        &Shape::Aws(Box::new(aws)),
        std::path::Path::new("/nonexistent"),
        ward_ingest::IngestSettings {
            max_file_bytes: 4096,
            ..Options::default().ingest
        },
        &Default::default(),
    )
    .await
    .unwrap();
    let ctx = backend.ctx.clone();
    let provider = ProviderId::parse("PROV001").unwrap();
    ward_ports::Tenants::new(backend.table.clone())
        .create(&provider, None)
        .await
        .unwrap();
    let now = ward_domain::UtcInstant::now();
    let id = ward_domain::UploadId::new(now, 42);
    ctx.uploads
        .create(&Upload::pending(provider.clone(), id.clone(), now, 900))
        .await
        .unwrap();
    let key = format!("PROV001/uploaded/{id}.csv");
    ctx.objects
        .put(
            &key.as_str().into(),
            crate::api::fixture().into_bytes().into(),
        )
        .await
        .unwrap();
    let message = |id: &str, body: String, receives: u32| SqsMessage {
        message_id: Some(id.into()),
        body: Some(body),
        attributes: [("ApproximateReceiveCount".to_owned(), receives.to_string())].into(),
        ..Default::default()
    };
    let notification = |key: &str| {
        format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"{}","size":10}}}}}}]}}"#,
            key.replace('/', "%2F")
        )
    };
    let missing = format!(
        "PROV001/uploaded/{}.csv",
        ward_domain::UploadId::new(now, 7)
    );
    let event = SqsEvent {
        records: vec![
            message("good", notification(&key), 1),
            message("missing-first-try", notification(&missing), 1),
            message("garbage", "\u{1}not json".into(), 1),
        ],
        ..Default::default()
    };
    let response = ward::lambda::handle_sqs_event(&ctx, &dead_letters, event).await;
    let mut failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    failed.sort();
    assert_eq!(failed, vec!["garbage", "missing-first-try"]);
    let upload = ctx.uploads.get(&provider, &id).await.unwrap().unwrap();
    assert_eq!(upload.status, UploadStatus::Completed);
    let report = upload.report.unwrap();
    assert_eq!(
        [
            report.counts.rows,
            report.counts.inserted,
            report.counts.duplicate,
            report.counts.conflict,
            report.counts.rejected
        ],
        [8, 2, 1, 1, 4]
    );

    // A file over the limit (which a pre-signed S3 PUT cannot stop) fails as a whole.
    let big = ward_domain::UploadId::new(now, 43);
    ctx.uploads
        .create(&Upload::pending(provider.clone(), big.clone(), now, 900))
        .await
        .unwrap();
    let big_key = format!("PROV001/uploaded/{big}.csv");
    let mut body = crate::helpers::HEADER.to_owned();
    while body.len() <= 4096 {
        body.push_str("MRN9,2025-01-01T00:00:00Z,A,B,padding padding padding\n");
    }
    ctx.objects
        .put(&big_key.as_str().into(), body.into_bytes().into())
        .await
        .unwrap();
    let event = SqsEvent {
        records: vec![message("big", notification(&big_key), 1)],
        ..Default::default()
    };
    let response = ward::lambda::handle_sqs_event(&ctx, &dead_letters, event).await;
    assert!(response.batch_item_failures.is_empty());
    let upload = ctx.uploads.get(&provider, &big).await.unwrap().unwrap();
    assert_eq!(upload.status, UploadStatus::Failed);
    let failure = upload.report.unwrap().failure.unwrap();
    assert!(
        failure.contains("more than the 4096-byte limit"),
        "{failure}"
    );

    // The last attempt: dead-lettered with its reason, not retried.
    let event = SqsEvent {
        records: vec![message("missing-last-try", notification(&missing), 3)],
        ..Default::default()
    };
    let response = ward::lambda::handle_sqs_event(&ctx, &dead_letters, event).await;
    assert!(response.batch_item_failures.is_empty());
    let dead = dead_letters.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].reason.contains("does not exist"),
        "{}",
        dead[0].reason
    );
}

/// Facility analytics in the AWS shape: a JSON file through an S3 pre-signed URL (signed
/// for `application/json`), its notification through SQS, the dataset as Parquet in S3,
/// the run's state in DynamoDB, the results in S3.
#[cfg(feature = "analytics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facility_analytics_run_on_s3_sqs_and_dynamodb() {
    let app = spawn_aws_app().await;
    let (status, grant) = {
        let response = app
            .http
            .post(format!("{}/v1/uploads", app.base_url))
            .bearer_auth(&app.key)
            .json(&serde_json::json!({"kind": "facilities"}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["headers"]["content-type"], "application/json");
    let facilities = r#"[{"facility_id": "FAC001", "location": {"state": "TX"}, "employee_count": 250,
        "accreditations": [{"accreditation_body": "JC", "accreditation_id": "J1", "valid_until": "2026-03-15"},
                           {"accreditation_body": "CARF", "accreditation_id": "C1", "valid_until": "2025-06-30"}]},
       {"facility_id": "FAC002", "location": {"state": "TX"}, "employee_count": 40},
       {"facility_id": "FAC003", "location": {"state": "CA"}, "employee_count": 120}]"#;
    assert_eq!(put_as_granted(&app, &grant, facilities).await, 200);
    let upload = app
        .wait_for_upload(grant["uploadId"].as_str().unwrap())
        .await;
    assert_eq!(upload["status"], "completed", "{upload}");
    assert_eq!(upload["report"]["counts"]["inserted"], 3);
    let run_id = upload["report"]["analyticsRun"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut run = Value::Null;
    for _ in 0..600 {
        let (_, body) = app
            .get(&format!("/v1/analytics/runs/{run_id}"), &app.key)
            .await;
        if matches!(body["status"].as_str(), Some("completed" | "failed")) {
            run = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run["status"], "completed", "{run}");
    let (status, document) = app
        .get(run["results"][0]["json"].as_str().unwrap(), &app.key)
        .await;
    assert_eq!(status, 200);
    assert_eq!(document["results"][1]["state"], "TX");
    assert_eq!(document["results"][1]["total_employees"], 290);
    let (status, _) = app
        .get(&format!("/v1/analytics/runs/{run_id}"), &app.other_key)
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emr_documents_go_to_s3_through_presigned_urls_and_are_checked_there() {
    use sha2::Digest;
    let aws = aws_resources().await;
    let (records_table, keys_table) = (aws.table.clone(), aws.keys_table.clone());
    let app = spawn_aws_app_on(aws).await;
    let post = |path: &str, body: Value| {
        app.http
            .post(format!("{}{path}", app.base_url))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
    };
    let made = post(
        "/v1/patients",
        serde_json::json!({"mrn": "MRN1", "firstName": "Ann", "lastName": "Lee",
            "dateOfBirth": "1985-06-15", "sex": "FEMALE", "clinic": "NORTH"}),
    )
    .await
    .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let bytes = "%PDF-1.4 scan";
    let sha = hex::encode(sha2::Sha256::digest(bytes.as_bytes()));
    let made = post(
        "/v1/patients/MRN1/documents",
        serde_json::json!({"type": "IMAGING", "title": "scan", "fileName": "scan.pdf",
            "mediaType": "application/pdf", "sizeBytes": bytes.len(), "sha256": sha}),
    )
    .await
    .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let document: Value = made.json().await.unwrap();
    let grant = &document["upload"];
    assert!(
        grant["url"].as_str().unwrap().contains("X-Amz-Signature"),
        "{grant}"
    );
    let id = document["id"].as_str().unwrap();
    let check = format!("/v1/patients/MRN1/documents/{id}/check");
    let early = post(&check, Value::Null).await.unwrap();
    assert_eq!(early.status().as_u16(), 409, "nothing uploaded yet");
    assert_eq!(put_as_granted(&app, grant, bytes).await, 200);
    assert_eq!(
        put_as_granted(&app, grant, bytes).await,
        412,
        "S3 refuses a second PUT"
    );
    let checked: Value = post(&check, Value::Null)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(checked["status"], "AVAILABLE", "{checked}");
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let content = no_redirect
        .get(format!(
            "{}/v1/patients/MRN1/documents/{id}/content",
            app.base_url
        ))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status().as_u16(), 303);
    let location = content.headers()["location"].to_str().unwrap().to_owned();
    let download = app.http.get(&location).send().await.unwrap();
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.text().await.unwrap(), bytes);
    let (status, _) = app
        .get(&format!("/v1/patients/MRN1/documents/{id}"), &app.other_key)
        .await;
    assert_eq!(status, 404);

    let items = raw_items(&records_table).await;
    assert_eq!(
        plaintext_in(&raw_bytes(&items), &["MRN1", "1985-06-15", "scan.pdf"]),
        Vec::<String>::new()
    );

    // Erased on DynamoDB and S3: the items and the object go, every read answers 410,
    // and the patient's data key is destroyed in the key store.
    let keys_before = data_keys_of(&keys_table, "PROV001").await;
    let erased = app
        .http
        .delete(format!("{}/v1/patients/MRN1", app.base_url))
        .bearer_auth(&app.key)
        .json(&serde_json::json!({"reason": "patient request"}))
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status().as_u16(), 200);
    let erased: Value = erased.json().await.unwrap();
    assert_eq!(erased["documentsRemoved"], 1, "{erased}");
    assert!(erased["itemsRemoved"].as_u64().unwrap() >= 2, "{erased}");
    for path in [
        "/v1/patients/MRN1".to_owned(),
        format!("/v1/patients/MRN1/documents/{id}"),
        "/v1/patients/MRN1/records".to_owned(),
    ] {
        let (status, _) = app.get(&path, &app.key).await;
        assert_eq!(status, 410, "{path}");
    }
    let download = app.http.get(&location).send().await.unwrap();
    assert_eq!(download.status().as_u16(), 404, "the S3 object stays");
    assert!(
        data_keys_of(&keys_table, "PROV001").await < keys_before,
        "the patient's data key is destroyed"
    );
    app.stop().await;
}

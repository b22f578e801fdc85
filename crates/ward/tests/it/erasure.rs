//! Erasure through HTTP: `DELETE /v1/patients/{mrn}` by the provider's administrator,
//! with a reason; afterwards every read and write of the patient answers 410, its visits,
//! EMR items, email claim and document object are gone, a re-uploaded row of it is
//! reported, the erasure is audited by pseudonym, and nothing of any other patient or
//! provider changes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::emr::{flush_audit, patient, seed, send, stored_document};
use crate::helpers::{HEADER, Options, TestApp, app_for, counts, spawn_app, start_server};

fn visits() -> String {
    let mut csv = HEADER.to_owned();
    for (mrn, day) in [("MRN1", 1), ("MRN1", 2), ("MRN1", 3), ("MRN2", 1)] {
        csv.push_str(&format!(
            "{mrn},2025-03-0{day}T10:00:00Z,Ann,Lee,visit {day} of {mrn}\n"
        ));
    }
    csv
}

async fn erase(app: &TestApp, mrn: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
    let sent = send(
        app,
        Method::DELETE,
        &format!("/v1/patients/{mrn}"),
        key,
        body,
        &[],
    )
    .await;
    (sent.status, sent.body)
}

/// A document of MRN1 with its bytes uploaded; its object's path on disk.
async fn document(app: &TestApp) -> std::path::PathBuf {
    let id = stored_document(app, b"%PDF-1.4 an ECG of Ann Lee").await;
    app.data_path().join("objects").join(format!(
        "PROV001/documents/{}/{id}",
        app.patient_key("PROV001", "MRN1")
    ))
}

#[tokio::test]
async fn an_erased_patient_is_gone_for_good_and_nothing_else_changes() {
    let mut app = spawn_app().await;
    let first = app.upload_and_wait(visits().as_bytes()).await;
    assert_eq!(counts(&first), [4, 4, 0, 0, 0]);
    seed(&app).await;
    let object = document(&app).await;
    assert!(object.exists(), "{}", object.display());
    let document_key = sealing_key(&object);
    let upload_file = app
        .data_path()
        .join("objects")
        .join(first["file"].as_str().unwrap());
    let upload_key = sealing_key(&upload_file);
    // Ann signs in as MRN1; a front-desk user is no one's.
    for (user, body) in [
        ("ann", json!({"role": "patient", "mrn": "MRN1"})),
        ("desk", json!({"role": "front_desk"})),
    ] {
        let mut body = body;
        body["userId"] = json!(user);
        body["password"] = json!("a long enough password");
        let (status, made) = app.post_json("/v1/users", &app.key, body).await;
        assert_eq!(status, 201, "{made}");
    }
    // PROV002 has a patient MRN1 of its own.
    let made = send(
        &app,
        Method::POST,
        "/v1/patients",
        &app.other_key,
        Some(&patient()),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);

    // Refused: no reason, an empty or unknown field, the wrong body, a patient not there.
    let reason = json!({"reason": "patient request under GDPR Art. 17, ticket 4411"});
    for (body, field) in [
        (json!({}), "reason"),
        (json!({"reason": "  "}), "reason"),
        (json!({"reason": "x".repeat(501)}), "reason"),
        (json!({"reason": "ok", "also": 1}), "body"),
        (json!(["reason"]), "body"),
    ] {
        let (status, problem) = erase(&app, "MRN1", &app.key, Some(&body)).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let (status, _) = erase(&app, "MRN9", &app.key, Some(&reason)).await;
    assert_eq!(status, 404);

    let (status, done) = erase(&app, "MRN1", &app.key, Some(&reason)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["patientKey"], app.patient_key("PROV001", "MRN1"));
    // Three visits, the profile, a clinical record, an appointment, the document, and the
    // partition's data-key record.
    assert!(done["itemsRemoved"].as_u64().unwrap() >= 7, "{done}");
    assert_eq!(done["documentsRemoved"], 1);
    assert_eq!(done["usersRemoved"], 1, "{done}");
    let (status, _) = app.get("/v1/users/ann", &app.key).await;
    assert_eq!(status, 404, "the patient's sign-in account stays");
    let (status, _) = app.get("/v1/users/desk", &app.key).await;
    assert_eq!(status, 200);
    let login = app
        .http
        .post(format!("{}/v1/login", app.base_url))
        .json(&json!({"providerId": "PROV001", "userId": "ann", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 401);
    assert!(!object.exists(), "the document's object stays");
    assert!(!done.to_string().contains("MRN1"), "{done}");

    // Every read and write of the patient: 410, as a problem document.
    for path in [
        "/v1/patients/MRN1",
        "/v1/patients/MRN1/records",
        "/v1/patients/MRN1/timeline",
        "/v1/patients/MRN1/appointments",
        "/v1/patients/MRN1/clinical-records",
        "/v1/patients/MRN1/documents",
    ] {
        let (status, problem) = app.get(path, &app.key).await;
        assert_eq!(status, 410, "{path}: {problem}");
        assert_eq!(problem["type"], "urn:ward:problem:gone", "{path}");
    }
    let again = send(
        &app,
        Method::POST,
        "/v1/patients",
        &app.key,
        Some(&patient()),
        &[],
    )
    .await;
    assert_eq!(again.status, 410, "{}", again.body);
    let (status, _) = erase(&app, "MRN1", &app.key, Some(&reason)).await;
    assert_eq!(status, 410, "erased already");
    // A row that landed after the erasure (a batch in flight when it began): a DELETE
    // again removes it; then the patient is simply gone.
    let late = {
        let mut item = ward_store::Item::new();
        let pk = format!("PROV#PROV001#PAT#{}", app.patient_key("PROV001", "MRN1"));
        item.insert(ward_store::PK.into(), ward_store::Value::s(pk));
        item.insert(
            ward_store::SK.into(),
            ward_store::Value::s("VISIT#2025-03-09T10:00:00.000000000Z"),
        );
        item
    };
    let table = app.running.as_ref().unwrap().state.table.clone();
    ward_store::Table::put(&*table, late, ward_store::Condition::None)
        .await
        .unwrap();
    drop(table);
    let (status, swept) = erase(&app, "MRN1", &app.key, Some(&reason)).await;
    assert_eq!(
        (status, &swept["itemsRemoved"]),
        (200, &json!(1)),
        "{swept}"
    );
    let (status, _) = erase(&app, "MRN1", &app.key, Some(&reason)).await;
    assert_eq!(status, 410);
    // Its email is free; nothing finds the patient by it.
    let (status, _) = app
        .get("/v1/patients?email=ann@example.org", &app.key)
        .await;
    assert_eq!(status, 404);

    // Another patient, and the other provider's MRN1, are as they were.
    let (status, other) = app.get("/v1/patients/MRN2/records", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(other["records"].as_array().unwrap().len(), 1);
    let (status, theirs) = app.get("/v1/patients/MRN1", &app.other_key).await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(theirs["firstName"], "Ann");

    // The same file again: MRN1's rows are reported, not stored again.
    let second = app.upload_and_wait(visits().as_bytes()).await;
    assert_eq!(counts(&second), [4, 0, 1, 0, 3], "{second}");
    let problems = second["report"]["firstProblems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{second}");
    for problem in problems {
        assert_eq!(problem["column"], "mrn");
        assert!(
            problem["reason"].as_str().unwrap().contains("was erased"),
            "{problem}"
        );
    }
    let (status, _) = app.get("/v1/patients/MRN1/records", &app.key).await;
    assert_eq!(status, 410);

    // The erasure is audited, naming the patient by its pseudonym, with its reason.
    flush_audit(&app).await;
    let (status, audit) = app.get("/v1/audit?limit=100", &app.key).await;
    assert_eq!(status, 200, "{audit}");
    let erasures: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"] == "ERASE")
        .collect();
    let succeeded: Vec<&&Value> = erasures
        .iter()
        .filter(|event| event["result"] == "SUCCESS")
        .collect();
    assert_eq!(
        succeeded.len(),
        2,
        "the erasure and the sweep after it: {erasures:?}"
    );
    let event = succeeded.last().unwrap();
    assert_eq!(event["resourceId"], app.patient_key("PROV001", "MRN1"));
    assert!(event.get("patient").is_none_or(Value::is_null), "{event}");
    assert_eq!(event["detail"]["reason"], reason["reason"]);
    assert!(!event.to_string().contains("MRN1"), "{event}");

    // The document's data key is gone from the key store (a backup of the objects folder
    // cannot open it); the uploaded file's key, not the patient's alone, stays.
    app.running.take().unwrap().stop().await.unwrap();
    let key_store = ward_store_embedded::EmbeddedTable::open(
        &app.data_dir.path().join("data-keys").join("keys.redb"),
        &Default::default(),
    )
    .unwrap();
    let held = |id: u64| {
        let key = ward_store::Key::new("DEK#PROV001", format!("KEY#{id:016x}"));
        let key_store = &key_store;
        async move {
            ward_store::Table::get(key_store, &key)
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(!held(document_key).await, "the document's key is kept");
    assert!(held(upload_key).await, "the upload's key was destroyed");
}

/// The id of the data key that seals the object stored at `path` (its header).
fn sealing_key(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"WOB\x01", "{} is not sealed", path.display());
    u64::from_be_bytes(bytes[4..12].try_into().unwrap())
}

#[tokio::test]
async fn only_the_providers_administrator_erases_and_another_provider_finds_nothing() {
    let app = spawn_app().await;
    app.upload_and_wait(visits().as_bytes()).await;
    let reason = json!({"reason": "duplicate registration"});
    // The other provider's administrator: MRN1 is not there for it.
    let (status, _) = erase(&app, "MRN1", &app.other_key, Some(&reason)).await;
    assert_eq!(status, 404);
    // A scoped key, even one that writes patients: refused.
    let (status, key) = app
        .post_json("/v1/keys", &app.key, json!({"scopes": ["patients:write"]}))
        .await;
    assert_eq!(status, 201, "{key}");
    let (status, problem) =
        erase(&app, "MRN1", key["apiKey"].as_str().unwrap(), Some(&reason)).await;
    assert_eq!(status, 403, "{problem}");
    // No credentials: 401.
    let response = app
        .http
        .delete(format!("{}/v1/patients/MRN1", app.base_url))
        .json(&reason)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (status, records) = app.get("/v1/patients/MRN1/records", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(records["records"].as_array().unwrap().len(), 3);
    app.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The erasure's tombstone state and the items left in the patient's partition, read
/// from the store file itself (neither is sealed).
async fn erasure_on_disk(data: &std::path::Path, patient_key: &str) -> (Option<String>, usize) {
    use ward_store::{Key, Query, SkCondition, Table as _, Value};
    let table = ward::embedded::open_table(&data.join("ward.redb"), &Default::default()).unwrap();
    let state = table
        .get(&Key::new(
            "PROV#PROV001#ERASED",
            format!("PAT#{patient_key}"),
        ))
        .await
        .unwrap()
        .and_then(|item| item.get("state").and_then(Value::as_s).map(str::to_owned));
    let mut left = 0;
    let mut cursor = None;
    loop {
        let page = table
            .query(Query {
                cursor,
                limit: 1000,
                ..Query::partition(format!("PROV#PROV001#PAT#{patient_key}"), SkCondition::Any)
            })
            .await
            .unwrap();
        left += page.items.len();
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (state, left),
        }
    }
}

#[tokio::test]
async fn kill_9_during_an_erasure_then_running_it_again_finishes_it() {
    let work = tempfile::tempdir().unwrap();
    let seeded = work.path().join("seeded");
    let running = start_server(&seeded, Options::default()).await;
    let key = ward_ports::Tenants::new(running.state.table.clone())
        .create(&ward_domain::ProviderId::parse("PROV001").unwrap(), None)
        .await
        .unwrap()
        .0;
    let app = app_for(running, key.clone());
    // Enough visits that deleting them takes many durable transactions.
    let csv = crate::helpers::one_large_patient_csv(3000);
    let upload = app.upload_and_wait(csv.as_bytes()).await;
    assert_eq!(counts(&upload)[1], 3005, "{upload}");
    let patient_key = app.patient_key("PROV001", "MRN1");
    app.stop().await;
    let keys_of = |data: &std::path::Path| {
        data.with_file_name(format!(
            "{}-keys",
            data.file_name().unwrap().to_string_lossy()
        ))
    };

    // Kill `ward serve` at a moment after the erasure was asked for; a kill that lands
    // before it began or after it ended is tried again on a fresh copy, sooner or later.
    let reason = json!({"reason": "patient request"});
    let mut delay_ms = 300u64;
    let mut seen = Vec::new();
    let killed = loop {
        let data = work.path().join(format!("attempt-{}", seen.len()));
        copy_dir(&seeded, &data);
        copy_dir(&keys_of(&seeded), &keys_of(&data));
        let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_ward"));
        serve
            .args(["serve", "--data-dir"])
            .arg(&data)
            .env("WARD_LOG", "error");
        let (mut child, base) = crate::helpers::serve_child(serve).await;
        let http = reqwest::Client::new();
        let request = http
            .delete(format!("{base}/v1/patients/MRN1"))
            .bearer_auth(&key)
            .json(&reason)
            .send();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(delay_ms), request).await;
        child.kill().unwrap(); // SIGKILL
        assert!(!child.wait().unwrap().success());
        let (state, left) = erasure_on_disk(&data, &patient_key).await;
        seen.push((delay_ms, state.clone(), left));
        match state.as_deref() {
            Some("ERASED") => delay_ms = (delay_ms / 2).max(1),
            None => delay_ms *= 2,
            Some(_) => break data,
        }
        assert!(seen.len() < 8, "no kill landed mid-erasure: {seen:?}");
    };

    // Started again: the patient already reads as gone, and the erasure run again ends it.
    let running = start_server(&killed, Options::default()).await;
    let app = app_for(running, key);
    let (status, _) = app.get("/v1/patients/MRN1/records", &app.key).await;
    assert_eq!(status, 410, "mid-erasure, after {seen:?}");
    let (status, done) = erase(&app, "MRN1", &app.key, Some(&reason)).await;
    assert_eq!(status, 200, "{done}");
    let (status, records) = app.get("/v1/patients/MRN2/records", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(records["records"].as_array().unwrap().len(), 5);
    app.stop().await;
    assert_eq!(
        erasure_on_disk(&killed, &patient_key).await,
        (Some("ERASED".to_owned()), 0),
        "after {seen:?}"
    );
}

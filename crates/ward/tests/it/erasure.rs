//! Erasure through HTTP: `DELETE /v1/patients/{mrn}` by the provider's administrator,
//! with a reason; afterwards every read and write of the patient answers 410, its visits,
//! EMR items, email claim and document object are gone, a re-uploaded row of it is
//! reported, the erasure is audited by pseudonym, and nothing of any other patient or
//! provider changes.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest;

use crate::emr::{flush_audit, patient, seed, send};
use crate::helpers::{HEADER, TestApp, counts, spawn_app};

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
    let bytes = b"%PDF-1.4 an ECG of Ann Lee".to_vec();
    let meta = json!({"type": "ECG_REPORT", "title": "12-lead ECG", "fileName": "ecg.pdf",
                      "mediaType": "application/pdf", "sizeBytes": bytes.len(),
                      "sha256": hex::encode(sha2::Sha256::digest(&bytes))});
    let made = send(
        app,
        Method::POST,
        "/v1/patients/MRN1/documents",
        &app.key,
        Some(&meta),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let response = app
        .http
        .put(made.body["upload"]["url"].as_str().unwrap())
        .header("content-type", "application/pdf")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let id = made.body["id"].as_str().unwrap();
    app.data_path().join("objects").join(format!(
        "PROV001/documents/{}/{id}",
        app.patient_key("PROV001", "MRN1")
    ))
}

#[tokio::test]
async fn an_erased_patient_is_gone_for_good_and_nothing_else_changes() {
    let app = spawn_app().await;
    let first = app.upload_and_wait(visits().as_bytes()).await;
    assert_eq!(counts(&first), [4, 4, 0, 0, 0]);
    seed(&app).await;
    let object = document(&app).await;
    assert!(object.exists(), "{}", object.display());
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
    assert_eq!(succeeded.len(), 1, "{erasures:?}");
    let event = succeeded[0];
    assert_eq!(event["resourceId"], app.patient_key("PROV001", "MRN1"));
    assert!(event.get("patient").is_none_or(Value::is_null), "{event}");
    assert_eq!(event["detail"]["reason"], reason["reason"]);
    assert!(!event.to_string().contains("MRN1"), "{event}");
    app.stop().await;
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

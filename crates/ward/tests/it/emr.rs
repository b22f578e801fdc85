//! The EMR through HTTP: status codes, ETag / If-Match, problem details naming each field,
//! idempotency, documents with checked uploads and signed downloads, the audit route, and
//! another provider's key seeing nothing of any of it.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::{HEADER, TestApp, spawn_app};

pub(crate) struct Sent {
    pub(crate) status: u16,
    pub(crate) body: Value,
    headers: reqwest::header::HeaderMap,
}

pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Sent {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base_url))
        .bearer_auth(key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Sent {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

/// Waits until the server's buffered read-audit events are stored.
pub(crate) async fn flush_audit(app: &TestApp) {
    let running = app.running.as_ref().expect("a running server");
    running.state.emr.audit_log().flush().await;
}

pub(crate) fn patient() -> Value {
    json!({"mrn": "MRN1", "firstName": "Ann", "lastName": "Lee", "dateOfBirth": "1985-06-15",
           "sex": "FEMALE", "email": "ann@example.org", "clinic": "NORTH"})
}

pub(crate) async fn seed(app: &TestApp) -> (String, String) {
    let made = send(
        app,
        Method::POST,
        "/v1/patients",
        &app.key,
        Some(&patient()),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let clinician = json!({"id": "DR1", "firstName": "Sam", "lastName": "Smith", "email": "dr1@example.org",
                           "licenceNumber": "L1", "specialization": "Cardiology"});
    let made = send(
        app,
        Method::POST,
        "/v1/clinicians",
        &app.key,
        Some(&clinician),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let record = json!({"type": "CONSULTATION", "clinicianId": "DR1",
                        "visit": {"date": "2025-02-01T08:00:00Z"}, "chiefComplaint": "private complaint"});
    let made = send(
        app,
        Method::POST,
        "/v1/patients/MRN1/clinical-records",
        &app.key,
        Some(&record),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let record_id = made.body["id"].as_str().unwrap().to_owned();
    let appointment = json!({"clinicianId": "DR1", "start": "2025-06-16T10:00:00Z", "durationMinutes": 30,
                             "type": "CHECKUP", "mode": "VIRTUAL"});
    let made = send(
        app,
        Method::POST,
        "/v1/patients/MRN1/appointments",
        &app.key,
        Some(&appointment),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    (record_id, made.body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn patients_are_created_read_and_updated_with_etags_and_named_field_errors() {
    let app = spawn_app().await;
    let made = send(
        &app,
        Method::POST,
        "/v1/patients",
        &app.key,
        Some(&patient()),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.headers["location"], "/v1/patients/MRN1");
    assert_eq!(made.headers["etag"], "\"1\"");
    let again = send(
        &app,
        Method::POST,
        "/v1/patients",
        &app.key,
        Some(&patient()),
        &[],
    )
    .await;
    assert_eq!(
        (again.status, again.body["type"].as_str()),
        (409, Some("urn:ward:problem:conflict"))
    );

    let patch = json!({"phone": "+14155550123"});
    let missing = send(
        &app,
        Method::PATCH,
        "/v1/patients/MRN1",
        &app.key,
        Some(&patch),
        &[],
    )
    .await;
    assert_eq!(missing.status, 428, "{}", missing.body);
    let updated = send(
        &app,
        Method::PATCH,
        "/v1/patients/MRN1",
        &app.key,
        Some(&patch),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.headers["etag"], "\"2\"");
    assert_eq!(updated.body["phone"], "+14155550123");
    let stale = send(
        &app,
        Method::PATCH,
        "/v1/patients/MRN1",
        &app.key,
        Some(&patch),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(
        (stale.status, stale.body["type"].as_str()),
        (412, Some("urn:ward:problem:precondition-failed"))
    );

    let bad = json!({"mrn": "MRN#2", "firstName": "", "dateOfBirth": "1985-02-30", "sex": "F",
                     "email": "nope", "clinic": "NORTH", "extra": 1});
    let refused = send(
        &app,
        Method::POST,
        "/v1/patients",
        &app.key,
        Some(&bad),
        &[],
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    let fields: Vec<&str> = refused.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "extra",
            "mrn",
            "firstName",
            "lastName",
            "dateOfBirth",
            "sex",
            "email"
        ]
    );
    // Not JSON, binary, or not an object: a clear 400, nothing stored.
    for raw in [&b"{\"mrn\": "[..], &[0xff, 0xfe, 0x00][..], &b"[1,2]"[..]] {
        let response = app
            .http
            .post(format!("{}/v1/patients", app.base_url))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let body: Value = response.json().await.unwrap();
        assert!(body["errors"][0]["field"] == "body", "{body}");
    }
    let (status, found) = app
        .get("/v1/patients?email=ANN@example.org", &app.key)
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["mrn"], "MRN1");
    app.stop().await;
}

#[tokio::test]
async fn idempotent_creates_replay_and_double_booking_is_a_conflict() {
    let app = spawn_app().await;
    seed(&app).await;
    let bill = json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 500, "currency": "EUR", "status": "ISSUED"});
    let first = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/bills",
        &app.key,
        Some(&bill),
        &[("idempotency-key", "k-1")],
    )
    .await;
    let second = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/bills",
        &app.key,
        Some(&bill),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!((first.status, second.status), (201, 200));
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(first.body["id"], second.body["id"]);
    let changed = json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 600, "currency": "EUR", "status": "ISSUED"});
    let misuse = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/bills",
        &app.key,
        Some(&changed),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(misuse.status, 409);

    let overlapping = json!({"clinicianId": "DR1", "start": "2025-06-16T12:15:00+02:00", "durationMinutes": 30,
                             "type": "CHECKUP", "mode": "IN_PERSON"});
    let refused = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/appointments",
        &app.key,
        Some(&overlapping),
        &[],
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("already booked")
    );
    let (status, day) = app
        .get("/v1/clinics/NORTH/appointments?date=2025-06-16", &app.key)
        .await;
    assert_eq!(status, 200);
    assert_eq!(day["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn documents_are_uploaded_checked_and_downloaded_through_signed_urls() {
    let app = spawn_app().await;
    seed(&app).await;
    let bytes = b"%PDF-1.4 an ECG".to_vec();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let meta = json!({"type": "ECG_REPORT", "title": "12-lead ECG", "fileName": "ecg.pdf",
                      "mediaType": "application/pdf", "sizeBytes": bytes.len(), "sha256": sha});
    let made = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/documents",
        &app.key,
        Some(&meta),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["status"], "PENDING_UPLOAD");
    let id = made.body["id"].as_str().unwrap().to_owned();
    let url = made.body["upload"]["url"].as_str().unwrap().to_owned();
    let (status, _) = app
        .get(
            &format!("/v1/patients/MRN1/documents/{id}/content"),
            &app.key,
        )
        .await;
    assert_eq!(status, 409, "no content before the upload");
    // A tampered signature, the wrong media type: refused, nothing kept.
    let tampered = url.replace("signature=", "signature=00");
    let response = app
        .http
        .put(&tampered)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = app
        .http
        .put(&url)
        .header("content-type", "text/plain")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = app
        .http
        .put(&url)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let settled: Value = response.json().await.unwrap();
    assert_eq!(settled["status"], "AVAILABLE", "{settled}");
    let replay = app
        .http
        .put(&url)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 409, "a second upload is refused");
    let (status, listed) = app.get("/v1/documents?type=ECG_REPORT", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["id"], id.as_str());

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
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.bytes().await.unwrap().to_vec(), bytes);
    // The URL names the patient by its key, not its MRN; another patient's key in a URL
    // signed for this one is refused.
    let (mine, theirs) = (
        app.patient_key("PROV001", "MRN1"),
        app.patient_key("PROV001", "MRN2"),
    );
    assert!(
        location.contains(&mine) && !location.contains("MRN1"),
        "{location}"
    );
    let forged = location.replace(&mine, &theirs);
    assert_eq!(
        app.http
            .get(&forged)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // Bytes that do not match the declared SHA-256 are rejected and not kept.
    let wrong = json!({"type": "LAB_REPORT", "title": "labs", "fileName": "labs.txt",
                       "mediaType": "text/plain", "sizeBytes": 5, "sha256": "0".repeat(64)});
    let made = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/documents",
        &app.key,
        Some(&wrong),
        &[],
    )
    .await;
    let url = made.body["upload"]["url"].as_str().unwrap();
    let response = app
        .http
        .put(url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let settled: Value = response.json().await.unwrap();
    assert_eq!(settled["status"], "REJECTED");
    assert!(
        settled["rejection"].as_str().unwrap().contains("SHA-256"),
        "{settled}"
    );
    // Too many bytes: 413 while streaming, and the URL can be used again.
    let big = json!({"type": "LAB_REPORT", "title": "labs", "fileName": "labs.txt",
                     "mediaType": "text/plain", "sizeBytes": 5, "sha256": hex::encode(sha2::Sha256::digest(b"hello"))});
    let made = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/documents",
        &app.key,
        Some(&big),
        &[],
    )
    .await;
    let url = made.body["upload"]["url"].as_str().unwrap();
    let response = app
        .http
        .put(url)
        .header("content-type", "text/plain")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let response = app
        .http
        .put(url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let settled: Value = response.json().await.unwrap();
    assert_eq!(settled["status"], "AVAILABLE", "{settled}");
    app.stop().await;
}

#[tokio::test]
async fn the_timeline_and_the_audit_trail_through_http() {
    let app = spawn_app().await;
    app.upload_and_wait(
        format!("{HEADER}MRN1,2025-01-10T08:00:00Z,Ann,Lee,first visit\n").as_bytes(),
    )
    .await;
    let (record_id, _) = seed(&app).await;
    let (status, timeline) = app
        .get("/v1/patients/MRN1/timeline?order=desc", &app.key)
        .await;
    assert_eq!(status, 200, "{timeline}");
    let kinds: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["appointment", "clinicalRecord", "visit"]);
    let (status, _) = app
        .get(
            &format!("/v1/patients/MRN1/clinical-records/{record_id}"),
            &app.key,
        )
        .await;
    assert_eq!(status, 200);
    flush_audit(&app).await;
    let audit = send(
        &app,
        Method::GET,
        "/v1/audit?patient=MRN1",
        &app.key,
        None,
        &[("x-request-id", "trace-77")],
    )
    .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let events = audit.body["items"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["resourceType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("READ", "CLINICAL_RECORD"),
            ("LIST", "PATIENT"),
            ("CREATE", "APPOINTMENT"),
            ("CREATE", "CLINICAL_RECORD"),
            ("CREATE", "PATIENT"),
        ]
    );
    assert_eq!(events[0]["clientAddress"], "127.0.0.1");
    assert_eq!(events[0]["providerId"], "PROV001");
    assert!(events[0]["actor"].as_str().unwrap().starts_with("key:"));
    assert!(!audit.body.to_string().contains("private complaint"));
    // The CSV upload is one event with its counts.
    let (_, uploads) = app.get("/v1/audit?actor=worker", &app.key).await;
    let ingest = &uploads["items"][0];
    assert_eq!(ingest["action"], "INGEST");
    assert_eq!(ingest["detail"]["counts"]["inserted"], 1);
    // Reads of CSV data are audited too: visits, an upload's report, records and errors.
    let upload_id = ingest["resourceId"].as_str().unwrap().to_owned();
    for path in [
        "/v1/patients/MRN1/records".to_owned(),
        format!("/v1/uploads/{upload_id}"),
        format!("/v1/uploads/{upload_id}/records"),
        format!("/v1/uploads/{upload_id}/errors.csv"),
    ] {
        let (status, _) = app.get(&path, &app.key).await;
        assert_eq!(status, 200, "{path}");
    }
    flush_audit(&app).await;
    let (_, reads) = app.get("/v1/audit?limit=4", &app.key).await;
    let kinds: Vec<&str> = reads["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["UPLOAD_ERRORS", "UPLOAD_RECORDS", "UPLOAD_REPORT", "VISIT"]
    );
    let (status, body) = app
        .get(
            "/v1/audit?from=2025-01-01T00:00:00Z&to=2025-06-01T00:00:00Z",
            &app.key,
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("from")));
    app.stop().await;
}

/// A checked (AVAILABLE) ECG document of MRN1 with `bytes`, uploaded to its signed URL;
/// its id.
pub(crate) async fn stored_document(app: &TestApp, bytes: &[u8]) -> String {
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    let meta = json!({"type": "ECG_REPORT", "title": "12-lead ECG", "fileName": "ecg.pdf",
                      "mediaType": "application/pdf", "sizeBytes": bytes.len(), "sha256": sha});
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
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    made.body["id"].as_str().unwrap().to_owned()
}

/// A checked (AVAILABLE) ECG document and an issued bill of MRN1; their ids.
async fn seed_document_and_bill(app: &TestApp) -> (String, String) {
    let document_id = stored_document(app, b"%PDF-1.4 an ECG").await;
    let bill = json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 500, "currency": "EUR", "status": "ISSUED"});
    let made = send(
        app,
        Method::POST,
        "/v1/patients/MRN1/bills",
        &app.key,
        Some(&bill),
        &[],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    (document_id, made.body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn another_providers_key_sees_nothing_of_the_emr() {
    let app = spawn_app().await;
    let (record_id, appointment_id) = seed(&app).await;
    let (document_id, bill_id) = seed_document_and_bill(&app).await;
    let other = &app.other_key;
    for path in [
        "/v1/patients/MRN1".to_owned(),
        format!("/v1/patients/MRN1/clinical-records/{record_id}"),
        format!("/v1/patients/MRN1/appointments/{appointment_id}"),
        format!("/v1/patients/MRN1/documents/{document_id}"),
        format!("/v1/patients/MRN1/documents/{document_id}/content"),
        format!("/v1/patients/MRN1/bills/{bill_id}"),
        "/v1/patients?email=ann@example.org".to_owned(),
        "/v1/clinicians/DR1".to_owned(),
    ] {
        // The owner reads it (so this sweep can fail), the other provider does not.
        let (status, _) = app.get(&path, &app.key).await;
        assert!(
            status == 200 || (path.ends_with("/content") && status == 303),
            "the owner reads {path}: {status}"
        );
        let (status, body) = app.get(&path, other).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.to_string().contains("Ann"), "{path}: {body}");
    }
    for path in [
        "/v1/patients/MRN1/timeline",
        "/v1/patients/MRN1/clinical-records",
        "/v1/patients/MRN1/appointments",
        "/v1/patients/MRN1/documents",
        "/v1/patients/MRN1/bills",
        "/v1/patients?clinic=NORTH",
        "/v1/clinicians",
        "/v1/clinicians/DR1/appointments",
        "/v1/clinicians/DR1/clinical-records",
        "/v1/clinics/NORTH/appointments?date=2025-06-16",
        "/v1/clinics/NORTH/patients",
        "/v1/clinical-records?type=CONSULTATION",
        "/v1/documents?type=ECG_REPORT",
    ] {
        let mentions_owner = |item: &Value| {
            let text = item.to_string();
            text.contains("MRN1") || text.contains("DR1")
        };
        // Each list holds the owner's items for the owner...
        let (status, mine) = app.get(path, &app.key).await;
        assert_eq!(status, 200, "{path}: {mine}");
        assert!(
            mine["items"].as_array().unwrap().iter().any(mentions_owner),
            "the owner's {path} lists its items: {mine}"
        );
        // ...and none of them for the other provider.
        let (status, body) = app.get(path, other).await;
        assert_eq!(status, 200, "{path}: {body}");
        let items = body["items"].as_array().unwrap();
        assert!(!items.iter().any(mentions_owner), "{path}: {body}");
    }
    let check = send(
        &app,
        Method::POST,
        &format!("/v1/patients/MRN1/documents/{document_id}/check"),
        other,
        None,
        &[],
    )
    .await;
    assert_eq!(check.status, 404);
    let patch = json!({"phone": "+14155550123"});
    let refused = send(
        &app,
        Method::PATCH,
        "/v1/patients/MRN1",
        other,
        Some(&patch),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(refused.status, 404);
    let refused = send(
        &app,
        Method::PATCH,
        &format!("/v1/patients/MRN1/appointments/{appointment_id}"),
        other,
        Some(&json!({"status": "CANCELLED"})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(refused.status, 404);
    let refused = send(&app, Method::POST, "/v1/patients/MRN1/bills", other,
        Some(&json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 1, "currency": "USD", "status": "ISSUED"})), &[]).await;
    assert_eq!(refused.status, 404);
    // Their audit trail holds their own (refused) requests only, never the owner's.
    flush_audit(&app).await;
    let (status, audit) = app.get("/v1/audit", other).await;
    assert_eq!(status, 200);
    let other_actor = format!("key:{}", other.split('.').nth(2).unwrap());
    let events = audit["items"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["actor"] == other_actor.as_str()),
        "{audit}"
    );
    assert!(
        events.iter().any(|e| e["result"] == "NOT_FOUND"),
        "refusals are audited: {audit}"
    );
    // The owner still sees everything, unchanged.
    let mine = send(
        &app,
        Method::GET,
        &format!("/v1/patients/MRN1/appointments/{appointment_id}"),
        &app.key,
        None,
        &[],
    )
    .await;
    assert_eq!(
        (mine.status, mine.body["status"].as_str()),
        (200, Some("SCHEDULED"))
    );
    app.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_specific_errors_and_change_nothing() {
    let app = spawn_app().await;
    seed(&app).await;
    let post_raw = |path: &str, body: Vec<u8>| {
        app.http
            .post(format!("{}{path}", app.base_url))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Larger than the body limit: 413 as a problem, while streaming.
    let huge = format!(
        "{{\"mrn\": \"MRN9\", \"firstName\": \"{}\"}}",
        "a".repeat(3 << 20)
    );
    let response = post_raw("/v1/patients", huge.into_bytes()).await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:ward:problem:upload-too-large");
    // Deeply nested JSON: refused as JSON, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let response = post_raw("/v1/patients/MRN1/clinical-records", deep.into_bytes())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    // Long, control-character and wrongly typed values are each named.
    let hostile = json!({
        "type": "CONSULTATION", "clinicianId": "DR1",
        "visit": {"date": "2025-02-01T08:00:00Z"},
        "chiefComplaint": "x".repeat(5000),
        "symptoms": ["ok", "bell\u{7}"],
        "diagnoses": [{"code": "I25.9", "description": 42}],
        "prescriptions": "not a list",
        "vitalSigns": {"heartRate": {"value": "NaN", "unit": "bpm"}, "weight": {"value": 1e308, "unit": "kg"}}
    });
    let refused = send(
        &app,
        Method::POST,
        "/v1/patients/MRN1/clinical-records",
        &app.key,
        Some(&hostile),
        &[],
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let fields: Vec<&str> = refused.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "chiefComplaint",
            "symptoms[1]",
            "vitalSigns.heartRate.value",
            "vitalSigns.weight.value",
            "diagnoses[0].description",
            "prescriptions"
        ]
    );
    // Key-forging identifiers never reach a key.
    for path in [
        "/v1/patients/MRN%231",
        "/v1/patients/..%2F..%2Fetc",
        "/v1/clinicians/DR1%23PROFILE",
        "/v1/clinicians/DR1%23BUSY/appointments",
        "/v1/clinics/NORTH%23DAY/patients",
        "/v1/clinics/NORTH%2Fx/appointments?date=2025-06-16",
    ] {
        let (status, body) = app.get(path, &app.key).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["errors"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("may only contain"),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .get("/v1/patients/MRN1/clinical-records?cursor=%%%", &app.key)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("cursor")),
        "{body}"
    );
    // Nothing was stored by any of it.
    let (_, records) = app
        .get("/v1/patients/MRN1/clinical-records", &app.key)
        .await;
    assert_eq!(records["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

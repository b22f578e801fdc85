//! The intake path through the HTTP API: outcomes, reports, records, errors, OpenAPI.

use crate::helpers::{HEADER, OPERATOR_KEY, Options, TestApp, counts, spawn_app};

pub(crate) fn fixture() -> String {
    format!(
        "{HEADER}\
         MRN1,2025-03-26T10:30:00-07:00,John,Doe,\"fever, mild\r\nsecond line\"\n\
         MRN1,2024-01-02T08:00:00Z,John,Doe,earlier visit\n\
         MRN1,2025-03-26T17:30:00Z,John,Doe,\"fever, mild\r\nsecond line\"\n\
         MRN1,2025-03-26T17:30:00.000Z,John,Doe,changed notes\n\
         MRN#2,2025-03-26T10:30:00Z,Jane,Roe,\n\
         MRN3,2025-03-26T10:30:00,Bob,Poe,\n\
         =1+2,2025-03-26T10:30:00+01:00,Eve,Poe,\n\
         MRN5,2025-02-30T10:30:00Z,Ann,Lee,\n"
    )
}

#[tokio::test]
async fn every_row_gets_one_outcome_and_the_report_says_which_line_and_why() {
    let app = spawn_app().await;
    let upload = app.upload_and_wait(fixture().as_bytes()).await;
    assert_eq!(upload["status"], "completed", "{upload}");
    // rows = inserted + duplicate + conflict + rejected
    assert_eq!(counts(&upload), [8, 2, 1, 1, 4]);
    let problems: Vec<(u64, String, String)> = upload["report"]["firstProblems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap(),
                p["outcome"].as_str().unwrap().into(),
                p["column"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            // Rows 1 and 3 have notes with a line break inside quotes: two lines each.
            (7, "conflict".into(), "row".into()),
            (8, "rejected".into(), "medical_record_number".into()),
            (9, "rejected".into(), "date_time".into()),
            (10, "rejected".into(), "medical_record_number".into()),
            (11, "rejected".into(), "date_time".into()),
        ]
    );
    let (status, csv) = app
        .get(
            &format!(
                "/v1/uploads/{}/errors.csv",
                upload["uploadId"].as_str().unwrap()
            ),
            &app.key,
        )
        .await;
    assert_eq!(status, 200);
    let csv = csv.as_str().unwrap();
    assert!(
        csv.starts_with("line,outcome,column,reason,medical_record_number,date_time\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(
        csv.contains("9,rejected,date_time,\"has no time zone offset"),
        "{csv}"
    );
    assert!(
        csv.contains(",'=1+2,"),
        "formula cells are neutralised: {csv}"
    );
    app.stop().await;
}

#[tokio::test]
async fn records_come_back_in_time_order_whatever_the_offset_and_page_with_cursors() {
    let app = spawn_app().await;
    app.upload_and_wait(fixture().as_bytes()).await;
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
    let first = &page["records"][1];
    assert_eq!(first["doctorsNotes"], "fever, mild\r\nsecond line");
    assert_eq!(first["sourceLine"], 2);
    assert!(
        first["csvFile"]
            .as_str()
            .unwrap()
            .starts_with("PROV001/completed/")
    );
    let (_, desc) = app.get_patient_records("MRN1", "?order=desc&limit=1").await;
    assert_eq!(desc["records"][0]["dateTime"], "2025-03-26T10:30:00-07:00");
    let cursor = desc["nextCursor"].as_str().expect("a second page");
    let (_, rest) = app
        .get_patient_records("MRN1", &format!("?order=desc&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(rest["records"][0]["dateTime"], "2024-01-02T08:00:00Z");
    let (_, ranged) = app
        .get_patient_records(
            "MRN1",
            "?from=2025-01-01T00:00:00Z&to=2025-12-31T00:00:00%2B01:00",
        )
        .await;
    assert_eq!(ranged["records"].as_array().unwrap().len(), 1);
    let (status, body) = app.get_patient_records("MRN1", "?from=yesterday").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("from")));
    let (status, body) = app.get_patient_records("MRN%231", "").await;
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("urn:ward:problem:invalid-request"))
    );
    app.stop().await;
}

#[tokio::test]
async fn re_uploading_a_file_inserts_nothing_and_the_same_visit_in_another_offset_is_a_duplicate() {
    let app = spawn_app().await;
    let csv = format!(
        "{HEADER}A1,2025-03-26T10:30:00-07:00,John,Doe,x\nA2,2025-03-26T10:30:00Z,Jane,Roe,y\n"
    );
    let first = app.upload_and_wait(csv.as_bytes()).await;
    assert_eq!(counts(&first), [2, 2, 0, 0, 0]);
    let again = app.upload_and_wait(csv.as_bytes()).await;
    assert_eq!(counts(&again), [2, 0, 2, 0, 0]);
    let shifted = format!("{HEADER}A1,2025-03-26T17:30:00Z,John,Doe,x\n");
    assert_eq!(
        counts(&app.upload_and_wait(shifted.as_bytes()).await),
        [1, 0, 1, 0, 0]
    );
    let (_, page) = app.get_patient_records("A1", "").await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["records"][0]["uploadId"], first["uploadId"],
        "the first upload's record is kept"
    );
    app.stop().await;
}

async fn errors_csv(app: &TestApp, upload: &serde_json::Value) -> String {
    let id = upload["uploadId"].as_str().unwrap();
    let (status, csv) = app
        .get(&format!("/v1/uploads/{id}/errors.csv"), &app.key)
        .await;
    assert_eq!(status, 200, "{csv}");
    csv.as_str().unwrap().to_owned()
}

/// A byte-identical re-upload is answered from the first upload's outcomes without
/// reading a row, and ends every row as reading it again would: a per-row run of the same
/// bytes over the same store (the shortcut switched off) gives the same report and the
/// same error list.
#[tokio::test]
async fn a_byte_identical_re_upload_ends_every_row_as_a_per_row_run_does() {
    let app = spawn_app().await;
    let file = fixture();
    let first = app.upload_and_wait(file.as_bytes()).await;
    assert_eq!(counts(&first), [8, 2, 1, 1, 4]);
    assert!(first["report"]["identicalTo"].is_null(), "{first}");
    let again = app.upload_and_wait(file.as_bytes()).await;
    assert_eq!(again["report"]["identicalTo"], first["uploadId"], "{again}");
    // What the first inserted or matched is a duplicate now; conflicts and rejections stay.
    assert_eq!(counts(&again), [8, 0, 3, 1, 4]);
    assert_eq!(
        again["report"]["firstProblems"],
        first["report"]["firstProblems"]
    );
    assert_eq!(
        errors_csv(&app, &again).await,
        errors_csv(&app, &first).await
    );
    let (_, created) = app
        .get(
            &format!(
                "/v1/uploads/{}/records",
                again["uploadId"].as_str().unwrap()
            ),
            &app.key,
        )
        .await;
    assert_eq!(
        created["records"].as_array().map(Vec::len),
        Some(0),
        "{created}"
    );

    let mut per_row = Options::default();
    per_row.ingest.reuse_identical_files = false;
    let app = app.restart(per_row).await;
    let read = app.upload_and_wait(file.as_bytes()).await;
    assert!(read["report"]["identicalTo"].is_null(), "{read}");
    assert_eq!(counts(&read), counts(&again));
    assert_eq!(
        read["report"]["firstProblems"],
        again["report"]["firstProblems"]
    );
    assert_eq!(
        errors_csv(&app, &read).await,
        errors_csv(&app, &again).await
    );

    // Another provider's identical file is its own: nothing of PROV001's is reused.
    let app = app.restart(Options::default()).await;
    let id = app.upload(&app.other_key, file.as_bytes()).await;
    let other = app.wait_for_upload_as(&id, &app.other_key).await;
    assert!(other["report"]["identicalTo"].is_null(), "{other}");
    assert_eq!(counts(&other), [8, 2, 1, 1, 4]);
    app.stop().await;
}

/// The shortcut holds only while the rules that ended the rows are the same: a file with
/// a visit too far ahead (a rejection that may pass later) is read again, and so is a
/// file after a rule setting changed.
#[tokio::test]
async fn identical_files_are_read_again_when_time_or_the_rules_could_change_an_outcome() {
    let app = spawn_app().await;
    let ahead = ward_domain::UtcInstant::now()
        .plus_seconds(3 * 24 * 3600)
        .rfc3339_seconds();
    let future = format!("{HEADER}F1,{ahead},Ann,Lee,\nF2,2025-01-01T00:00:00Z,Bo,Li,\n");
    let first = app.upload_and_wait(future.as_bytes()).await;
    assert_eq!(counts(&first), [2, 1, 0, 0, 1]);
    let again = app.upload_and_wait(future.as_bytes()).await;
    assert!(again["report"]["identicalTo"].is_null(), "{again}");
    assert_eq!(counts(&again), [2, 0, 1, 0, 1]);

    let notes = format!("{HEADER}N1,2025-01-01T00:00:00Z,Ann,Lee,a note of 25 characters..\n");
    let first = app.upload_and_wait(notes.as_bytes()).await;
    assert_eq!(counts(&first), [1, 1, 0, 0, 0]);
    let mut strict = Options::default();
    strict.ingest.max_notes_chars = 10;
    let app = app.restart(strict).await;
    let again = app.upload_and_wait(notes.as_bytes()).await;
    assert!(again["report"]["identicalTo"].is_null(), "{again}");
    assert_eq!(counts(&again), [1, 0, 0, 0, 1], "the note is now too long");
    app.stop().await;
}

#[tokio::test]
async fn unusable_files_fail_as_a_whole_with_a_reason() {
    let app = spawn_app().await;
    let mut unterminated =
        format!("{HEADER}A1,2025-03-26T10:30:00Z,John,Doe,\"never closed").into_bytes();
    unterminated.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
    let cases: [(&[u8], &str); 4] = [
        (b"", "the file is empty"),
        (
            b"medical_record_number,first_name\nA,B\n",
            "missing required columns: date_time, last_name",
        ),
        (b"\x00\x01\x02PNG\xff\xfe\x00binary", "not UTF-8 text"),
        (
            &unterminated,
            "the record starting at line 2 is longer than 1048576 bytes",
        ),
    ];
    for (body, reason) in cases {
        let upload = app.upload_and_wait(body).await;
        assert_eq!(upload["status"], "failed", "{upload}");
        let failure = upload["report"]["failure"].as_str().unwrap();
        assert!(failure.contains(reason), "{failure}");
        assert!(upload["file"].as_str().unwrap().contains("/failed/"));
    }
    app.stop().await;
}

#[tokio::test]
async fn upload_records_and_listing_follow_the_file() {
    let app = spawn_app().await;
    // 37 patients with 4-5 visits each; later lines hold earlier visits.
    let mut csv = HEADER.to_owned();
    let mut expected = Vec::new();
    for i in 0..150u64 {
        let (mrn, minute) = (format!("P{}", i % 37), 149 - i);
        csv.push_str(&format!(
            "{mrn},2025-01-01T{:02}:{:02}:00Z,A,B,\n",
            minute / 60,
            minute % 60
        ));
        expected.push((app.patient_key("PROV001", &mrn), minute, i + 2));
    }
    expected.sort();
    let expected: Vec<u64> = expected.into_iter().map(|(_, _, line)| line).collect();
    let upload = app.upload_and_wait(csv.as_bytes()).await;
    let id = upload["uploadId"].as_str().unwrap();
    let mut lines = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .get(
                &format!("/v1/uploads/{id}/records?limit=40{cursor}"),
                &app.key,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        lines.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["sourceLine"].as_u64().unwrap()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(
        lines, expected,
        "every record once, by patient (its key), then time"
    );
    let second = app
        .upload_and_wait(b"medical_record_number,date_time,first_name,last_name\n")
        .await;
    let (_, list) = app.get("/v1/uploads?limit=1", &app.key).await;
    assert_eq!(
        list["uploads"][0]["uploadId"], second["uploadId"],
        "newest first"
    );
    let cursor = list["nextCursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/v1/uploads?limit=1&cursor={cursor}"), &app.key)
        .await;
    assert_eq!(rest["uploads"][0]["uploadId"], upload["uploadId"]);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes_and_every_route_needs_credentials() {
    let app = spawn_app().await;
    let (status, doc) = app
        .request(reqwest::Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = ward_api::ROUTES
        .iter()
        .map(|(m, p)| ((*m).into(), (*p).into()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    for (method, path) in ward_api::ROUTES {
        let concrete = concrete_path(path);
        let method: reqwest::Method = method.to_uppercase().parse().unwrap();
        let (status, _) = app.request(method.clone(), &concrete, None).await;
        let public = ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"].contains(path);
        let signed =
            path.starts_with("/v1/upload-objects/") || path.starts_with("/v1/document-objects/");
        let expected = if public {
            200
        } else if *path == "/v1/login" {
            // Public too: its body is the credential, and there is none.
            415
        } else if signed {
            403
        } else {
            401
        };
        assert_eq!(status, expected, "{method} {path}");
        let (status, _) = app
            .request(method, &concrete, Some("ward.PROV001.abcdef.wrong"))
            .await;
        if !public && !signed && *path != "/v1/login" {
            assert_eq!(status, 401, "{path} with a wrong key");
        }
    }
    let (status, body) = app.get("/v1/nothing-here", &app.key).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("urn:ward:problem:not-found"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_policy_keeps_the_operator_off_provider_routes_and_providers_off_operator_routes() {
    use ward_api::policy::{Admits, POLICY};
    let app = spawn_app().await;
    let mut checked = 0;
    for rule in POLICY {
        let method: reqwest::Method = rule.method.to_uppercase().parse().unwrap();
        let path = concrete_path(rule.route);
        let wrong_key = match rule.admits {
            Admits::Provider { .. } => crate::helpers::OPERATOR_KEY,
            Admits::Operator => app.key.as_str(),
            Admits::Anyone | Admits::SignedUrl | Admits::Authenticated => continue,
        };
        let (status, body) = app.request(method, &path, Some(wrong_key)).await;
        assert_eq!(status, 401, "{} {}: {body}", rule.method, rule.route);
        assert_eq!(body["type"], "urn:ward:problem:unauthorized", "{body}");
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} routes checked");
    let (status, me) = app.get("/v1/me", crate::helpers::OPERATOR_KEY).await;
    assert_eq!(
        (status, me["kind"].as_str()),
        (200, Some("operator")),
        "{me}"
    );
    assert!(me["providerId"].is_null(), "{me}");
    assert_eq!(app.get("/v1/me", "ward.PROV001.abcdef.wrong").await.0, 401);
    app.stop().await;
}

#[tokio::test]
async fn scoped_keys_reach_their_scopes_only_and_are_listed_and_revoked_one_by_one() {
    use ward_api::policy::{Admits, POLICY, Scope};
    let app = spawn_app().await;
    let (status, me) = app.get("/v1/me", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            me["kind"].as_str(),
            me["role"].as_str(),
            me["providerId"].as_str()
        ),
        (Some("api_key"), Some("provider_admin"), Some("PROV001"))
    );
    let (status, made) = app
        .post_json(
            "/v1/keys",
            &app.key,
            serde_json::json!({ "name": "lab uploader", "scopes": ["uploads:write", "uploads:read"], "expiresInDays": 30 }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let scoped = made["apiKey"].as_str().unwrap().to_owned();
    let key_id = made["keyId"].as_str().unwrap().to_owned();
    assert!(made["expiresAt"].is_string(), "{made}");
    let (_, me) = app.get("/v1/me", &scoped).await;
    assert_eq!(me["kind"], "scoped_key");
    assert!(me["role"].is_null(), "a scoped key has no role: {me}");
    assert_eq!(
        me["scopes"],
        serde_json::json!(["uploads:write", "uploads:read"])
    );
    // Every provider route: the scoped key reaches exactly the routes of its scopes.
    let granted = [Scope::UploadsWrite, Scope::UploadsRead];
    for rule in POLICY {
        let Admits::Provider { scope, .. } = rule.admits else {
            continue;
        };
        let method: reqwest::Method = rule.method.to_uppercase().parse().unwrap();
        let (status, body) = app
            .request(method, &concrete_path(rule.route), Some(&scoped))
            .await;
        if scope.is_some_and(|scope| granted.contains(&scope)) {
            assert_ne!(status, 403, "{} {}: {body}", rule.method, rule.route);
            assert_ne!(status, 401, "{} {}: {body}", rule.method, rule.route);
        } else {
            assert_eq!(status, 403, "{} {}: {body}", rule.method, rule.route);
            assert_eq!(body["type"], "urn:ward:problem:forbidden", "{body}");
        }
    }
    // Listed without secrets; the other provider sees none of them.
    let (status, listed) = app.get("/v1/keys", &app.key).await;
    assert_eq!(status, 200);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(
        !listed
            .to_string()
            .contains(scoped.rsplit('.').next().unwrap())
    );
    let (_, theirs) = app.get("/v1/keys", &app.other_key).await;
    assert!(!theirs.to_string().contains(&key_id), "{theirs}");
    let (status, _) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/keys/{key_id}"),
            Some(&app.other_key),
        )
        .await;
    assert_eq!(status, 404, "another provider cannot revoke it");
    // Refused requests: unknown scope, no scope, bad expiry.
    for body in [
        serde_json::json!({ "scopes": ["everything"] }),
        serde_json::json!({ "scopes": [] }),
        serde_json::json!({ "scopes": ["uploads:read"], "expiresInDays": 0 }),
    ] {
        let (status, problem) = app.post_json("/v1/keys", &app.key, body).await;
        assert_eq!(status, 400, "{problem}");
    }
    // Revoked one by one: the scoped key stops, the full key goes on.
    let (status, _) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/keys/{key_id}"),
            Some(&app.key),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.get("/v1/uploads", &scoped).await.0, 401);
    assert_eq!(app.get("/v1/uploads", &app.key).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn operators_create_providers_and_rotate_keys() {
    let app = spawn_app().await;
    let (status, created) = app
        .post_admin_provider(
            serde_json::json!({ "providerId": "CLINIC-9", "timeZone": "America/Los_Angeles" }),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["apiKey"].as_str().unwrap().to_owned();
    let (status, _) = app.get("/v1/uploads", &key).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .request(
            reqwest::Method::POST,
            "/v1/admin/providers/CLINIC-9/keys",
            Some(&app.key),
        )
        .await;
    assert_eq!(status, 401, "a provider key is not an operator key");
    // A second full key: the first keeps working.
    let (status, second) = app
        .request(
            reqwest::Method::POST,
            "/v1/admin/providers/CLINIC-9/keys",
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(app.get("/v1/uploads", &key).await.0, 200, "{second}");
    // The reset after a leak: every older key goes.
    let (status, rotated) = app
        .post_json(
            "/v1/admin/providers/CLINIC-9/keys",
            OPERATOR_KEY,
            serde_json::json!({ "revokeOthers": true }),
        )
        .await;
    assert_eq!(status, 201);
    for old in [key.as_str(), second["apiKey"].as_str().unwrap()] {
        assert_eq!(
            app.get("/v1/uploads", old).await.0,
            401,
            "the old key is revoked"
        );
    }
    assert_eq!(
        app.get("/v1/uploads", rotated["apiKey"].as_str().unwrap())
            .await
            .0,
        200
    );
    let (status, _) = app
        .post_admin_provider(serde_json::json!({ "providerId": "CLINIC-9" }))
        .await;
    assert_eq!(status, 409);
    let (status, _) = app
        .post_admin_provider(serde_json::json!({ "providerId": "bad/id" }))
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn a_provider_time_zone_reads_times_without_offset() {
    let app = spawn_app().await;
    let (_, created) = app
        .post_admin_provider(
            serde_json::json!({ "providerId": "LA", "timeZone": "America/Los_Angeles" }),
        )
        .await;
    let key = created["apiKey"].as_str().unwrap().to_owned();
    let id = app
        .upload(
            &key,
            format!("{HEADER}Z1,2025-03-26T10:30:00,Ann,Lee,\n").as_bytes(),
        )
        .await;
    let upload = app.wait_for_upload_as(&id, &key).await;
    assert_eq!(counts(&upload), [1, 1, 0, 0, 0], "{upload}");
    let (_, page) = app.get("/v1/patients/Z1/records", &key).await;
    assert_eq!(
        page["records"][0]["dateTimeUtc"],
        "2025-03-26T17:30:00.000000000Z"
    );
    app.stop().await;
}

/// The demo as a person runs it (a subprocess), with info logging: its logs (stderr) name
/// providers, uploads and routes, never an MRN, a name or a note.
#[test]
fn the_demo_runs_and_its_logs_hold_no_patient_data() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "demo",
            "--exit",
            "--rows",
            "500",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir.path().join("data"))
        .env("WARD_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("rows 500 = inserted"), "{stdout}");
    assert!(stdout.contains("visits in time order"), "{stdout}");
    assert!(
        stdout.contains("EMR: created 4 clinicians, 20 patients"),
        "{stdout}"
    );
    let timeline = stdout
        .split("everything in time order:")
        .nth(1)
        .expect("the demo prints a timeline");
    for kind in ["CSV visit", "appointment", "clinical note", "bill"] {
        assert!(
            timeline.contains(kind),
            "{kind} in the timeline: {timeline}"
        );
    }
    assert!(
        stderr.contains("upload finished"),
        "logging was on: {stderr}"
    );
    assert!(
        stderr.contains("/v1/patients/{mrn}/records"),
        "the route template is logged: {stderr}"
    );
    for patient_data in [
        "MRN0",
        "John",
        "García",
        "fever",
        "Doe",
        "@mail.example",
        "Atorvastatin",
        "Chest discomfort",
        "HbA1c",
    ] {
        assert!(
            !stderr.contains(patient_data),
            "{patient_data:?} appears in the logs:\n{stderr}"
        );
    }
}

/// The csv-spectrum shapes (comma in quotes, escaped quotes, JSON, newlines LF and CRLF,
/// quotes and newlines, UTF-8, empty), each as a visit's notes.
const SPECTRUM_NOTES: &[(&str, &str)] = &[
    ("\"John \"\"Da Man\"\"\"", "John \"Da Man\""),
    ("\"Baker, Rawley\"", "Baker, Rawley"),
    (
        "\"{\"\"a\"\": 1, \"\"b\"\": [\"\"x\"\"]}\"",
        "{\"a\": 1, \"b\": [\"x\"]}",
    ),
    ("\"line 1\nline 2\nline 3\"", "line 1\nline 2\nline 3"),
    (
        "\"line 1\r\nline 2\r\nline 3\"",
        "line 1\r\nline 2\r\nline 3",
    ),
    (
        "\"a \"\"quoted\"\"\r\nb, \"\"again\"\"\"",
        "a \"quoted\"\r\nb, \"again\"",
    ),
    ("\"ünïcödé ✓ 漢字\"", "ünïcödé ✓ 漢字"),
    ("\"\"", ""),
    ("plain", "plain"),
];

fn spectrum_file(line_break: &str, notes_break: &str) -> String {
    let mut csv = HEADER.replace('\n', line_break);
    for (n, (cell, _)) in SPECTRUM_NOTES.iter().enumerate() {
        let cell = cell.replace("\r\n", "\n").replace('\n', notes_break);
        csv.push_str(&format!(
            "SPEC{n},2025-03-26T10:30:00Z,Ann,Lee,{cell}{line_break}"
        ));
    }
    csv
}

#[tokio::test]
async fn notes_are_stored_exactly_as_sent_and_a_re_export_with_other_line_breaks_is_a_duplicate() {
    let app = spawn_app().await;
    // As sent: CRLF records, notes with the line breaks of SPECTRUM_NOTES.
    let mut sent = HEADER.replace('\n', "\r\n");
    for (n, (cell, _)) in SPECTRUM_NOTES.iter().enumerate() {
        sent.push_str(&format!("SPEC{n},2025-03-26T10:30:00Z,Ann,Lee,{cell}\r\n"));
    }
    let first = app.upload_and_wait(sent.as_bytes()).await;
    let n = SPECTRUM_NOTES.len() as u64;
    assert_eq!(counts(&first), [n, n, 0, 0, 0], "{first}");
    for (n, (_, stored)) in SPECTRUM_NOTES.iter().enumerate() {
        let (status, page) = app.get_patient_records(&format!("SPEC{n}"), "").await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["records"][0]["doctorsNotes"], *stored, "shape {n}");
    }
    // The same file re-exported on another system: LF records and LF notes, or CRLF
    // throughout. Every row is a duplicate (no conflict), and the stored text is unchanged.
    for (line_break, notes_break) in [("\n", "\n"), ("\r\n", "\r\n")] {
        let again = app
            .upload_and_wait(spectrum_file(line_break, notes_break).as_bytes())
            .await;
        assert_eq!(counts(&again), [n, 0, n, 0, 0], "{again}");
    }
    let (_, page) = app.get_patient_records("SPEC4", "").await;
    assert_eq!(
        page["records"][0]["doctorsNotes"],
        "line 1\r\nline 2\r\nline 3"
    );
    // Other content is still a conflict.
    let changed = spectrum_file("\n", "\n").replace("plain", "plain and changed");
    let changed = app.upload_and_wait(changed.as_bytes()).await;
    assert_eq!(counts(&changed), [n, 0, n - 1, 1, 0], "{changed}");
    app.stop().await;
}

#[tokio::test]
async fn the_clients_own_file_name_is_kept_on_the_upload_and_every_record_it_created() {
    let app = spawn_app().await;
    let post = |body: serde_json::Value| {
        app.http
            .post(format!("{}/v1/uploads", app.base_url))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
    };
    // Refused names: a path, control characters, too long, not text.
    for (name, why) in [
        (serde_json::json!("../../etc/passwd"), "path"),
        (serde_json::json!("a\u{0}b.csv"), "control"),
        (serde_json::json!("x".repeat(256)), "255"),
        (serde_json::json!(""), "empty"),
        (serde_json::json!(42), "string"),
    ] {
        let response = post(serde_json::json!({ "fileName": name })).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{why}");
        let problem: serde_json::Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("fileName") || (why == "string" && detail.contains("string")),
            "{why}: {problem}"
        );
    }
    let grant: serde_json::Value = post(serde_json::json!({ "fileName": "visits_march.csv" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = grant["url"].as_str().unwrap();
    assert!(
        !url.contains("visits_march"),
        "never in a key or path: {url}"
    );
    let csv = format!("{HEADER}F1,2025-03-26T10:30:00Z,Ann,Lee,\n");
    let (status, _) = app.put_file(url, csv.into_bytes()).await;
    assert_eq!(status, 200);
    let upload = app
        .wait_for_upload(grant["uploadId"].as_str().unwrap())
        .await;
    assert_eq!(upload["fileName"], "visits_march.csv", "{upload}");
    assert_eq!(upload["report"]["fileName"], "visits_march.csv", "{upload}");
    assert!(!upload["file"].as_str().unwrap().contains("visits_march"));
    let (_, listing) = app.get("/v1/uploads", &app.key).await;
    assert_eq!(
        listing["uploads"][0]["fileName"], "visits_march.csv",
        "{listing}"
    );
    let (_, page) = app.get_patient_records("F1", "").await;
    assert_eq!(
        page["records"][0]["sourceFileName"], "visits_march.csv",
        "{page}"
    );
    // Without a name, none is shown.
    let plain = app
        .upload_and_wait(format!("{HEADER}F2,2025-03-26T10:30:00Z,Ann,Lee,\n").as_bytes())
        .await;
    assert!(plain["fileName"].is_null());
    let (_, page) = app.get_patient_records("F2", "").await;
    assert!(page["records"][0].get("sourceFileName").is_none(), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn reports_and_problems_echo_a_bounded_part_of_hostile_names() {
    let app = spawn_app().await;
    // One 500 KB column name, then 100,000 short unknown columns: the report names the
    // first 20, shortened, with the count, and the upload completes with its rows.
    let long_name = "x".repeat(500_000);
    let csv = format!(
        "medical_record_number,date_time,first_name,last_name,{long_name}\n\
         H1,2025-03-26T10:30:00Z,Ann,Lee,whatever\n"
    );
    let upload = app.upload_and_wait(csv.as_bytes()).await;
    assert_eq!(
        upload["status"],
        "completed",
        "{}",
        &upload.to_string()[..500]
    );
    assert_eq!(counts(&upload), [1, 1, 0, 0, 0]);
    let unknown = upload["report"]["unknownColumns"].as_array().unwrap();
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].as_str().unwrap().chars().count() <= 103);
    assert_eq!(upload["report"]["unknownColumnCount"], 1);

    let many: Vec<String> = (0..100_000).map(|n| format!("c{n}")).collect();
    let header = format!(
        "medical_record_number,date_time,first_name,last_name,{}",
        many.join(",")
    );
    let row = format!("H2,2025-03-26T10:30:00Z,Ann,Lee{}", ",".repeat(100_000));
    let upload = app
        .upload_and_wait(format!("{header}\n{row}\n").as_bytes())
        .await;
    assert_eq!(upload["status"], "completed");
    assert_eq!(counts(&upload), [1, 1, 0, 0, 0]);
    assert_eq!(
        upload["report"]["unknownColumns"].as_array().unwrap().len(),
        20
    );
    assert_eq!(upload["report"]["unknownColumns"][0], "c0");
    assert_eq!(upload["report"]["unknownColumnCount"], 100_000);
    assert!(upload.to_string().len() < 10_000, "the report stays small");

    // An EMR body with 5,000 unknown fields of 300 characters each: 50 are named, each
    // shortened, and one more entry says there are more.
    let mut body = serde_json::Map::new();
    for n in 0..5_000 {
        body.insert(format!("{n:0>300}"), serde_json::json!(1));
    }
    let response = app
        .http
        .post(format!("{}/v1/patients", app.base_url))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let problem: serde_json::Value = response.json().await.unwrap();
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 51, "{}", &problem.to_string()[..300]);
    assert!(
        errors[..50]
            .iter()
            .all(|e| e["field"].as_str().unwrap().chars().count() <= 203)
    );
    assert!(
        errors[50]["reason"]
            .as_str()
            .unwrap()
            .contains("more invalid fields")
    );
    assert!(problem.to_string().len() < 20_000);
    app.stop().await;
}

/// `path` with its parameters filled in, as in the route sweeps.
fn concrete_path(path: &str) -> String {
    path.replace("{uploadId}", "20250101T000000Z-0000000000000000")
        .replace("{providerId}", "PROV001")
        .replace("{mrn}", "MRN1")
        .replace("{jobId}", "x")
        .replace("{runId}", "20250101T000000Z-0000000000000000")
        .replace("{file}", "per_state.json")
        .replace("{id}", "20250101T000000Z-0000000000000000")
        .replace("{clinic}", "NORTH")
        .replace("{keyId}", "abcdef")
        .replace("{userId}", "nobody")
}

fn is_problem(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

#[tokio::test]
async fn every_error_of_every_route_is_a_problem_document() {
    let app = spawn_app().await;
    let (_, doc) = app
        .request(reqwest::Method::GET, "/v1/openapi.json", None)
        .await;
    let key_for = |path: &str| {
        if path.starts_with("/v1/admin/") {
            OPERATOR_KEY.to_owned()
        } else {
            app.key.clone()
        }
    };
    let send = |method: reqwest::Method, url: String, key: String| {
        app.http.request(method, url).bearer_auth(key).send()
    };
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let operations = operations.as_object().unwrap();
        let url = format!("{}{}", app.base_url, concrete_path(path));
        // A method the route does not take: 405, a problem, and `Allow`.
        let unused = ["delete", "put", "patch"]
            .into_iter()
            .find(|method| !operations.contains_key(*method))
            .unwrap();
        let response = send(
            unused.to_uppercase().parse().unwrap(),
            url.clone(),
            key_for(path),
        )
        .await
        .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{unused} {path}");
        assert!(is_problem(&response), "{unused} {path}");
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        for method in operations.keys() {
            assert!(
                allow.contains(&method.to_uppercase()),
                "{path}: Allow {allow} lacks {method}"
            );
        }
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:ward:problem:method-not-allowed");
        for (method, operation) in operations {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            // The personal routes of other roles (a patient's access log) refuse the
            // administrator's key before they read a parameter.
            let admin_admitted =
                match ward_api::policy::rule_for(method.as_str(), path).map(|rule| rule.admits) {
                    Some(ward_api::policy::Admits::Provider { roles, .. }) => {
                        roles.contains(&ward_domain::Role::ProviderAdmin)
                    }
                    _ => true,
                };
            let takes_limit = admin_admitted
                && operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == "limit"));
            if takes_limit {
                for bad in ["abc", "-1", "1e3"] {
                    let response =
                        send(method.clone(), format!("{url}?limit={bad}"), key_for(path))
                            .await
                            .unwrap();
                    assert_eq!(
                        response.status().as_u16(),
                        400,
                        "{method} {path}?limit={bad}"
                    );
                    assert!(is_problem(&response), "{method} {path}?limit={bad}");
                    let problem: serde_json::Value = response.json().await.unwrap();
                    assert!(
                        problem["detail"].as_str().unwrap().contains("limit"),
                        "{method} {path}: {problem}"
                    );
                }
            }
            // A path segment that is not UTF-8.
            if let Some(start) = path.find('{') {
                let end = start + path[start..].find('}').unwrap();
                let broken = concrete_path(&format!("{}%FF{}", &path[..start], &path[end + 1..]));
                let response = send(
                    method.clone(),
                    format!("{}{broken}", app.base_url),
                    key_for(path),
                )
                .await
                .unwrap();
                let status = response.status().as_u16();
                assert!((400..500).contains(&status), "{method} {broken}: {status}");
                assert!(is_problem(&response), "{method} {broken}: {status}");
            }
            // Valid JSON in another media type: 415 where a JSON body is taken.
            let takes_json = admin_admitted
                && operation["requestBody"]["content"]
                    .as_object()
                    .is_some_and(|types| types.keys().any(|t| t.contains("json")));
            if takes_json {
                for content_type in ["text/plain", "application/xml"] {
                    let response = app
                        .http
                        .request(method.clone(), url.clone())
                        .bearer_auth(key_for(path))
                        .header("content-type", content_type)
                        .header("if-match", "\"1\"")
                        .body("{}")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        response.status().as_u16(),
                        415,
                        "{method} {path} as {content_type}"
                    );
                    assert!(is_problem(&response), "{method} {path}");
                }
            }
        }
    }
    app.stop().await;
}

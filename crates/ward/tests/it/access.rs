//! Who may see what, through HTTP: built-in users and their logins, the role x route
//! matrix generated from the policy table (every role, a scope-limited key, a patient of
//! another patient, a user of another provider), on the embedded store and on DynamoDB
//! Local; row-level rules, answers without clinical content, break-glass, the audit's
//! principal and a patient's access log.

use reqwest::Method;
use serde_json::{Value, json};
use ward_api::policy::{Admits, POLICY, Scope};
use ward_domain::Role;

use crate::helpers::{HEADER, TestApp, spawn_app};

const PASSWORD: &str = "correct horse battery staple";

/// The ids the matrix's requests name: the seeded items of PROV001.
struct Seeded {
    record: String,
    appointment: String,
    document: String,
    bill: String,
}

async fn made(app: &TestApp, path: &str, body: Value) -> String {
    let (status, answer) = app.post_json(path, &app.key, body).await;
    assert_eq!(status, 201, "{path}: {answer}");
    answer["id"].as_str().unwrap_or_default().to_owned()
}

/// Two patients, two clinicians; DR1 cares for MRN1 (a record and an appointment), nobody
/// for MRN2; a bill, a document, a CSV visit with notes.
async fn seed(app: &TestApp) -> Seeded {
    for (mrn, email) in [("MRN1", "ann@example.org"), ("MRN2", "bob@example.org")] {
        made(
            app,
            "/v1/patients",
            json!({"mrn": mrn, "firstName": "Ann", "lastName": "Lee", "dateOfBirth": "1985-06-15",
                   "sex": "FEMALE", "email": email, "clinic": "NORTH"}),
        )
        .await;
    }
    for id in ["DR1", "DR2"] {
        made(
            app,
            "/v1/clinicians",
            json!({"id": id, "firstName": "Sam", "lastName": "Smith",
                   "email": format!("{id}@example.org"), "licenceNumber": "L1",
                   "specialization": "Cardiology"}),
        )
        .await;
    }
    let record = made(
        app,
        "/v1/patients/MRN1/clinical-records",
        json!({"type": "CONSULTATION", "clinicianId": "DR1",
               "visit": {"date": "2025-02-01T08:00:00Z"}, "chiefComplaint": "private complaint"}),
    )
    .await;
    let appointment = made(
        app,
        "/v1/patients/MRN1/appointments",
        json!({"clinicianId": "DR1", "start": "2025-06-16T10:00:00Z", "durationMinutes": 30,
               "type": "CHECKUP", "mode": "VIRTUAL", "reason": "private reason"}),
    )
    .await;
    let bytes = b"%PDF-1.4 an ECG".to_vec();
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let document = made(
        app,
        "/v1/patients/MRN1/documents",
        json!({"type": "ECG_REPORT", "title": "12-lead ECG", "fileName": "ecg.pdf",
               "mediaType": "application/pdf", "sizeBytes": bytes.len(), "sha256": sha}),
    )
    .await;
    let bill = made(
        app,
        "/v1/patients/MRN1/bills",
        json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 500, "currency": "EUR",
               "status": "ISSUED"}),
    )
    .await;
    let csv = format!("{HEADER}MRN1,2025-01-05T09:00:00Z,Ann,Lee,secret visit note\n");
    let upload = app.upload_and_wait(csv.as_bytes()).await;
    assert_eq!(upload["status"], "completed", "{upload}");
    Seeded {
        record,
        appointment,
        document,
        bill,
    }
}

/// Makes a built-in user through the admin API and logs it in; its bearer token.
async fn user(app: &TestApp, admin_key: &str, provider: &str, user: Value) -> String {
    let mut body = user.clone();
    body["password"] = json!(PASSWORD);
    let (status, answer) = app.post_json("/v1/users", admin_key, body).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer.get("password").is_none() && answer.get("passwordHash").is_none());
    login(app, provider, user["userId"].as_str().unwrap(), PASSWORD).await
}

async fn login(app: &TestApp, provider: &str, user: &str, password: &str) -> String {
    let response = app
        .http
        .post(format!("{}/v1/login", app.base_url))
        .json(&json!({"providerId": provider, "userId": user, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "login {user}: {body}");
    assert_eq!(body["tokenType"], "Bearer");
    assert!(body["expiresIn"].as_i64().unwrap() <= 900);
    body["accessToken"].as_str().unwrap().to_owned()
}

/// One column of the matrix: who calls.
struct Caller {
    name: &'static str,
    token: String,
    /// The role the policy judges it by (`None`: a scoped key).
    role: Option<Role>,
    /// A scoped key's one scope.
    scope: Option<Scope>,
    /// Whether it reaches PROV001's MRN1 once the policy admits it.
    reaches_mrn1: bool,
    /// Whether it is of another provider (nothing of PROV001 exists for it).
    stranger: bool,
}

fn concrete(route: &str, seeded: &Seeded) -> String {
    let id = if route.contains("/clinical-records/") {
        &seeded.record
    } else if route.contains("/appointments/") {
        &seeded.appointment
    } else if route.contains("/documents/") {
        &seeded.document
    } else if route.contains("/bills/") {
        &seeded.bill
    } else {
        "DR1"
    };
    route
        .replace("{mrn}", "MRN1")
        .replace("{clinic}", "NORTH")
        .replace("{uploadId}", "20250101T000000Z-0000000000000000")
        .replace("{runId}", "20250101T000000Z-0000000000000000")
        .replace("{file}", "per_state.json")
        .replace("{keyId}", "abcdef")
        .replace("{userId}", "nobody")
        .replace("{id}", id)
}

/// The whole matrix on `app`: every provider route of the policy x every caller.
async fn role_matrix(app: &TestApp) {
    let seeded = seed(app).await;
    let mut callers = Vec::new();
    for (name, role, link) in [
        ("admin user", Role::ProviderAdmin, json!({})),
        (
            "clinician DR1",
            Role::Clinician,
            json!({"clinicianId": "DR1"}),
        ),
        ("front desk", Role::FrontDesk, json!({})),
        ("billing", Role::Billing, json!({})),
        ("patient MRN1", Role::Patient, json!({"mrn": "MRN1"})),
        ("patient MRN2", Role::Patient, json!({"mrn": "MRN2"})),
        (
            "clinician DR2",
            Role::Clinician,
            json!({"clinicianId": "DR2"}),
        ),
    ] {
        let mut body = link;
        body["userId"] = json!(name.replace(' ', "."));
        body["role"] = json!(role.as_str());
        let token = user(app, &app.key, "PROV001", body).await;
        callers.push(Caller {
            name,
            token,
            role: Some(role),
            scope: None,
            reaches_mrn1: !matches!(name, "patient MRN2" | "clinician DR2"),
            stranger: false,
        });
    }
    let (status, key) = app
        .post_json("/v1/keys", &app.key, json!({"scopes": ["records:read"]}))
        .await;
    assert_eq!(status, 201, "{key}");
    callers.push(Caller {
        name: "records:read key",
        token: key["apiKey"].as_str().unwrap().to_owned(),
        role: None,
        scope: Some(Scope::RecordsRead),
        reaches_mrn1: true,
        stranger: false,
    });
    let stranger = user(
        app,
        &app.other_key,
        "PROV002",
        json!({"userId": "admin.elsewhere", "role": "provider_admin"}),
    )
    .await;
    callers.push(Caller {
        name: "admin of PROV002",
        token: stranger,
        role: Some(Role::ProviderAdmin),
        scope: None,
        reaches_mrn1: false,
        stranger: true,
    });
    let mut cells = 0;
    for rule in POLICY {
        let Admits::Provider { roles, scope } = rule.admits else {
            continue;
        };
        let path = concrete(rule.route, &seeded);
        let method: Method = rule.method.to_uppercase().parse().unwrap();
        for caller in &callers {
            let admitted = match caller.role {
                Some(role) => roles.contains(&role),
                None => scope.is_some() && scope == caller.scope,
            };
            let (status, body) = app
                .request(method.clone(), &path, Some(&caller.token))
                .await;
            let cell = format!(
                "{} {} as {}: {status} {body}",
                rule.method, rule.route, caller.name
            );
            cells += 1;
            if !admitted {
                assert_eq!(status, 403, "{cell}");
                assert_eq!(body["type"], "urn:ward:problem:forbidden", "{cell}");
                continue;
            }
            assert!(status != 401 && status != 403, "{cell}");
            let of_mrn1 = rule.route.starts_with("/v1/patients/{mrn}");
            if of_mrn1 && !caller.reaches_mrn1 {
                // Out of reach, or another provider's: reads as absent, so existence does
                // not leak (another provider's CSV visits of "MRN1" are an empty list; a
                // write without its body or If-Match is refused for that first, whoever
                // the patient is).
                let empty = ["records", "items"]
                    .iter()
                    .any(|list| body[*list].as_array().is_some_and(Vec::is_empty));
                let malformed = rule.method != "get" && [400, 415, 428].contains(&status);
                assert!(
                    status == 404 || malformed || (caller.stranger && status == 200 && empty),
                    "{cell}"
                );
                continue;
            }
            if rule.method == "get" && of_mrn1 && !rule.route.ends_with("/content") {
                assert_eq!(status, 200, "{cell}");
                let text = body.to_string();
                let clinical = ["secret visit note", "private reason", "private complaint"];
                let sees = caller.role.is_none_or(|role| role.sees_clinical_content());
                for secret in clinical {
                    if !sees {
                        assert!(!text.contains(secret), "{cell} shows {secret}");
                    }
                }
            }
            if caller.stranger {
                let text = body.to_string();
                assert!(
                    !text.contains("PROV001") && !text.contains("secret"),
                    "{cell}"
                );
            }
        }
    }
    assert!(cells > 60 * callers.len() / 2, "only {cells} cells");
    // What an allowed reader does see: the clinician its patient's notes, the front
    // desk the same visit without them.
    let visits = |token: String| async move { app.get("/v1/patients/MRN1/records", &token).await };
    let clinician = &callers[1];
    let (status, records) = visits(clinician.token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(records["records"][0]["doctorsNotes"], "secret visit note");
    let (_, records) = visits(callers[2].token.clone()).await;
    assert_eq!(records["records"][0]["medicalRecordNumber"], "MRN1");
    assert!(
        records["records"][0].get("doctorsNotes").is_none(),
        "{records}"
    );
    let (_, timeline) = app
        .get("/v1/patients/MRN1/timeline", &callers[3].token)
        .await;
    let kinds: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"bill") && kinds.contains(&"visit"),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"clinicalRecord") && !kinds.contains(&"document"),
        "{kinds:?}"
    );
    // A clinician lists only its own partition: the patients it cares for, not others.
    let (status, _) = app
        .get("/v1/clinicians/DR2/appointments", &clinician.token)
        .await;
    assert_eq!(status, 404);
    let (status, mine) = app
        .get("/v1/clinicians/DR1/patients", &clinician.token)
        .await;
    assert_eq!(status, 200, "{mine}");
    let listed: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|patient| patient["id"].as_str())
        .collect();
    assert_eq!(listed, ["MRN1"], "{mine}");
    assert_eq!(
        app.get("/v1/clinicians/DR2/patients", &clinician.token)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_policy_says_on_the_embedded_store() {
    let app = spawn_app().await;
    role_matrix(&app).await;
    app.stop().await;
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn every_route_answers_every_role_as_the_policy_says_on_dynamodb() {
    let app = crate::aws::spawn_aws_app().await;
    role_matrix(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn users_log_in_and_failed_logins_are_throttled_without_saying_which_part_was_wrong() {
    let app = spawn_app().await;
    let token = user(
        &app,
        &app.key,
        "PROV001",
        json!({"userId": "desk.1", "role": "front_desk"}),
    )
    .await;
    let (status, me) = app.get("/v1/me", &token).await;
    assert_eq!(status, 200);
    assert_eq!(me["kind"], "user");
    assert_eq!(me["userId"], "desk.1");
    assert_eq!(me["role"], "front_desk");
    assert_eq!(me["signIn"], "password");
    assert_eq!(me["providerId"], "PROV001");
    // Users are the administrator's: a front desk token cannot list or make them.
    assert_eq!(app.get("/v1/users", &token).await.0, 403);
    let (status, users) = app.get("/v1/users", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(users["users"][0]["userId"], "desk.1");
    assert!(!users.to_string().contains("argon2"), "{users}");
    // Bad input, each named.
    for (body, field) in [
        (
            json!({"userId": "a#b", "role": "clinician", "password": PASSWORD}),
            "userId",
        ),
        (
            json!({"userId": "dr", "role": "surgeon", "password": PASSWORD}),
            "role",
        ),
        (
            json!({"userId": "dr", "role": "clinician", "password": PASSWORD}),
            "role",
        ),
        (
            json!({"userId": "dr", "role": "patient", "mrn": "M1", "password": "short"}),
            "password",
        ),
        (
            json!({"userId": "dr", "role": "billing", "mrn": "M1", "password": PASSWORD}),
            "role",
        ),
    ] {
        let (status, problem) = app.post_json("/v1/users", &app.key, body).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (400, Some(field)),
            "{problem}"
        );
    }
    let (status, _) = app
        .post_json(
            "/v1/users",
            &app.key,
            json!({"userId": "desk.1", "role": "billing", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 409);
    // Wrong password, unknown user, other provider: one answer.
    let attempt = |provider: &'static str, user: &'static str, password: &'static str| {
        app.http
            .post(format!("{}/v1/login", app.base_url))
            .json(&json!({"providerId": provider, "userId": user, "password": password}))
            .send()
    };
    for (provider, user, password) in [
        ("PROV001", "desk.1", "wrong password here"),
        ("PROV001", "nobody", PASSWORD),
        ("PROV002", "desk.1", PASSWORD),
    ] {
        let response = attempt(provider, user, password).await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:ward:problem:login-failed");
    }
    // Four more failures make five in a row: the account now waits, the right password
    // too, and the answer says how long.
    for _ in 0..4 {
        attempt("PROV001", "desk.1", "wrong password here")
            .await
            .unwrap();
    }
    let response = attempt("PROV001", "desk.1", PASSWORD).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ward:problem:login-throttled");
    // The audit trail: the user's logins (its wrong passwords too), and who made it.
    crate::emr::flush_audit(&app).await;
    let (_, logins) = app.get("/v1/audit?actor=user:desk.1", &app.key).await;
    let outcomes: Vec<&str> = logins["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"] == "LOGIN")
        .filter_map(|event| event["result"].as_str())
        .collect();
    assert!(outcomes.contains(&"SUCCESS"), "{logins}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| **outcome == "WRONG_PASSWORD")
            .count(),
        5,
        "{logins}"
    );
    let (_, all) = app.get("/v1/audit", &app.key).await;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["action"] == "CREATE"
                && event["resourceType"] == "USER"
                && event["resourceId"] == "desk.1"
                && event["signIn"] == "api_key"),
        "{all}"
    );
    // A disabled user's token still works until it expires, but it cannot log in again.
    let (status, _) = app
        .request(Method::PATCH, "/v1/users/desk.1", Some(&app.key))
        .await;
    assert_eq!(status, 415, "a PATCH without a body");
    let response = app
        .http
        .patch(format!("{}/v1/users/desk.1", app.base_url))
        .bearer_auth(&app.key)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // A tampered token is refused.
    let mut parts: Vec<&str> = token.split('.').collect();
    let raised = base64_json(&json!({"iss": "ward", "aud": "ward", "sub": "desk.1",
        "provider": "PROV001", "role": "provider_admin", "iat": 1, "nbf": 1, "exp": 4_000_000_000_i64}));
    parts[1] = &raised;
    assert_eq!(app.get("/v1/audit", &parts.join(".")).await.0, 401);
    assert_eq!(
        app.request(Method::DELETE, "/v1/users/desk.1", Some(&app.key))
            .await
            .0,
        204
    );
    assert_eq!(
        app.request(Method::DELETE, "/v1/users/desk.1", Some(&app.key))
            .await
            .0,
        404
    );
    app.stop().await;
}

fn base64_json(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn break_glass_opens_an_unrelated_patient_for_a_while_and_every_access_names_the_reason() {
    let app = spawn_app().await;
    seed(&app).await;
    let dr2 = user(
        &app,
        &app.key,
        "PROV001",
        json!({"userId": "dr2", "role": "clinician", "clinicianId": "DR2"}),
    )
    .await;
    let patient = user(
        &app,
        &app.key,
        "PROV001",
        json!({"userId": "ann", "role": "patient", "mrn": "MRN1"}),
    )
    .await;
    assert_eq!(app.get("/v1/patients/MRN1", &dr2).await.0, 404);
    let (status, problem) = app
        .post_json(
            "/v1/patients/MRN1/break-glass",
            &dr2,
            json!({"reason": "short"}),
        )
        .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (400, Some("reason"))
    );
    let reason = "unconscious patient in the emergency room";
    let (status, grant) = app
        .post_json(
            "/v1/patients/MRN1/break-glass",
            &dr2,
            json!({"reason": reason}),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["clinicianId"], "DR2");
    let (status, read) = app.get("/v1/patients/MRN1", &dr2).await;
    assert_eq!(status, 200, "{read}");
    // Still nobody else's: MRN2 stays closed to DR2.
    assert_eq!(app.get("/v1/patients/MRN2", &dr2).await.0, 404);
    // A patient cannot break glass, nor change what only staff change.
    let (status, _) = app
        .post_json(
            "/v1/patients/MRN1/break-glass",
            &patient,
            json!({"reason": reason}),
        )
        .await;
    assert_eq!(status, 403);
    // The administrator reviews the grants; the patient sees who accessed its record and
    // why.
    let (status, grants) = app.get("/v1/break-glass", &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(grants["items"][0]["reason"], reason);
    assert_eq!(app.get("/v1/break-glass", &dr2).await.0, 403);
    crate::emr::flush_audit(&app).await;
    let (status, log) = app.get("/v1/me/access-log", &patient).await;
    assert_eq!(status, 200, "{log}");
    let events = log["items"].as_array().unwrap();
    let emergency: Vec<&Value> = events
        .iter()
        .filter(|event| event["actor"] == "user:dr2")
        .collect();
    assert!(
        emergency
            .iter()
            .any(|event| event["action"] == "READ" && event["emergencyReason"] == reason),
        "{log}"
    );
    assert!(
        emergency
            .iter()
            .any(|event| event["action"] == "READ" && event["result"] == "NOT_FOUND"),
        "the refused read before the grant is in the log too: {log}"
    );
    assert!(
        events
            .iter()
            .all(|event| event["role"].is_string() || event["actor"] != "user:dr2")
    );
    assert!(
        events
            .iter()
            .all(|event| event.get("clientAddress").is_none())
    );
    // The audit trail names the principal, its role and how it signed in.
    let (_, audit) = app.get("/v1/audit?patient=MRN1", &app.key).await;
    let by_dr2 = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["actor"] == "user:dr2" && event["action"] == "BREAK_GLASS")
        .cloned()
        .unwrap_or_default();
    assert_eq!(by_dr2["role"], "clinician", "{audit}");
    assert_eq!(by_dr2["signIn"], "password");
    assert_eq!(by_dr2["emergencyReason"], reason);
    // Another patient's access log is not reachable: /v1/me/access-log is the caller's.
    let other = user(
        &app,
        &app.key,
        "PROV001",
        json!({"userId": "bob", "role": "patient", "mrn": "MRN2"}),
    )
    .await;
    let (_, log) = app.get("/v1/me/access-log", &other).await;
    let items = log["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{log}");
    assert!(
        items.iter().all(|event| event["patient"] == "MRN2"),
        "{log}"
    );
    // A patient changes its contact details, not its name.
    let change = |body: Value, token: String| {
        let app = &app;
        async move {
            app.http
                .patch(format!("{}/v1/patients/MRN1", app.base_url))
                .bearer_auth(token)
                .header("if-match", "\"1\"")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let refused = change(json!({"lastName": "Other"}), patient.clone()).await;
    assert_eq!(refused.status().as_u16(), 400);
    let changed = change(json!({"phone": "+15551234567"}), patient.clone()).await;
    assert_eq!(changed.status().as_u16(), 200);
    app.stop().await;
}

//! Facility analytics through the HTTP API, as an outside client uses it: a facility file
//! through a pre-signed URL, the run it starts, on-demand runs, result downloads, ad hoc
//! SQL; and another provider's key sees none of it.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, spawn_app, spawn_app_with};

const FACILITIES: &str = r#"{"sample_data": [
 {"facility_id": "FAC001", "facility_name": "=cmd|' /C calc'!A0", "location": {"state": "TX", "city": "Austin"},
  "employee_count": 250, "services": ["Emergency Care"],
  "accreditations": [{"accreditation_body": "Joint Commission", "accreditation_id": "JC-1", "valid_until": "2026-03-15"},
                     {"accreditation_body": "CARF", "accreditation_id": "CARF-1", "valid_until": "2025-06-30"}]},
 {"facility_id": "FAC002", "facility_name": "Dallas Clinic", "location": {"state": "TX"}, "employee_count": 40,
  "accreditations": [{"accreditation_body": "NCQA", "accreditation_id": "N-2", "valid_until": "2027-01-10"}]},
 {"facility_id": "FAC003", "facility_name": "Sacramento Kids", "location": {"state": "CA"}, "employee_count": 120},
 {"facility_id": "FAC004", "location": {"state": "XX"}, "employee_count": 5}
]}"#;

async fn post(app: &TestApp, path: &str, key: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.base_url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn upload_facilities(app: &TestApp, body: &str) -> Value {
    upload_facilities_as(app, &app.key.clone(), body).await
}

async fn upload_facilities_as(app: &TestApp, key: &str, body: &str) -> Value {
    let (status, grant) = post(app, "/v1/uploads", key, json!({"kind": "facilities"})).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["kind"], "facilities");
    assert_eq!(grant["headers"]["content-type"], "application/json");
    let response = app
        .http
        .put(grant["url"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    app.wait_for_upload_as(grant["uploadId"].as_str().unwrap(), key)
        .await
}

async fn wait_for_run(app: &TestApp, run_id: &str) -> Value {
    for _ in 0..600 {
        let (status, run) = app
            .get(&format!("/v1/analytics/runs/{run_id}"), &app.key)
            .await;
        assert_eq!(status, 200, "{run}");
        if matches!(run["status"].as_str(), Some("completed" | "failed")) {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("run {run_id} did not finish");
}

#[tokio::test]
async fn a_facility_upload_runs_the_standard_queries_and_results_download() {
    let app = spawn_app().await;
    let upload = upload_facilities(&app, FACILITIES).await;
    assert_eq!(upload["status"], "completed", "{upload}");
    assert_eq!(upload["kind"], "facilities");
    assert!(upload["file"].as_str().unwrap().ends_with(".json"));
    let report = &upload["report"];
    assert_eq!(report["counts"]["inserted"], 3);
    assert_eq!(report["counts"]["rejected"], 1);
    assert_eq!(report["firstProblems"][0]["column"], "location.state");
    assert_eq!(report["firstProblems"][0]["index"], 3);
    // The run the upload started.
    let started = wait_for_run(&app, report["analyticsRun"].as_str().unwrap()).await;
    assert_eq!(started["status"], "completed", "{started}");
    assert_eq!(started["sourceUpload"], upload["uploadId"]);
    // An on-demand run on a fixed date.
    let (status, queued) = post(
        &app,
        "/v1/analytics/runs",
        &app.key,
        json!({"asOf": "2025-11-20", "monthsAhead": 6}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let run = wait_for_run(&app, queued["runId"].as_str().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run}");
    let per_state = &run["results"][0];
    assert_eq!(per_state["queryId"], "per_state");
    let (status, document) = app.get(per_state["json"].as_str().unwrap(), &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(
        document["results"],
        json!([
            {"state": "CA", "facility_count": 1, "total_employees": 120, "accredited_facilities": 0, "valid_accreditations": 0},
            {"state": "TX", "facility_count": 2, "total_employees": 290, "accredited_facilities": 2, "valid_accreditations": 2},
        ])
    );
    let (status, csv) = app
        .get(
            &format!(
                "/v1/analytics/runs/{}/results/facility_summary.csv",
                run["runId"].as_str().unwrap()
            ),
            &app.key,
        )
        .await;
    assert_eq!(status, 200);
    let csv = csv.as_str().unwrap().to_owned();
    assert!(
        csv.starts_with("facility_id,facility_name,employee_count,"),
        "{csv}"
    );
    assert!(
        csv.contains("FAC001,'=cmd|' /C calc'!A0,250,"),
        "a formula is defused: {csv}"
    );
    // Runs are listed newest first.
    let (_, list) = app.get("/v1/analytics/runs", &app.key).await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 2);
    assert_eq!(list["runs"][0]["runId"], run["runId"]);
    // Ad hoc SQL over the caller's own tables.
    let (status, answer) = post(
        &app,
        "/v1/analytics/sql",
        &app.key,
        json!({"sql": "SELECT state, count(*) AS n FROM facilities GROUP BY state ORDER BY state"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["rows"],
        json!([{"state": "CA", "n": 1}, {"state": "TX", "n": 2}])
    );
    let (status, refused) = post(
        &app,
        "/v1/analytics/sql",
        &app.key,
        json!({"sql": "DROP TABLE facilities"}),
    )
    .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (400, Some("urn:ward:problem:sql-refused"))
    );
    let (status, bad) = post(
        &app,
        "/v1/analytics/runs",
        &app.key,
        json!({"asOf": "2025-02-30"}),
    )
    .await;
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("asOf")),
        "{bad}"
    );
    let (status, bad) = post(&app, "/v1/uploads", &app.key, json!({"kind": "pictures"})).await;
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("kind")),
        "{bad}"
    );
    app.stop().await;
}

#[tokio::test]
async fn another_providers_key_sees_no_run_result_or_facility() {
    let app = spawn_app().await;
    let upload = upload_facilities(&app, FACILITIES).await;
    let run_id = upload["report"]["analyticsRun"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_run(&app, &run_id).await;
    for path in [
        format!("/v1/analytics/runs/{run_id}"),
        format!("/v1/analytics/runs/{run_id}/results/per_state.json"),
        format!("/v1/analytics/runs/{run_id}/results/per_state.csv"),
    ] {
        let (status, body) = app.get(&path, &app.other_key).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.to_string().contains("FAC00"), "{body}");
    }
    let (_, list) = app.get("/v1/analytics/runs", &app.other_key).await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 0);
    // The other provider has no facilities: its SQL sees none of PROV001's.
    let (status, body) = post(
        &app,
        "/v1/analytics/sql",
        &app.other_key,
        json!({"sql": "SELECT * FROM facilities"}),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("urn:ward:problem:not-ready")),
        "{body}"
    );
    // Once it has its own, it sees exactly those.
    let mine = r#"{"facility_id": "OTHER1", "location": {"state": "NY"}, "employee_count": 7}"#;
    let (status, grant) = post(
        &app,
        "/v1/uploads",
        &app.other_key,
        json!({"kind": "facilities"}),
    )
    .await;
    assert_eq!(status, 201);
    let response = app
        .http
        .put(grant["url"].as_str().unwrap())
        .body(mine)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    for _ in 0..600 {
        let (status, body) = post(
            &app,
            "/v1/analytics/sql",
            &app.other_key,
            json!({"sql": "SELECT facility_id FROM facilities"}),
        )
        .await;
        if status == 200 {
            assert_eq!(body["rows"], json!([{"facility_id": "OTHER1"}]));
            app.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the other provider's facility upload never became queryable");
}

/// The peak resident memory of this process (the test server runs in it), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

async fn sql_as(app: &TestApp, key: &str, sql: &str) -> (u16, Value, std::time::Duration) {
    let started = std::time::Instant::now();
    let (status, body) = post(app, "/v1/analytics/sql", key, json!({ "sql": sql })).await;
    (status, body, started.elapsed())
}

fn hostile_options() -> Options {
    let mut options = Options::default();
    // Wall-clock time: on a loaded 2-core machine the lowered-priority child of a
    // trivial query can wait seconds for a core, so the limit leaves room for that.
    options.ingest.analytics.query_timeout = std::time::Duration::from_secs(6);
    options.ingest.analytics.query_memory_bytes = 64 << 20;
    options
}

#[tokio::test]
async fn a_query_is_held_to_its_memory_limit_even_below_what_the_allocator_reserves() {
    // 600 MB of one string: past the child's limit (64 MiB of pool and its room), but less
    // than the 1 GiB its allocator reserved at start by default, from which it was once
    // served unchecked.
    let app = spawn_app_with(hostile_options()).await;
    upload_facilities(&app, FACILITIES).await;
    let (status, problem, _) =
        sql_as(&app, &app.key, "SELECT length(repeat('x', 600000000)) AS n").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:ward:problem:sql-refused")),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("memory"),
        "{problem}"
    );
    // What fits is answered, though it needs memory mapped anew (one 40 MB value).
    let (status, answer, _) =
        sql_as(&app, &app.key, "SELECT length(repeat('x', 40000000)) AS n").await;
    assert_eq!(
        (status, &answer["rows"][0]["n"]),
        (200, &json!(40_000_000)),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn no_sql_text_takes_the_server_down_or_starves_another_provider() {
    let app = spawn_app_with(hostile_options()).await;
    upload_facilities(&app, FACILITIES).await;
    let other = app.other_key.clone();
    upload_facilities_as(&app, &other, FACILITIES).await;
    let huge_literal = format!("SELECT length('{}') AS n", "x".repeat(99_000));
    let hostile = [
        "SELECT length(repeat(arrow_cast('x','LargeUtf8'), 8000000000))",
        "SELECT length(repeat('x', 2000000000))",
        "SELECT cardinality(array_repeat(1, 2000000000))",
        "SELECT length(lpad('x', 2147483647, 'y'))",
        "SELECT string_agg(repeat('x', 1000000), ',') FROM generate_series(1, 100000)",
        "SELECT count(*) FROM generate_series(1, 10000000000000)",
        "SELECT count(*) FROM range(1, 9223372036854775807)",
        "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
        "SELECT * FROM generate_series(1, 1000000000) ORDER BY 1 DESC",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    ];
    let timeout = std::time::Duration::from_secs(6);
    for sql in hostile {
        let (status, problem, elapsed) = sql_as(&app, &app.key, sql).await;
        assert!(matches!(status, 400 | 422), "{sql}: {status} {problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:ward:problem:sql-"),
            "{sql}: {problem}"
        );
        assert!(
            elapsed < timeout + std::time::Duration::from_secs(4),
            "{sql} took {elapsed:?}"
        );
        // The server and the other provider are unharmed.
        let (status, answer, _) =
            sql_as(&app, &other, "SELECT count(*) AS n FROM facilities").await;
        assert_eq!(
            (status, &answer["rows"][0]["n"]),
            (200, &json!(3)),
            "after {sql}: {answer}"
        );
    }
    // The memory-building queries were refused for memory, not for time.
    let (_, problem, _) = sql_as(&app, &app.key, hostile[0]).await;
    assert_eq!(problem["type"], "urn:ward:problem:sql-refused", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("memory"),
        "{problem}"
    );
    // A huge literal is just a query.
    let (status, answer, _) = sql_as(&app, &app.key, &huge_literal).await;
    assert_eq!((status, &answer["rows"][0]["n"]), (200, &json!(99_000)));
    // None of it reached the server's own memory.
    assert!(
        peak_rss_bytes() < 1 << 30,
        "the test server peaked at {} MiB",
        peak_rss_bytes() >> 20
    );
    app.stop().await;
}

#[tokio::test]
async fn queries_are_limited_per_provider_and_shutdown_cancels_them() {
    let app = spawn_app_with(hostile_options()).await;
    upload_facilities(&app, FACILITIES).await;
    let other = app.other_key.clone();
    upload_facilities_as(&app, &other, FACILITIES).await;
    let slow = "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b";
    let base_url = app.base_url.clone();
    let key = app.key.clone();
    let running = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base_url}/v1/analytics/sql"))
            .bearer_auth(key)
            .json(&json!({ "sql": slow }))
            .send()
            .await
            .map(|response| response.status().as_u16())
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // A second query of the same provider is refused while the first runs...
    let response = app
        .http
        .post(format!("{}/v1/analytics/sql", app.base_url))
        .bearer_auth(&app.key)
        .json(&json!({ "sql": "SELECT 1 AS one" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ward:problem:busy", "{problem}");
    // ...while another provider's query answers at once.
    let (status, _, elapsed) = sql_as(&app, &other, "SELECT count(*) AS n FROM facilities").await;
    assert_eq!(status, 200);
    assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    // Shutdown ends the running query instead of waiting for its time limit.
    let stopping = std::time::Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(3),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    match running.await.unwrap() {
        Ok(status) => assert_eq!(status, 503),
        Err(error) => assert!(error.is_connect() || error.is_request(), "{error}"),
    }
}

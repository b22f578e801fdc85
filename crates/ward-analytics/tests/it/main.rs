//! Facility analytics end to end on the embedded store and a local object store: upload
//! -> validation -> Parquet dataset -> standard queries -> JSON and CSV results; ad hoc
//! SQL and its sandbox.

mod sandbox;

use std::sync::Arc;
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use ward_analytics::FacilityAnalytics;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, RunId, UploadId, UtcInstant};
use ward_ingest::{IngestContext, IngestSettings, Worker};
use ward_ports::{
    AnalyticsRun, AnalyticsSettings, Job, RunRequest, RunStatus, TableJobQueue, Upload,
    UploadStatus,
};
use ward_store::Table;
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

pub struct Fixture {
    pub ctx: Arc<IngestContext>,
    _dir: tempfile::TempDir,
}

pub fn fixture_with(analytics: AnalyticsSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("objects")).unwrap());
    let queue = Arc::new(TableJobQueue::new(Arc::clone(&table), "jobs"));
    let settings = IngestSettings {
        retry_base: Duration::ZERO,
        ..IngestSettings::default()
    };
    let pseudonyms = Arc::new(ward_domain::Pseudonyms::new(&[2; 32]));
    let ctx = IngestContext::new(table, pseudonyms, objects, queue, settings)
        .with_analytics(Arc::new(FacilityAnalytics::new(analytics)));
    Fixture {
        ctx: Arc::new(ctx),
        _dir: dir,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(AnalyticsSettings::default())
}

pub fn provider(id: &str) -> ProviderId {
    ProviderId::parse(id).unwrap()
}

/// Stores a facility file as a received upload and runs the worker until the queue is
/// empty (the upload, then the run it starts).
pub async fn upload_at(fx: &Fixture, provider: &ProviderId, body: &[u8], at: &str) -> Upload {
    let now = UtcInstant::parse_rfc3339(at).unwrap();
    let id = UploadId::new(now, rand_bits(body));
    let mut upload = Upload::pending(provider.clone(), id.clone(), now, 900);
    upload.kind = UploadKind::Facilities;
    upload.status = UploadStatus::Received;
    fx.ctx.uploads.create(&upload).await.unwrap();
    let key = key_layout::upload_object_key(provider, ObjectStage::Uploaded, &id, upload.kind);
    fx.ctx
        .objects
        .put(&ObjectPath::from(key), body.to_vec().into())
        .await
        .unwrap();
    fx.ctx
        .queue
        .enqueue(Job::for_upload(provider, &id, upload.kind))
        .await
        .unwrap();
    drain(fx).await;
    fx.ctx.uploads.get(provider, &id).await.unwrap().unwrap()
}

pub async fn upload(fx: &Fixture, provider: &ProviderId, body: &[u8]) -> Upload {
    upload_at(fx, provider, body, "2025-11-20T09:00:00Z").await
}

fn rand_bits(body: &[u8]) -> u64 {
    body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

pub async fn drain(fx: &Fixture) {
    let worker = Worker::new(Arc::clone(&fx.ctx));
    for _ in 0..50 {
        if worker.process_next().await.unwrap().is_none() {
            return;
        }
    }
    panic!("the queue did not drain");
}

/// Runs the standard queries on demand for a run date; returns the finished run.
pub async fn run_on(fx: &Fixture, provider: &ProviderId, as_of: &str, months: u32) -> AnalyticsRun {
    let id = RunId::new(UtcInstant::now(), rand_bits(as_of.as_bytes()) ^ 1);
    let run = AnalyticsRun::queued(
        provider,
        &id,
        RunRequest {
            as_of: as_of.into(),
            months_ahead: months,
        },
        None,
    );
    assert!(fx.ctx.runs.create(&run).await.unwrap());
    fx.ctx
        .queue
        .enqueue(Job::AnalyticsRun {
            provider: provider.clone(),
            run: id.clone(),
        })
        .await
        .unwrap();
    drain(fx).await;
    fx.ctx.runs.get(provider, &id).await.unwrap().unwrap()
}

pub async fn result_json(fx: &Fixture, run: &AnalyticsRun, query: &str) -> Value {
    let summary = run
        .results
        .iter()
        .find(|r| r.query_id == query)
        .unwrap_or_else(|| panic!("no {query} in {run:?}"));
    let bytes = fx
        .ctx
        .objects
        .get(&ObjectPath::from(summary.json_file.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn read_text(fx: &Fixture, key: &str) -> String {
    let bytes = fx
        .ctx
        .objects
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Three facilities in the seed's shape (an object wrapping the array).
pub const SAMPLE: &str = r#"{"sample_data": [
  {"facility_id": "FAC001", "facility_name": "Austin General Hospital",
   "location": {"address": "100 Congress Ave", "city": "Austin", "state": "TX", "zip": "78701"},
   "employee_count": 250,
   "services": ["Emergency Care", "Surgery", "Radiology"],
   "labs": [{"lab_name": "Central Lab", "certifications": ["CLIA", "CAP"]},
            {"lab_name": "Imaging Lab", "certifications": ["ACR"]}],
   "accreditations": [
     {"accreditation_body": "Joint Commission", "accreditation_id": "JC-1001", "valid_until": "2026-03-15"},
     {"accreditation_body": "CARF", "accreditation_id": "CARF-77", "valid_until": "2025-06-30"}]},
  {"facility_id": "FAC002", "facility_name": "Dallas Family Clinic",
   "location": {"address": "5 Elm St", "city": "Dallas", "state": "TX", "zip": "75201"},
   "employee_count": 40,
   "services": ["Primary Care"],
   "labs": [],
   "accreditations": [
     {"accreditation_body": "NCQA", "accreditation_id": "NCQA-2002", "valid_until": "2027-01-10"}]},
  {"facility_id": "FAC003", "facility_name": "Sacramento Children's",
   "location": {"address": "9 J St", "city": "Sacramento", "state": "CA", "zip": "95814"},
   "employee_count": 120,
   "services": ["Pediatrics", "Emergency Care"],
   "labs": [{"lab_name": "Pediatric Lab", "certifications": ["CLIA"]}],
   "accreditations": []}
]}"#;

#[tokio::test]
async fn the_seed_sample_gives_the_hand_computed_answers() {
    let fx = fixture();
    let p = provider("PROV001");
    let done = upload(&fx, &p, SAMPLE.as_bytes()).await;
    assert_eq!(done.status, UploadStatus::Completed, "{:?}", done.report);
    let report = done.report.unwrap();
    assert_eq!(
        (
            report.counts.rows,
            report.counts.inserted,
            report.counts.rejected
        ),
        (3, 3, 0)
    );
    // The upload started a run (on today's date) that completed.
    let started = fx
        .ctx
        .runs
        .get(
            &p,
            &RunId::parse(report.analytics_run.as_deref().unwrap()).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        started.status,
        RunStatus::Completed,
        "{:?}",
        started.failure
    );
    assert_eq!(started.source_upload.as_deref(), Some(done.id.as_str()));

    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.failure);
    let per_state = result_json(&fx, &run, "per_state").await;
    assert_eq!(per_state["query_id"], "per_state");
    assert_eq!(per_state["result_count"], 2);
    assert_eq!(per_state["as_of"], "2025-11-20");
    assert!(
        per_state["source_file"]
            .as_str()
            .unwrap()
            .starts_with("PROV001/datasets/facilities/")
    );
    // FAC001 has two accreditations: a join that multiplied it would give 540 employees.
    assert_eq!(
        per_state["results"],
        json!([
            {"state": "CA", "facility_count": 1, "total_employees": 120,
             "accredited_facilities": 0, "valid_accreditations": 0},
            {"state": "TX", "facility_count": 2, "total_employees": 290,
             "accredited_facilities": 2, "valid_accreditations": 2},
        ])
    );
    // 2025-11-20 + 6 months = 2026-05-20: only JC-1001 (CARF-77 has expired, NCQA is later).
    let expiring = result_json(&fx, &run, "expiring_accreditations").await;
    assert_eq!(
        expiring["results"],
        json!([{"facility_id": "FAC001", "facility_name": "Austin General Hospital",
                "state": "TX", "accreditation_body": "Joint Commission",
                "accreditation_id": "JC-1001", "valid_until": "2026-03-15", "days_left": 115}])
    );
    let summary = result_json(&fx, &run, "facility_summary").await;
    assert_eq!(
        summary["results"],
        json!([
            {"facility_id": "FAC001", "facility_name": "Austin General Hospital", "employee_count": 250,
             "number_of_services": 3, "number_of_labs": 2, "earliest_accreditation_expiry": "2025-06-30"},
            {"facility_id": "FAC002", "facility_name": "Dallas Family Clinic", "employee_count": 40,
             "number_of_services": 1, "number_of_labs": 0, "earliest_accreditation_expiry": "2027-01-10"},
            {"facility_id": "FAC003", "facility_name": "Sacramento Children's", "employee_count": 120,
             "number_of_services": 2, "number_of_labs": 1, "earliest_accreditation_expiry": null},
        ])
    );
    // The CSV twin of each result, under the run's prefix.
    let csv_key = &run
        .results
        .iter()
        .find(|r| r.query_id == "per_state")
        .unwrap()
        .csv_file;
    assert_eq!(
        csv_key,
        &format!("PROV001/results/{}/per_state.csv", run.run_id)
    );
    assert_eq!(
        read_text(&fx, csv_key).await,
        "state,facility_count,total_employees,accredited_facilities,valid_accreditations\r\n\
         CA,1,120,0,0\r\nTX,2,290,2,2\r\n"
    );
    // A later run date changes the answer (reproducible by as_of, not by the clock).
    let later = run_on(&fx, &p, "2026-06-01", 12).await;
    let per_state = result_json(&fx, &later, "per_state").await;
    assert_eq!(per_state["results"][1]["valid_accreditations"], 1);
    let expiring = result_json(&fx, &later, "expiring_accreditations").await;
    assert_eq!(expiring["results"][0]["accreditation_id"], "NCQA-2002");
    assert_eq!(expiring["results"][0]["days_left"], 223);
}

#[tokio::test]
async fn json_lines_and_plain_arrays_are_accepted_too() {
    let fx = fixture();
    let p = provider("PROV001");
    let doc: Value = serde_json::from_str(SAMPLE).unwrap();
    let records = doc["sample_data"].as_array().unwrap();
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    let done = upload(&fx, &p, lines.as_bytes()).await;
    assert_eq!(done.report.unwrap().counts.inserted, 3);
    let array = serde_json::to_string_pretty(records).unwrap();
    let again = upload_at(&fx, &p, array.as_bytes(), "2025-11-21T09:00:00Z").await;
    let report = again.report.unwrap();
    assert_eq!((report.counts.rows, report.counts.inserted), (3, 3));
    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    let per_state = result_json(&fx, &run, "per_state").await;
    assert_eq!(
        per_state["results"][1]["total_employees"], 290,
        "one row per facility id"
    );
}

#[tokio::test]
async fn each_bad_record_is_named_by_line_index_field_and_reason() {
    let fx = fixture();
    let p = provider("PROV001");
    let lines = concat!(
        r#"{"facility_id":"FAC1","location":{"state":"TX"},"employee_count":10}"#,
        "\n",
        r#"{"facility_id":"bad id!","location":{"state":"TX"},"employee_count":10}"#,
        "\n",
        "\n",
        r#"{"facility_id":"FAC3","location":{"state":"ZZ"},"employee_count":-4}"#,
        "\n",
        r#"{"facility_id":"FAC4","location":{"state":"ca"},"employee_count":"12"}"#,
        "\n",
        r#"{"facility_id":"FAC5","location":{"state":"NY"},"employee_count":3,"accreditations":[{"accreditation_body":"DNV","accreditation_id":"D1","valid_until":"2025-02-30"}]}"#,
        "\n",
        r#"{"facility_id":"FAC6", "location": {"state": "NY"}, oops"#,
        "\n",
        r#"[1,2]"#,
        "\n",
        r#"{"facility_id":"FAC1","location":{"state":"TX"},"employee_count":11}"#,
        "\n",
    );
    let done = upload(&fx, &p, lines.as_bytes()).await;
    assert_eq!(done.status, UploadStatus::Completed);
    let report = done.report.unwrap();
    assert_eq!(report.counts.rows, 8);
    assert_eq!(
        report.counts.inserted, 1,
        "FAC1 once, its later record kept"
    );
    assert_eq!(report.counts.duplicate, 1);
    assert_eq!(report.counts.rejected, 6);
    let problems: Vec<(u64, &str, &str)> = report
        .first_problems
        .iter()
        .map(|p| (p.line, p.column.as_str(), p.reason.as_str()))
        .collect();
    let has = |line: u64, field: &str, reason: &str| {
        assert!(
            problems
                .iter()
                .any(|(l, f, r)| *l == line && *f == field && r.contains(reason)),
            "no ({line}, {field}, {reason}) in {problems:#?}"
        );
    };
    has(1, "facility_id", "appears again on line 9");
    has(2, "facility_id", "must be 1-64 letters");
    has(4, "location.state", "not a known two-letter");
    has(4, "employee_count", "must not be negative");
    has(
        5,
        "employee_count",
        "must be a non-negative integer, not a string",
    );
    has(6, "accreditations[0].valid_until", "real date");
    has(7, "record", "is not one JSON value");
    has(8, "record", "must be a JSON object");
    // The full list is the errors CSV beside the completed file.
    let errors = read_text(
        &fx,
        &key_layout::errors_object_key(&p, ObjectStage::Completed, &done.id),
    )
    .await;
    assert!(
        errors.starts_with("line,index,outcome,field,reason\r\n"),
        "{errors}"
    );
    assert!(
        errors.contains("6,,rejected,accreditations[0].valid_until,"),
        "{errors}"
    );
    // Only the valid facility (its later record) is in the dataset.
    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    let summary = result_json(&fx, &run, "facility_summary").await;
    assert_eq!(summary["result_count"], 1);
    assert_eq!(summary["results"][0]["employee_count"], 11);

    // In an array, problems carry the element's index and the line it starts on.
    let array = "[\n  {\"facility_id\": \"FACA\", \"location\": {\"state\": \"TX\"}, \"employee_count\": 1},\n  {\"facility_id\": \"FACB\",\n   \"location\": {\"state\": \"TX\"}}\n]";
    let done = upload_at(&fx, &p, array.as_bytes(), "2025-11-21T09:00:00Z").await;
    let report = done.report.unwrap();
    assert_eq!((report.counts.inserted, report.counts.rejected), (1, 1));
    let problem = &report.first_problems[0];
    assert_eq!(
        (problem.line, problem.index, problem.column.as_str()),
        (3, Some(1), "employee_count")
    );
    assert_eq!(problem.reason, "is required");
}

#[tokio::test]
async fn files_unusable_as_a_whole_fail_with_the_reason_and_change_nothing() {
    let fx = fixture();
    let p = provider("PROV001");
    upload(&fx, &p, SAMPLE.as_bytes()).await;
    let before = ward_analytics::dataset::current(fx.ctx.table.as_ref(), &p)
        .await
        .unwrap();
    let deep = "[".repeat(200_000);
    let cases: [(&[u8], &str); 7] = [
        (deep.as_bytes(), "not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8"),
        (b"   \n\n", "empty"),
        (b"[{\"facility_id\": \"FAC1\",", "not valid JSON"),
        (b"42", "holds JSON objects"),
        (b"{\"a\": [1], \"b\": [2]}", "exactly one array"),
        (
            b"{\"sample_data\": [{\"facility_id\": \"F\"}",
            "not valid JSON",
        ),
    ];
    for (n, (body, reason)) in cases.iter().enumerate() {
        let at = format!("2025-11-2{n}T10:00:00Z");
        let done = upload_at(&fx, &p, body, &at).await;
        assert_eq!(done.status, UploadStatus::Failed, "case {n}");
        let failure = done.report.unwrap().failure.unwrap();
        assert!(failure.contains(reason), "case {n}: {failure}");
        let failed = key_layout::upload_object_key(
            &p,
            ObjectStage::Failed,
            &done.id,
            UploadKind::Facilities,
        );
        assert!(
            fx.ctx.objects.head(&ObjectPath::from(failed)).await.is_ok(),
            "file kept in failed/"
        );
    }
    let after = ward_analytics::dataset::current(fx.ctx.table.as_ref(), &p)
        .await
        .unwrap();
    assert_eq!(before, after, "the dataset is untouched");
}

#[tokio::test]
async fn the_latest_upload_wins_whatever_order_the_jobs_run_in() {
    let fx = fixture();
    let p = provider("PROV001");
    let record = |employees: u32| {
        format!(
            "{{\"facility_id\":\"FAC1\",\"location\":{{\"state\":\"TX\"}},\"employee_count\":{employees}}}\n\
             {{\"facility_id\":\"FAC{employees}\",\"location\":{{\"state\":\"CA\"}},\"employee_count\":1}}\n"
        )
    };
    // The newer upload (by its id's time) is processed first; the older one after it.
    upload_at(&fx, &p, record(200).as_bytes(), "2025-11-20T12:00:00Z").await;
    upload_at(&fx, &p, record(100).as_bytes(), "2025-11-20T08:00:00Z").await;
    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    let summary = result_json(&fx, &run, "facility_summary").await;
    let rows = summary["results"].as_array().unwrap();
    let fac1 = rows.iter().find(|r| r["facility_id"] == "FAC1").unwrap();
    assert_eq!(
        fac1["employee_count"], 200,
        "the newer upload's FAC1 is kept"
    );
    assert_eq!(rows.len(), 3, "FAC1, FAC100, FAC200");
    let pointer = ward_analytics::dataset::current(fx.ctx.table.as_ref(), &p)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pointer.rows, 3);
    // Merging an upload again (a retry) gives the same dataset.
    let upload_id = UploadId::parse(
        summary["source_file"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .unwrap()
            .1
            .split_once('-')
            .unwrap()
            .1
            .trim_end_matches(".parquet"),
    )
    .unwrap();
    let batches = ward_analytics::facility::parse_file(record(100).as_bytes(), &upload_id, 1)
        .unwrap()
        .batches;
    let again = ward_analytics::dataset::merge_upload(
        fx.ctx.table.as_ref(),
        fx.ctx.objects.as_ref(),
        &p,
        &upload_id,
        &batches,
    )
    .await
    .unwrap();
    assert_eq!(again.rows, 3);
    // Superseded dataset versions are removed.
    let listed: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        fx.ctx
            .objects
            .list(Some(&ObjectPath::from("PROV001/datasets"))),
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test]
async fn a_generated_set_matches_an_independent_computation() {
    let fx = fixture();
    let p = provider("PROV002");
    let mut body = Vec::new();
    ward_analytics::generate::write_json_lines(&mut body, 3_000, 42).unwrap();
    let done = upload(&fx, &p, &body).await;
    assert_eq!(done.report.unwrap().counts.inserted, 3_000);
    let as_of = ward_analytics::facility::parse_date("2026-01-15").unwrap();
    let horizon = ward_analytics::facility::parse_date("2026-07-15").unwrap();
    let run = run_on(&fx, &p, "2026-01-15", 6).await;
    // The same sums, computed in plain Rust from the generator's facilities.
    let mut expected: std::collections::BTreeMap<String, [i64; 4]> = Default::default();
    let mut expiring = 0;
    for facility in ward_analytics::generate::facilities(3_000, 42) {
        let entry = expected.entry(facility.state.clone()).or_default();
        let valid = facility
            .accreditations
            .iter()
            .filter(|a| a.valid_until >= as_of)
            .count() as i64;
        entry[0] += 1;
        entry[1] += facility.employee_count;
        entry[2] += i64::from(valid > 0);
        entry[3] += valid;
        expiring += facility
            .accreditations
            .iter()
            .filter(|a| a.valid_until >= as_of && a.valid_until <= horizon)
            .count();
    }
    let per_state = result_json(&fx, &run, "per_state").await;
    let got: std::collections::BTreeMap<String, [i64; 4]> = per_state["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let n = |name: &str| row[name].as_i64().unwrap();
            (
                row["state"].as_str().unwrap().to_owned(),
                [
                    n("facility_count"),
                    n("total_employees"),
                    n("accredited_facilities"),
                    n("valid_accreditations"),
                ],
            )
        })
        .collect();
    assert_eq!(got, expected);
    let result = result_json(&fx, &run, "expiring_accreditations").await;
    assert_eq!(result["result_count"], expiring as u64);
    let summary = result_json(&fx, &run, "facility_summary").await;
    assert_eq!(summary["result_count"], 3_000);
}

#[tokio::test]
async fn a_run_without_data_fails_and_a_broken_dataset_is_retried_then_dead_lettered() {
    let fx = fixture();
    let p = provider("PROV001");
    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.failure.as_deref(),
        Some("no facilities have been uploaded yet")
    );

    upload(&fx, &p, SAMPLE.as_bytes()).await;
    let pointer = ward_analytics::dataset::current(fx.ctx.table.as_ref(), &p)
        .await
        .unwrap()
        .unwrap();
    let dataset = ObjectPath::from(pointer.object_key.as_str());
    let bytes = fx
        .ctx
        .objects
        .get(&dataset)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    fx.ctx.objects.delete(&dataset).await.unwrap();
    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    assert_eq!(run.status, RunStatus::Failed);
    let failure = run.failure.unwrap();
    assert!(
        failure.contains("failed 3 times") && failure.contains("dead-letter"),
        "{failure}"
    );
    let dead = fx.ctx.queue.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(matches!(&dead[0].job, Job::AnalyticsRun { run: id, .. } if id.as_str() == run.run_id));
    assert_eq!(dead[0].attempts, 3);
    // Put the data back and replay: the run completes.
    fx.ctx.objects.put(&dataset, bytes.into()).await.unwrap();
    ward_ingest::replay_dead_job(&fx.ctx, &dead[0].id)
        .await
        .unwrap()
        .unwrap();
    drain(&fx).await;
    let id = RunId::parse(&run.run_id).unwrap();
    let replayed = fx.ctx.runs.get(&p, &id).await.unwrap().unwrap();
    assert_eq!(
        replayed.status,
        RunStatus::Completed,
        "{:?}",
        replayed.failure
    );
}

#[tokio::test]
async fn hostile_records_are_errors_not_crashes() {
    let fx = fixture();
    let p = provider("PROV001");
    let deep = format!("{{\"facility_id\": {}", "[".repeat(100_000));
    let long_name = "x".repeat(2_000_000);
    let body = format!(
        "{{\"facility_id\":\"FAC1\",\"location\":{{\"state\":\"TX\"}},\"employee_count\":1}}\n{deep}\n\
         {{\"facility_id\":\"FAC2\",\"facility_name\":\"{long_name}\",\"location\":{{\"state\":\"TX\"}},\"employee_count\":1}}\n\
         {{\"facility_id\":\"FAC3\",\"location\":{{\"state\":\"TX\"}},\"employee_count\":18446744073709551615}}\n\
         {{\"facility_id\":\"FAC4\",\"location\":{{\"state\":\"TX\"}},\"employee_count\":1.5}}\n"
    );
    let done = upload(&fx, &p, body.as_bytes()).await;
    assert_eq!(done.status, UploadStatus::Completed);
    let report = done.report.unwrap();
    assert_eq!((report.counts.inserted, report.counts.rejected), (1, 4));
    let reasons: Vec<_> = report
        .first_problems
        .iter()
        .map(|p| (p.line, p.column.clone(), p.reason.clone()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(l, f, r)| *l == 2 && f == "record" && r.contains("recursion")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, f, r)| *l == 3 && f == "facility_name" && r.contains("longer than 300")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, f, r)| *l == 4 && f == "employee_count" && r.contains("too large")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, f, r)| *l == 5 && f == "employee_count" && r.contains("whole number")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().all(|(_, _, r)| r.len() < 500),
        "reasons do not echo the input back"
    );
}

#[tokio::test]
async fn a_query_over_its_time_limit_is_retried_then_dead_lettered_with_the_reason() {
    let fx = fixture_with(AnalyticsSettings {
        query_timeout: Duration::ZERO,
        ..AnalyticsSettings::default()
    });
    let p = provider("PROV001");
    let done = upload(&fx, &p, SAMPLE.as_bytes()).await;
    assert_eq!(
        done.status,
        UploadStatus::Completed,
        "ingest has no query timeout"
    );
    let run = run_on(&fx, &p, "2025-11-20", 6).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.attempts, 3, "two retries after the first attempt");
    let failure = run.failure.unwrap();
    assert!(
        failure.contains("query per_state ran longer than 0 s") && failure.contains("dead-letter"),
        "{failure}"
    );
    let dead = fx.ctx.queue.list_dead(10).await.unwrap();
    assert!(
        dead.iter().any(|d| d.reason.contains("ran longer than")),
        "{dead:?}"
    );
}

#[tokio::test]
async fn a_dataset_written_before_the_derived_dates_column_is_read_queried_and_merged() {
    use datafusion::arrow::array::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    use ward_analytics::dataset;

    /// The current dataset: its pointer, object path and bytes.
    async fn current(
        fx: &Fixture,
        p: &ProviderId,
    ) -> (dataset::DatasetPointer, ObjectPath, bytes::Bytes) {
        let pointer = dataset::current(fx.ctx.table.as_ref(), p)
            .await
            .unwrap()
            .unwrap();
        let path = ObjectPath::from(pointer.object_key.as_str());
        let bytes = fx
            .ctx
            .objects
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        (pointer, path, bytes)
    }

    let fx = fixture();
    let p = provider("PROV003");
    let mut body = Vec::new();
    ward_analytics::generate::write_json_lines(&mut body, 2_000, 7).unwrap();
    upload(&fx, &p, &body).await;
    let before = run_on(&fx, &p, "2026-01-15", 6).await;

    // Rewrite the current dataset object as an older Ward wrote it: without the column.
    let (_, path, bytes) = current(&fx, &p).await;
    assert!(dataset::is_current(&bytes).unwrap());
    let batches = dataset::from_parquet(bytes).unwrap();
    let schema = dataset::schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != dataset::VALID_UNTIL_DATES)
        .collect();
    let old: Vec<RecordBatch> = batches.iter().map(|b| b.project(&keep).unwrap()).collect();
    let mut writer = ArrowWriter::try_new(Vec::new(), old[0].schema(), None).unwrap();
    for batch in &old {
        writer.write(batch).unwrap();
    }
    let old_bytes = bytes::Bytes::from(writer.into_inner().unwrap());
    assert!(!dataset::is_current(&old_bytes).unwrap());
    fx.ctx.objects.put(&path, old_bytes.into()).await.unwrap();

    // Queried as it is: the same answers.
    let after = run_on(&fx, &p, "2026-01-15", 6).await;
    assert_eq!(after.status, RunStatus::Completed, "{after:?}");
    for query in ["per_state", "expiring_accreditations", "facility_summary"] {
        let (a, b) = (
            result_json(&fx, &before, query).await,
            result_json(&fx, &after, query).await,
        );
        assert_eq!(a["results"], b["results"], "{query}");
        assert!(a["result_count"].as_u64().unwrap() > 0, "{query}");
    }

    // The next upload merges into it and writes the current form.
    let more = br#"{"facility_id":"NEW-1","location":{"state":"TX"},"employee_count":5,"accreditations":[{"accreditation_body":"B","accreditation_id":"I","valid_until":"2026-03-01"}]}"#;
    upload_at(&fx, &p, more, "2025-11-21T09:00:00Z").await;
    let (pointer, _, bytes) = current(&fx, &p).await;
    assert_eq!(pointer.rows, 2_001);
    assert!(dataset::is_current(&bytes).unwrap());
}

//! Exactly-once under crashes: an attempt that dies part-way (an injected fault, or a real
//! `kill -9` of `ward ingest`) followed by a retry leaves the same records and the same
//! report as an uninterrupted run.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ward::synthetic::{RecordSpec, write_records};

use crate::helpers::{
    OPERATOR_KEY, Options, TestApp, app_for, spawn_app, spawn_app_with, start_server,
};

fn generated(rows: u64) -> Vec<u8> {
    let mut csv = Vec::new();
    write_records(
        &RecordSpec {
            rows,
            seed: 5,
            bad_share: 0.03,
        },
        &mut csv,
    )
    .unwrap();
    // Repeat a slice of rows so the file also holds in-file duplicates.
    let text = String::from_utf8(csv).unwrap();
    let repeated: String = text
        .lines()
        .skip(1)
        .take(20)
        .map(|line| format!("{line}\r\n"))
        .collect();
    format!("{text}{repeated}").into_bytes()
}

/// Records of an upload without the fields that name the run (upload id, file, time), by
/// MRN and time.
pub(crate) async fn normalized_records(app: &TestApp, upload_id: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .get(
                &format!("/v1/uploads/{upload_id}/records?limit=1000{cursor}"),
                &app.key,
            )
            .await;
        assert_eq!(status, 200);
        for record in page["records"].as_array().unwrap() {
            let mut record = record.clone();
            for field in ["uploadId", "csvFile", "dateTimeProcessed"] {
                record.as_object_mut().unwrap().remove(field);
            }
            records.push(record);
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    // Two data folders have two pseudonym secrets, so they list one file's records in
    // two orders (by patient key): compare them by MRN and time instead.
    let order = |record: &Value| {
        (
            record["medicalRecordNumber"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            record["dateTimeUtc"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    records.sort_by_key(order);
    records
}

/// The report without timing and attempts, with the run's own upload id (conflict reasons
/// name the stored record's source file) replaced by a placeholder.
pub(crate) fn report_without_timing(upload: &Value) -> Value {
    let mut report = upload["report"].clone();
    report.as_object_mut().unwrap().remove("durationMs");
    report.as_object_mut().unwrap().remove("attempts");
    let id = upload["uploadId"].as_str().unwrap();
    serde_json::from_str(&report.to_string().replace(id, "UPLOAD")).unwrap()
}

pub(crate) async fn errors_csv(app: &TestApp, upload_id: &str) -> String {
    let (status, body) = app
        .get(&format!("/v1/uploads/{upload_id}/errors.csv"), &app.key)
        .await;
    assert_eq!(status, 200);
    body.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_fault_mid_file_then_a_retry_gives_the_same_records_and_report() {
    let csv = generated(600);
    let clean = spawn_app().await;
    let clean_upload = clean.upload_and_wait(&csv).await;
    let mut options = Options::default();
    options.ingest.fault_after_rows = Some(300);
    let faulty = spawn_app_with(options).await;
    let faulty_upload = faulty.upload_and_wait(&csv).await;
    assert_eq!(faulty_upload["status"], "completed", "{faulty_upload}");
    assert_eq!(
        faulty_upload["report"]["attempts"], 2,
        "the first attempt died after 300 rows"
    );
    assert_eq!(clean_upload["report"]["attempts"], 1);
    assert_eq!(
        report_without_timing(&faulty_upload),
        report_without_timing(&clean_upload)
    );
    let clean_id = clean_upload["uploadId"].as_str().unwrap();
    let faulty_id = faulty_upload["uploadId"].as_str().unwrap();
    let clean_records = normalized_records(&clean, clean_id).await;
    assert!(clean_records.len() > 500);
    assert_eq!(normalized_records(&faulty, faulty_id).await, clean_records);
    let clean_errors = errors_csv(&clean, clean_id)
        .await
        .replace(clean_id, "UPLOAD");
    assert_eq!(
        errors_csv(&faulty, faulty_id)
            .await
            .replace(faulty_id, "UPLOAD"),
        clean_errors
    );
    clean.stop().await;
    faulty.stop().await;
}

#[tokio::test]
async fn a_job_that_panics_is_a_failed_attempt_and_the_worker_goes_on() {
    let csv = generated(200);
    let mut options = Options::default();
    options.ingest.fault_after_rows = Some(100);
    options.ingest.fault_panics = true;
    options.ingest.fault_times = 4;
    let app = spawn_app_with(options).await;
    // Three attempts, three panics (each after writing rows): dead-lettered with the
    // reason, the upload interrupted (not failed: some of its rows are stored).
    let upload = app.upload_and_wait(&csv).await;
    assert_eq!(upload["status"], "interrupted", "{upload}");
    let (status, dead) = app.get("/v1/admin/dlq", OPERATOR_KEY).await;
    assert_eq!(status, 200);
    let jobs = dead["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{dead}");
    assert_eq!(jobs[0]["attempts"], 3);
    assert!(
        jobs[0]["reason"].as_str().unwrap().contains("panicked"),
        "{dead}"
    );
    // The same worker takes the next job: it panics once more, then the retry completes.
    let next = app.upload_and_wait(&generated(150)).await;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(next["report"]["attempts"], 2, "{next}");
    let later = app.upload_and_wait(&generated(50)).await;
    assert_eq!(later["status"], "completed", "{later}");
    assert_eq!(later["report"]["attempts"], 1, "{later}");
    app.stop().await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_lettered_and_can_be_replayed() {
    let csv = generated(200);
    let mut options = Options::default();
    options.ingest.fault_after_rows = Some(100);
    options.ingest.fault_times = 3;
    let app = spawn_app_with(options).await;
    let upload = app.upload_and_wait(&csv).await;
    // Its attempts wrote rows before they failed: interrupted, not failed.
    assert_eq!(upload["status"], "interrupted", "{upload}");
    let failure = upload["report"]["failure"].as_str().unwrap();
    assert!(failure.contains("dead-letter"), "{failure}");
    assert!(failure.contains("rows may be stored"), "{failure}");
    let (status, dead) = app.get("/v1/admin/dlq", OPERATOR_KEY).await;
    assert_eq!(status, 200);
    let jobs = dead["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{dead}");
    assert_eq!(jobs[0]["attempts"], 3);
    assert!(
        jobs[0]["reason"]
            .as_str()
            .unwrap()
            .contains("injected fault")
    );
    assert_eq!(
        app.get("/v1/admin/dlq", &app.key).await.0,
        401,
        "operators only"
    );
    let id = jobs[0]["id"].as_str().unwrap();
    let (status, _) = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/admin/dlq/{id}/replay"),
            Some(OPERATOR_KEY),
        )
        .await;
    assert_eq!(status, 200);
    let replayed = app
        .wait_for_upload(upload["uploadId"].as_str().unwrap())
        .await;
    assert_eq!(replayed["status"], "completed", "{replayed}");
    let clean = spawn_app().await;
    let clean_upload = clean.upload_and_wait(&csv).await;
    assert_eq!(
        report_without_timing(&replayed),
        report_without_timing(&clean_upload)
    );
    let (_, dead) = app.get("/v1/admin/dlq", OPERATOR_KEY).await;
    assert_eq!(dead["jobs"].as_array().unwrap().len(), 0);
    app.stop().await;
    clean.stop().await;
}

fn ward_ingest(data_dir: &std::path::Path, file: Option<&std::path::Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ward"));
    command
        .arg("ingest")
        .arg("--provider")
        .arg("PROV001")
        .arg("--data-dir")
        .arg(data_dir);
    if let Some(file) = file {
        command.arg(file);
    }
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("WARD_LOG", "warn");
    command
}

/// Lists every visit of the data folder's uploads through a server started on it.
async fn records_and_report(data_dir: &std::path::Path) -> (Vec<Value>, Value) {
    let running = start_server(data_dir, Options::default()).await;
    let table = running.state.table.clone();
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let key = ward_ports::Tenants::new(table.clone())
        .issue_full_key(&provider, true)
        .await
        .unwrap()
        .0;
    let app = app_for(running, key);
    let (_, list) = app.get("/v1/uploads", &app.key).await;
    let uploads = list["uploads"].as_array().unwrap().clone();
    assert_eq!(uploads.len(), 1, "{list}");
    let id = uploads[0]["uploadId"].as_str().unwrap();
    let records = normalized_records(&app, id).await;
    let report = report_without_timing(&uploads[0]);
    assert_eq!(uploads[0]["status"], "completed");
    app.stop().await;
    (records, report)
}

/// The visit records of the one upload in a data folder no process holds (read from the
/// store file directly: a server would finish the upload first).
async fn records_written(data_dir: &std::path::Path) -> usize {
    use ward_domain::key_layout::{self, BY_UPLOAD_INDEX, UPLOAD_RECORD_SHARDS};
    let table: std::sync::Arc<dyn ward_store::Table> = std::sync::Arc::new(
        ward::embedded::open_table(&data_dir.join("ward.redb"), &Default::default()).unwrap(),
    );
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let uploads = ward_ports::uploads::UploadRepository::new(table.clone());
    let (listed, _) = uploads.list(&provider, 10, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    let upload = &listed[0];
    let mut n = 0;
    for shard in 0..UPLOAD_RECORD_SHARDS {
        let mut cursor = None;
        loop {
            let page = table
                .query(ward_store::Query {
                    index: Some(BY_UPLOAD_INDEX),
                    pk: key_layout::upload_records_pk(&provider, &upload.id, shard),
                    sk: ward_store::SkCondition::Any,
                    order: ward_store::Order::Forward,
                    limit: 1000,
                    cursor,
                })
                .await
                .unwrap();
            n += page.items.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    n
}

#[tokio::test]
async fn kill_9_in_the_middle_of_a_file_then_a_rerun_gives_the_same_result() {
    let work = tempfile::tempdir().unwrap();
    let csv_path = work.path().join("visits.csv");
    std::fs::write(&csv_path, generated(30_000)).unwrap();
    // Small batches: the embedded store commits every 64th batch durably, so records
    // reach the disk every 4,096 rows, many times within this file.
    let config = work.path().join("ward.toml");
    std::fs::write(&config, "[ingest]\nbatch_rows = 64\n").unwrap();

    let clean_dir = work.path().join("clean");
    let status = ward_ingest(&clean_dir, Some(&csv_path))
        .arg("--config")
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success());
    let clean_size = std::fs::metadata(clean_dir.join("ward.redb"))
        .unwrap()
        .len();
    let (clean_records, clean_report) = records_and_report(&clean_dir).await;
    let n_inserted = clean_report["counts"]["inserted"].as_u64().unwrap() as usize;

    // The kill point: the store file past half its final size, so records are being
    // written; then a check that the kill came mid-file (some records stored, not all).
    // A kill that lands before the first durable commit or after the last is tried again
    // on a fresh folder, a few times at most.
    let mut kills = Vec::new();
    let killed_dir = loop {
        let killed_dir = work.path().join(format!("killed-{}", kills.len()));
        let mut child = ward_ingest(&killed_dir, Some(&csv_path))
            .arg("--config")
            .arg(&config)
            .spawn()
            .unwrap();
        let store_file = killed_dir.join("ward.redb");
        let started = std::time::Instant::now();
        while std::fs::metadata(&store_file).map_or(0, |m| m.len()) < clean_size / 2 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "ward ingest finished before it could be killed; use a larger file"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "records were never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        assert!(!child.wait().unwrap().success());
        let n_written = records_written(&killed_dir).await;
        kills.push(n_written);
        if n_written > 0 && n_written < n_inserted {
            break killed_dir;
        }
        assert!(
            kills.len() < 5,
            "no kill landed mid-file: records stored at each kill {kills:?} of {n_inserted}"
        );
    };

    let rerun = ward_ingest(&killed_dir, None).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert!(String::from_utf8_lossy(&rerun.stderr).contains("finished interrupted upload"));

    let (killed_records, killed_report) = records_and_report(&killed_dir).await;
    assert_eq!(killed_report, clean_report);
    assert_eq!(killed_records.len(), clean_records.len());
    assert!(
        killed_records == clean_records,
        "records differ after kill -9 and rerun"
    );
}

#[tokio::test]
async fn a_crash_after_the_file_moved_on_but_before_the_status_was_written_is_recovered() {
    let app = spawn_app().await;
    let csv = generated(300);
    let done = app.upload_and_wait(&csv).await;
    let ctx = app.running.as_ref().unwrap().state.ctx.clone();
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let id = ward_domain::UploadId::parse(done["uploadId"].as_str().unwrap()).unwrap();
    // Put the upload back where a worker that died right after moving the file to
    // completed/ would have left it: status still `processing`.
    let stored = ctx.uploads.get(&provider, &id).await.unwrap().unwrap();
    let mut processing = stored.clone();
    processing.status = ward_ports::UploadStatus::Processing;
    processing.report = None;
    ctx.uploads
        .update(processing, stored.version)
        .await
        .unwrap();
    let retried = ward_ingest::process_upload(&ctx, &provider, &id, 2)
        .await
        .unwrap();
    assert_eq!(retried.status, ward_ports::UploadStatus::Completed);
    let report = retried.report.unwrap();
    assert_eq!(
        report.counts,
        serde_json::from_value(done["report"]["counts"].clone()).unwrap()
    );
    assert!(
        report.counts.inserted > 250,
        "the retry's own records count as inserted"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_file_stored_but_never_queued_is_processed_after_a_restart() {
    let app = spawn_app().await;
    let data_dir = app.data_path();
    let ctx = app.running.as_ref().unwrap().state.ctx.clone();
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    // What a crash between storing the file and queueing its job leaves behind.
    let now = ward_domain::UtcInstant::now();
    let stored_id = ward_domain::UploadId::new(now, 1);
    let mut stored = ward_ports::Upload::pending(provider.clone(), stored_id.clone(), now, 900);
    ctx.uploads.create(&stored).await.unwrap();
    stored.status = ward_ports::UploadStatus::Receiving;
    ctx.uploads.update(stored, 0).await.unwrap();
    let key = ward_domain::key_layout::upload_object_key(
        &provider,
        ward_domain::key_layout::ObjectStage::Uploaded,
        &stored_id,
        ward_domain::key_layout::UploadKind::Visits,
    );
    object_store::ObjectStoreExt::put(
        ctx.objects.as_ref(),
        &object_store::path::Path::from(key),
        generated(50).into(),
    )
    .await
    .unwrap();
    // ...and a crash in the middle of receiving a file: nothing stored yet.
    let half_id = ward_domain::UploadId::new(now.plus_seconds(1), 2);
    let mut half = ward_ports::Upload::pending(provider.clone(), half_id.clone(), now, 900);
    ctx.uploads.create(&half).await.unwrap();
    half.status = ward_ports::UploadStatus::Receiving;
    ctx.uploads.update(half, 0).await.unwrap();
    drop(ctx);
    let key = app.key.clone();
    let running = app.running.unwrap();
    running.stop().await.unwrap();

    let restarted = start_server(&data_dir, Options::default()).await;
    let app = app_for(restarted, key);
    let done = app.wait_for_upload(stored_id.as_str()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["report"]["counts"]["inserted"].as_u64().unwrap() > 40);
    let (_, half) = app.get(&format!("/v1/uploads/{half_id}"), &app.key).await;
    assert_eq!(half["status"], "pending", "its URL can be used again");
    app.stop().await;
    drop(data_dir);
}

/// An attempt that has started reading a file's rows may have written records, so a
/// retry reads the rows again even when an identical upload completed in the meantime
/// (its own records then count as inserted, as in a run without the crash). Before any
/// row was read, the retry takes the identical upload's outcomes.
#[tokio::test]
async fn a_retry_after_rows_were_read_reads_them_again_despite_an_identical_upload() {
    let app = spawn_app().await;
    let file = generated(40);
    let first = app.upload_and_wait(&file).await;
    assert_eq!(first["status"], "completed", "{first}");
    let ctx = app.running.as_ref().unwrap().state.ctx.clone();
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let now = ward_domain::UtcInstant::now();
    for (n, rows_read) in [(1u64, true), (2, false)] {
        // An upload whose earlier attempt died while processing.
        let id = ward_domain::UploadId::new(now, n);
        let mut upload = ward_ports::Upload::pending(provider.clone(), id.clone(), now, 900);
        ctx.uploads.create(&upload).await.unwrap();
        upload.status = ward_ports::UploadStatus::Processing;
        upload.bytes = Some(file.len() as u64);
        upload.rows_read = rows_read;
        ctx.uploads.update(upload, 0).await.unwrap();
        let key = ward_domain::key_layout::upload_object_key(
            &provider,
            ward_domain::key_layout::ObjectStage::Processing,
            &id,
            ward_domain::key_layout::UploadKind::Visits,
        );
        object_store::ObjectStoreExt::put(
            ctx.objects.as_ref(),
            &object_store::path::Path::from(key),
            file.clone().into(),
        )
        .await
        .unwrap();
        let done = ward_ingest::process_upload(&ctx, &provider, &id, 2)
            .await
            .unwrap();
        let report = done.report.unwrap();
        // Without rows read, the outcomes come from the latest per-row run of the file.
        assert_eq!(
            report.identical_to.is_some(),
            !rows_read,
            "rows read before: {rows_read}"
        );
        assert_eq!(report.counts.inserted, 0);
        assert_eq!(
            report.counts.duplicate,
            first["report"]["counts"]["inserted"].as_u64().unwrap()
                + first["report"]["counts"]["duplicate"].as_u64().unwrap()
        );
    }
    app.stop().await;
}

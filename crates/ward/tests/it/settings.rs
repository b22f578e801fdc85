//! Settings and object retention.

use std::time::{Duration, SystemTime};

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use ward_ingest::retention::{RetentionPolicy, sweep};

use crate::helpers::{HEADER, spawn_app};

#[tokio::test]
async fn retention_removes_expired_files_and_keeps_the_rest() {
    let app = spawn_app().await;
    app.upload_and_wait(format!("{HEADER}A1,2025-03-26T10:30:00Z,John,Doe,\n").as_bytes())
        .await;
    let objects = app.running.as_ref().unwrap().state.ctx.objects.clone();
    let stale = ObjectPath::from("PROV001/uploaded/20200101T000000Z-0000000000000000.csv");
    objects.put(&stale, b"x".to_vec().into()).await.unwrap();
    let policy = RetentionPolicy {
        completed: Duration::from_secs(7 * 24 * 3600),
        stale_uploaded: Duration::from_secs(3600),
    };
    let now = SystemTime::now();
    let kept = sweep(objects.as_ref(), policy, now).await.unwrap();
    assert_eq!(
        (kept.n_seen, kept.n_deleted),
        (4, 0),
        "csv, report, errors list, fresh upload"
    );
    let later = sweep(
        objects.as_ref(),
        policy,
        now + Duration::from_secs(2 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(later.n_deleted, 1, "only the stale upload");
    assert!(objects.head(&stale).await.is_err());
    let much_later = sweep(
        objects.as_ref(),
        policy,
        now + Duration::from_secs(8 * 24 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(
        much_later.n_deleted, 3,
        "the processed file, its report and error list"
    );
    app.stop().await;
}

#[test]
fn a_settings_file_with_an_unknown_key_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ward.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[uploads]\nmax_byte = 10\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a valid Ward settings file") && stderr.contains("max_byte"),
        "{stderr}"
    );
}

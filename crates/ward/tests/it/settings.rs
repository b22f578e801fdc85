//! Settings and object retention.

use std::time::{Duration, SystemTime};

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ingest::retention::{RetentionPolicy, sweep};
use ward_ports::uploads::{Upload, UploadRepository, UploadStatus};

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
    let uploads = UploadRepository::new(app.running.as_ref().unwrap().state.table.clone());
    let now = SystemTime::now();
    let kept = sweep(objects.as_ref(), &uploads, policy, now)
        .await
        .unwrap();
    assert_eq!(
        (kept.n_seen, kept.n_deleted),
        (4, 0),
        "csv, report, errors list, fresh upload"
    );
    let later = sweep(
        objects.as_ref(),
        &uploads,
        policy,
        now + Duration::from_secs(2 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(later.n_deleted, 1, "only the stale upload");
    assert!(objects.head(&stale).await.is_err());
    let much_later = sweep(
        objects.as_ref(),
        &uploads,
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

#[tokio::test]
async fn retention_never_deletes_the_file_of_an_upload_still_owed_work() {
    // An outage longer than the stale period: the file of an upload that was received (or
    // is being processed) but not finished must survive every sweep until it is terminal.
    let app = spawn_app().await;
    let state = &app.running.as_ref().unwrap().state;
    let objects = state.ctx.objects.clone();
    let uploads = UploadRepository::new(state.table.clone());
    let provider = ProviderId::parse("PROV001").unwrap();
    let policy = RetentionPolicy {
        completed: Duration::from_secs(7 * 24 * 3600),
        stale_uploaded: Duration::from_secs(3600),
    };
    let two_days_later = SystemTime::now() + Duration::from_secs(48 * 3600);
    let mut owed = Vec::new();
    for (n, status) in [UploadStatus::Received, UploadStatus::Processing]
        .into_iter()
        .enumerate()
    {
        let id = UploadId::parse(&format!("20200101T00000{n}Z-000000000000000{n}")).unwrap();
        let mut upload = Upload::pending(provider.clone(), id, UtcInstant::now(), 900);
        upload.status = status;
        uploads.create(&upload).await.unwrap();
        // A processing upload's file may still be in uploaded/ (before its move).
        let path = ObjectPath::from(ward_domain::key_layout::upload_object_key(
            &provider,
            ward_domain::key_layout::ObjectStage::Uploaded,
            &upload.id,
            upload.kind,
        ));
        objects.put(&path, b"x".to_vec().into()).await.unwrap();
        owed.push((upload, path));
    }
    let report = sweep(objects.as_ref(), &uploads, policy, two_days_later)
        .await
        .unwrap();
    assert_eq!((report.n_owed, report.n_deleted), (2, 0));
    for (_, path) in &owed {
        assert!(objects.head(path).await.is_ok(), "{path} was deleted");
    }
    // Once terminal, the same file is stale like any other.
    let (upload, path) = &owed[0];
    let mut done = upload.clone();
    done.status = UploadStatus::Failed;
    uploads.update(done, upload.version).await.unwrap();
    let report = sweep(objects.as_ref(), &uploads, policy, two_days_later)
        .await
        .unwrap();
    assert_eq!((report.n_owed, report.n_deleted), (1, 1));
    assert!(objects.head(path).await.is_err());
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

#[test]
fn the_openid_provider_settings_refuse_symmetric_algorithms_and_a_missing_audience() {
    let parse = |text: &str| -> anyhow::Result<ward_api::ApiSettings> {
        let settings: ward::config::Settings = toml::from_str(text)?;
        settings.api()
    };
    let good = parse(
        "[access]\ntoken_ttl_seconds = 5\n[access.oidc]\nissuer = \"https://id.example\"\naudience = \"ward\"\nprovider = \"PROV001\"\n",
    )
    .unwrap();
    // Out-of-range values are brought into range; the defaults fill the rest.
    assert_eq!(good.token_ttl_seconds, 60);
    let oidc = good.oidc.unwrap();
    assert_eq!(oidc.algorithms.len(), 2);
    assert_eq!(oidc.claims.fixed_provider.unwrap().as_str(), "PROV001");
    assert!(oidc.claims.provider_claim.is_none());
    assert_eq!(oidc.claims.role_claim, "cognito:groups");
    for (text, says) in [
        (
            "[access.oidc]\nissuer = \"https://id.example\"\naudience = \"ward\"\nalgorithms = [\"HS256\"]\n",
            "HS256",
        ),
        (
            "[access.oidc]\nissuer = \"https://id.example\"\naudience = \"ward\"\nalgorithms = [\"none\"]\n",
            "none",
        ),
        (
            "[access.oidc]\nissuer = \"https://id.example\"\naudience = \"\"\n",
            "audience",
        ),
        (
            "[access.oidc]\nissuer = \"https://id.example\"\naudience = \"ward\"\nprovider = \"A#B\"\n",
            "provider",
        ),
    ] {
        let error = format!("{:#}", parse(text).unwrap_err());
        assert!(error.contains(says), "{text}: {error}");
    }
}

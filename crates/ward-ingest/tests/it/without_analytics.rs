//! A Ward built without the analytics engine: facility uploads and runs end failed with
//! a message saying how to build it, instead of retrying or hanging.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ingest::{IngestContext, IngestSettings, Worker};
use ward_ports::{
    AnalyticsRun, Job, NO_ANALYTICS, RunRequest, RunStatus, TableJobQueue, Upload, UploadStatus,
};
use ward_store::Table;
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

#[tokio::test]
async fn facility_work_fails_with_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    let objects = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("objects")).unwrap());
    let queue = Arc::new(TableJobQueue::new(Arc::clone(&table), "jobs"));
    let ctx = Arc::new(IngestContext::new(
        table,
        Arc::new(ward_domain::Pseudonyms::new(&[1; 32])),
        objects,
        queue,
        IngestSettings::default(),
    ));
    assert!(ctx.analytics.is_none());
    let provider = ProviderId::parse("PROV001").unwrap();
    let now = UtcInstant::now();
    let id = UploadId::new(now, 7);
    let mut upload = Upload::pending(provider.clone(), id.clone(), now, 900);
    upload.kind = UploadKind::Facilities;
    upload.status = UploadStatus::Received;
    ctx.uploads.create(&upload).await.unwrap();
    let key = key_layout::upload_object_key(&provider, ObjectStage::Uploaded, &id, upload.kind);
    ctx.objects
        .put(&key.into(), b"{\"facility_id\":\"F1\"}\n".to_vec().into())
        .await
        .unwrap();
    ctx.queue
        .enqueue(Job::for_upload(&provider, &id, upload.kind))
        .await
        .unwrap();
    let run_id = ward_domain::RunId::new(now, 8);
    let request = RunRequest {
        as_of: "2025-11-20".into(),
        months_ahead: 6,
    };
    ctx.runs
        .create(&AnalyticsRun::queued(&provider, &run_id, request, None))
        .await
        .unwrap();
    ctx.queue
        .enqueue(Job::AnalyticsRun {
            provider: provider.clone(),
            run: run_id.clone(),
        })
        .await
        .unwrap();
    let worker = Worker::new(Arc::clone(&ctx));
    while worker.process_next().await.unwrap().is_some() {}
    let done = ctx.uploads.get(&provider, &id).await.unwrap().unwrap();
    assert_eq!(done.status, UploadStatus::Failed);
    assert_eq!(done.report.unwrap().failure.as_deref(), Some(NO_ANALYTICS));
    let run = ctx.runs.get(&provider, &run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.failure.as_deref(), Some(NO_ANALYTICS));
    assert!(
        ctx.queue.list_dead(10).await.unwrap().is_empty(),
        "not retried to death"
    );
}

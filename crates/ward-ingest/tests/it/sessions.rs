//! Upload sessions are temporary: a pending upload expires a day after its URL did, and
//! reads treat it as absent even before the store removes it; a file arriving keeps it.

use std::sync::Arc;

use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ports::{Upload, UploadRepository, UploadStatus};
use ward_store::{Key, Table};
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

#[tokio::test]
async fn a_pending_upload_expires_and_a_received_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    let uploads = UploadRepository::new(Arc::clone(&table));
    let provider = ProviderId::parse("PROV001").unwrap();
    let now = UtcInstant::now();
    // Created two days ago with a 15-minute URL: its session is over.
    let old = now.plus_seconds(-2 * 86_400);
    let stale = Upload::pending(provider.clone(), UploadId::new(old, 1), old, 900);
    uploads.create(&stale).await.unwrap();
    assert_eq!(uploads.get(&provider, &stale.id).await.unwrap(), None);
    let stored = table
        .get(&Key::new(
            ward_domain::key_layout::uploads_pk(&provider),
            ward_domain::key_layout::upload_sk(&stale.id),
        ))
        .await
        .unwrap();
    assert!(stored.is_none(), "absent to raw reads too");
    // A fresh one is there, with an expiry that a received file removes.
    let fresh = Upload::pending(provider.clone(), UploadId::new(now, 2), now, 900);
    uploads.create(&fresh).await.unwrap();
    let read = uploads.get(&provider, &fresh.id).await.unwrap().unwrap();
    let mut received = read.clone();
    received.status = UploadStatus::Received;
    uploads.update(received, read.version).await.unwrap();
    let key = Key::new(
        ward_domain::key_layout::uploads_pk(&provider),
        ward_domain::key_layout::upload_sk(&fresh.id),
    );
    let item = table.get(&key).await.unwrap().unwrap();
    assert!(!item.contains_key(ward_store::EXPIRES_AT));
    assert_eq!(item["status"], ward_store::Value::s("received"));
}

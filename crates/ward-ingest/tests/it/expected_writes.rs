//! A key-order ingest tells the table, while it sorts the file, which patients' partitions
//! it will write ([`Table::expect_writes`]), each once; one in file order tells nothing.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{Mrn, ProviderId, UploadId, UtcInstant};
use ward_ingest::{IngestContext, IngestSettings, Worker};
use ward_ports::{Job, TableJobQueue, Upload, UploadStatus};
use ward_store::{Condition, Item, Key, Page, PutOutcome, Query, StoreError, Table, WriteOp};
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

/// The embedded table, saying it prefers key order or not, and recording what it is told.
struct Told {
    inner: EmbeddedTable,
    key_order: bool,
    told: Mutex<Vec<String>>,
}

#[async_trait]
impl Table for Told {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError> {
        self.inner.batch_get(keys).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.inner.transact_write(ops).await
    }
    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError> {
        self.inner.put_many_if_absent(items).await
    }
    fn prefers_key_order(&self) -> bool {
        self.key_order
    }
    async fn expect_writes(&self, partitions: Vec<String>) {
        self.told.lock().unwrap().extend(partitions);
    }
}

/// Ingests a small visit file through a table that prefers key order or not; what the
/// table was told, and the partitions of the file's valid rows.
async fn ingest(key_order: bool) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let told = Arc::new(Told {
        inner: EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default())
            .unwrap(),
        key_order,
        told: Mutex::default(),
    });
    let table: Arc<dyn Table> = Arc::clone(&told) as Arc<dyn Table>;
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    let objects = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("objects")).unwrap());
    let queue = Arc::new(TableJobQueue::new(Arc::clone(&table), "jobs"));
    let pseudonyms = Arc::new(ward_domain::Pseudonyms::new(&[1; 32]));
    let settings = IngestSettings {
        sort_dir: Some(dir.path().join("tmp")),
        ..IngestSettings::default()
    };
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let ctx = Arc::new(IngestContext::new(
        table,
        Arc::clone(&pseudonyms),
        objects,
        queue,
        settings,
    ));
    let provider = ProviderId::parse("PROV001").unwrap();
    let now = UtcInstant::now();
    let id = UploadId::new(now, 7);
    let mut upload = Upload::pending(provider.clone(), id.clone(), now, 900);
    upload.status = UploadStatus::Received;
    ctx.uploads.create(&upload).await.unwrap();
    let csv = "medical_record_number,date_time,first_name,last_name,doctors_notes\n\
        MRN1,2020-01-01T00:00:00Z,A,B,\n\
        MRN2,2020-01-02T00:00:00Z,A,B,\n\
        MRN1,2020-01-03T00:00:00Z,A,B,\n\
        MRN9,not a date,A,B,\n\
        MRN3,2020-01-04T00:00:00Z,A,B,\n";
    let key = key_layout::upload_object_key(&provider, ObjectStage::Uploaded, &id, upload.kind);
    ctx.objects
        .put(&key.into(), csv.as_bytes().to_vec().into())
        .await
        .unwrap();
    ctx.queue
        .enqueue(Job::for_upload(&provider, &id, UploadKind::Visits))
        .await
        .unwrap();
    let worker = Worker::new(Arc::clone(&ctx));
    while worker.process_next().await.unwrap().is_some() {}
    let done = ctx.uploads.get(&provider, &id).await.unwrap().unwrap();
    assert_eq!(done.status, UploadStatus::Completed, "{done:?}");
    assert_eq!(done.report.unwrap().counts.inserted, 4);
    let mut expected: Vec<String> = ["MRN1", "MRN2", "MRN3"]
        .iter()
        .map(|mrn| {
            let patient = pseudonyms.patient(&provider, &Mrn::parse(mrn).unwrap());
            key_layout::patient_pk(&provider, &patient)
        })
        .collect();
    expected.sort();
    let mut told = told.told.lock().unwrap().clone();
    told.sort();
    (told, expected)
}

#[tokio::test]
async fn a_key_order_ingest_tells_the_table_each_valid_rows_patient_once() {
    let (told, expected) = ingest(true).await;
    assert_eq!(told, expected, "each patient of a valid row, once");
}

#[tokio::test]
async fn an_ingest_in_file_order_tells_the_table_nothing() {
    let (told, _) = ingest(false).await;
    assert!(told.is_empty(), "{told:?}");
}

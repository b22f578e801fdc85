//! The table-backed job queue passes the queue conformance suite, and resumes jobs leased
//! by a process that died.

use std::sync::Arc;
use std::time::Duration;

use ward_ports::queue_conformance::receive;
use ward_ports::{Job, JobQueue, TableJobQueue};
use ward_store::Table;
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

fn open(dir: &tempfile::TempDir) -> TableJobQueue {
    let table: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    TableJobQueue::new(table, "test")
}

async fn fresh_queue() -> (TableJobQueue, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (open(&dir), dir)
}

ward_ports::job_queue_conformance_suite!(fresh_queue());

#[tokio::test]
async fn the_table_queue_keeps_one_copy_of_a_job_enqueued_twice() {
    let (queue, _dir) = fresh_queue().await;
    let job = ward_ports::queue_conformance::job(7);
    queue.enqueue(job.clone()).await.unwrap();
    queue.enqueue(job.clone()).await.unwrap();
    let delivery = receive(&queue).await.expect("one job");
    assert_eq!(delivery.job, job);
    assert!(receive(&queue).await.is_none(), "enqueued once");
}

#[tokio::test]
async fn jobs_leased_by_a_process_that_died_resume_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job::CsvUpload {
        provider: ward_domain::ProviderId::parse("PROV001").unwrap(),
        upload: ward_domain::UploadId::parse("20250101T000000Z-0000000000000004").unwrap(),
    };
    {
        let queue = open(&dir);
        queue.enqueue(job.clone()).await.unwrap();
        let _leased = queue
            .receive(Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();
        // The process "dies" holding an hour-long lease.
    }
    let queue = open(&dir);
    assert!(receive(&queue).await.is_none(), "still leased");
    assert_eq!(queue.release_all_leases().await.unwrap(), 1);
    let resumed = receive(&queue).await.expect("resumed at start");
    assert_eq!(resumed.job, job);
}

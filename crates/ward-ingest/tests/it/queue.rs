//! The table-backed job queue keeps the `JobQueue` contract: at-least-once delivery with
//! leases, delayed retries, a dead-letter list and replay, and jobs that resume at start.

use std::sync::Arc;
use std::time::Duration;

use ward_ingest::{Job, JobQueue, QueueError, TableJobQueue};
use ward_store::Table;
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

fn open(dir: &tempfile::TempDir) -> (Arc<dyn Table>, TableJobQueue) {
    let table: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    let queue = TableJobQueue::new(Arc::clone(&table), "test");
    (table, queue)
}

fn job(n: u32) -> Job {
    Job::CsvUpload {
        provider: "PROV001".into(),
        upload: format!("20250101T000000Z-{n:016x}"),
    }
}

#[tokio::test]
async fn a_leased_job_is_invisible_until_completed_and_enqueue_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (_, queue) = open(&dir);
    queue.enqueue(job(1)).await.unwrap();
    queue.enqueue(job(1)).await.unwrap();
    let delivery = queue
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("one job");
    assert_eq!((delivery.job.clone(), delivery.attempt), (job(1), 1));
    assert!(
        queue
            .receive(Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "leased, and enqueued once"
    );
    queue.complete(&delivery).await.unwrap();
    assert!(matches!(
        queue.complete(&delivery).await,
        Err(QueueError::LeaseLost)
    ));
    assert!(
        queue
            .receive(Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_expired_lease_hands_the_job_to_the_next_receiver_and_the_old_lease_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let (_, queue) = open(&dir);
    queue.enqueue(job(2)).await.unwrap();
    let first = queue
        .receive(Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut second = queue
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("lease ran out");
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        queue.complete(&first).await,
        Err(QueueError::LeaseLost)
    ));
    queue
        .extend(&mut second, Duration::from_secs(60))
        .await
        .unwrap();
    queue.complete(&second).await.unwrap();
}

#[tokio::test]
async fn retries_wait_their_delay_then_the_dead_letter_list_takes_the_job_and_replay_returns_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, queue) = open(&dir);
    queue.enqueue(job(3)).await.unwrap();
    let delivery = queue
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    queue
        .retry(&delivery, Duration::from_millis(200), "disk hiccup")
        .await
        .unwrap();
    assert!(
        queue
            .receive(Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "not before the delay"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let delivery = queue
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("after the delay");
    assert_eq!(delivery.attempt, 2);
    queue.dead_letter(&delivery, "still broken").await.unwrap();
    let dead = queue.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].reason.as_str()),
        (2, "still broken")
    );
    assert!(
        queue
            .receive(Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(queue.replay("no-such-job").await.unwrap(), None);
    assert_eq!(queue.replay(&dead[0].id).await.unwrap(), Some(job(3)));
    assert!(queue.list_dead(10).await.unwrap().is_empty());
    let again = queue
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("replayed");
    assert_eq!(again.attempt, 1, "a replay starts a fresh attempt count");
}

#[tokio::test]
async fn jobs_leased_by_a_process_that_died_resume_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_, queue) = open(&dir);
        queue.enqueue(job(4)).await.unwrap();
        let _leased = queue
            .receive(Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();
        // The process "dies" holding an hour-long lease.
    }
    let (_, queue) = open(&dir);
    assert!(
        queue
            .receive(Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "still leased"
    );
    assert_eq!(queue.release_all_leases().await.unwrap(), 1);
    let resumed = queue
        .receive(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("resumed at start");
    assert_eq!(resumed.job, job(4));
}

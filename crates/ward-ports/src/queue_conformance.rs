//! The job-queue conformance suite: every [`JobQueue`] adapter (the table-backed one here,
//! SQS next) runs these cases unchanged through
//! [`job_queue_conformance_suite!`](crate::job_queue_conformance_suite), with an async
//! factory returning `(queue, guard)` for a fresh, empty queue per case.

use std::time::Duration;

use crate::queue::{Delivery, Job, JobQueue, QueueError};

/// Generates one `#[tokio::test]` per conformance case for a queue adapter.
#[macro_export]
macro_rules! job_queue_conformance_suite {
    ($factory:expr) => {
        $crate::job_queue_conformance_suite!(@cases $factory;
            a_leased_job_is_invisible_until_completed,
            an_expired_lease_hands_the_job_to_the_next_receiver_and_the_old_lease_is_dead,
            retries_wait_their_delay_then_dead_letter_and_replay,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (queue, _guard) = $factory.await;
                $crate::queue_conformance::$case(&queue).await;
            }
        )*
    };
}

/// The next visible job, leased for a minute.
pub async fn receive(queue: &dyn JobQueue) -> Option<Delivery> {
    queue
        .receive(Duration::from_secs(60))
        .await
        .expect("receive")
}

/// Polls for the next visible job until `deadline` passes (a queue's clock, like SQS's,
/// is its own: a test waits for the event, not for a fixed time); `None` if none came.
pub async fn receive_by(queue: &dyn JobQueue, deadline: tokio::time::Instant) -> Option<Delivery> {
    loop {
        if let Some(delivery) = receive(queue).await {
            return Some(delivery);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a queue may take past a lease or delay to make a job visible again.
const VISIBILITY_SLACK: Duration = Duration::from_secs(30);

/// The test job number `n`.
pub fn job(n: u32) -> Job {
    Job::CsvUpload {
        provider: ward_domain::ProviderId::parse("PROV001").expect("a valid provider"),
        upload: ward_domain::UploadId::parse(&format!("20250101T000000Z-{n:016x}"))
            .expect("a valid upload id"),
    }
}

/// A leased job is invisible until completed; completing it removes it, and completing it
/// again is harmless.
pub async fn a_leased_job_is_invisible_until_completed(queue: &dyn JobQueue) {
    queue.enqueue(job(1)).await.unwrap();
    let delivery = receive(queue).await.expect("one job");
    assert_eq!((delivery.job.clone(), delivery.attempt), (job(1), 1));
    assert!(receive(queue).await.is_none(), "leased");
    queue.complete(&delivery).await.unwrap();
    assert!(matches!(
        queue.complete(&delivery).await,
        Ok(()) | Err(QueueError::LeaseLost)
    ));
    assert!(receive(queue).await.is_none(), "completed");
}

/// When a lease runs out the next receiver gets the job (attempt 2) and can extend its
/// lease. The old lease's `complete` is either refused or (SQS, which accepts stale
/// receipts) removes the job; either way the job ends up done once and not delivered again.
/// (Leases are whole seconds: SQS visibility timeouts are.)
pub async fn an_expired_lease_hands_the_job_to_the_next_receiver_and_the_old_lease_is_dead(
    queue: &dyn JobQueue,
) {
    queue.enqueue(job(2)).await.unwrap();
    let leased_at = tokio::time::Instant::now();
    let first = queue
        .receive(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let mut second = receive_by(queue, leased_at + Duration::from_secs(1) + VISIBILITY_SLACK)
        .await
        .expect("lease ran out");
    assert!(
        leased_at.elapsed() >= Duration::from_millis(900),
        "handed on only after the lease ran out"
    );
    assert_eq!((second.job.clone(), second.attempt), (job(2), 2));
    queue
        .extend(&mut second, Duration::from_secs(60))
        .await
        .expect("the new holder extends its lease");
    match queue.complete(&first).await {
        Err(QueueError::LeaseLost) => queue.complete(&second).await.unwrap(),
        Ok(()) => assert!(matches!(
            queue.complete(&second).await,
            Ok(()) | Err(QueueError::LeaseLost)
        )),
        Err(error) => panic!("completing with an old lease: {error}"),
    }
    assert!(receive(queue).await.is_none(), "done once");
}

/// A retry waits its delay; a dead-lettered job leaves the queue for the dead-letter list
/// with its reason, and a replay puts it back with a fresh attempt count.
pub async fn retries_wait_their_delay_then_dead_letter_and_replay(queue: &dyn JobQueue) {
    queue.enqueue(job(3)).await.unwrap();
    let delivery = receive(queue).await.unwrap();
    let retried_at = tokio::time::Instant::now();
    queue
        .retry(&delivery, Duration::from_millis(1000), "disk hiccup")
        .await
        .unwrap();
    assert!(receive(queue).await.is_none(), "not before the delay");
    let delivery = receive_by(
        queue,
        retried_at + Duration::from_secs(1) + VISIBILITY_SLACK,
    )
    .await
    .expect("after the delay");
    assert!(
        retried_at.elapsed() >= Duration::from_millis(900),
        "not before the delay"
    );
    assert_eq!(delivery.attempt, 2);
    queue.dead_letter(&delivery, "still broken").await.unwrap();
    let dead = queue.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].job.clone(),
            dead[0].attempts,
            dead[0].reason.as_str()
        ),
        (job(3), 2, "still broken")
    );
    assert!(receive(queue).await.is_none());
    assert_eq!(queue.replay("no-such-job").await.unwrap(), None);
    assert_eq!(queue.replay(&dead[0].id).await.unwrap(), Some(job(3)));
    assert!(queue.list_dead(10).await.unwrap().is_empty());
    let again = receive(queue).await.expect("replayed");
    assert_eq!(again.attempt, 1, "a replay starts a fresh attempt count");
}

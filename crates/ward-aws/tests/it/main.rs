//! The AWS adapters against local servers: the SQS queue runs the queue conformance suite
//! on moto (started by `scripts/test`, at `WARD_MOTO_ENDPOINT`); upload URLs are checked by
//! a server that verifies SigV4 (s3s-fs, run inside this process) and by moto. AWS KMS as
//! the key source runs on moto's KMS, its key store on DynamoDB Local.

mod kms;
mod presign;

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use ward_aws::{AwsConnection, SqsJobQueue};

/// The moto server's endpoint.
pub fn moto_endpoint() -> String {
    std::env::var("WARD_MOTO_ENDPOINT").expect(
        "WARD_MOTO_ENDPOINT is not set: run scripts/test (it starts moto) or point it at an SQS/S3 server",
    )
}

/// A unique name for this test's resources.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// A fresh queue and dead-letter queue (redrive after 3 receives), polled without waiting.
pub async fn fresh_sqs_queue() -> (SqsJobQueue, ()) {
    let client = AwsConnection::local(&moto_endpoint()).sqs().await;
    let name = unique("ward-q");
    let dead = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the dead-letter queue");
    let dead_url = dead.queue_url().unwrap().to_owned();
    let dead_arn = client
        .get_queue_attributes()
        .queue_url(&dead_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap();
    let queue = client
        .create_queue()
        .queue_name(&name)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"3"}}"#),
        )
        .send()
        .await
        .expect("create the queue");
    let queue = SqsJobQueue::new(
        client,
        queue.queue_url().unwrap(),
        &dead_url,
        Duration::ZERO,
    );
    (queue, ())
}

ward_ports::job_queue_conformance_suite!(fresh_sqs_queue());

mod sqs_specifics {
    use std::time::Duration;

    use ward_ports::JobQueue;
    use ward_ports::queue_conformance::{job, receive};

    use super::fresh_sqs_queue;

    #[tokio::test]
    async fn s3_notifications_become_jobs_and_test_events_are_dropped() {
        let (queue, ()) = fresh_sqs_queue().await;
        let client = ward_aws::AwsConnection::local(&super::moto_endpoint())
            .sqs()
            .await;
        let url = queue_url(&queue);
        for body in [
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.to_owned(),
            // Ward's own copy into completed/: not a job.
            r#"{"Records":[{"eventName":"ObjectCreated:Copy","s3":{"object":{"key":"PROV001/completed/20250101T000000Z-0000000000000001.csv"}}}]}"#.to_owned(),
            // Two uploads in one notification, keys URL-encoded as moto does.
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"PROV001%2Fuploaded%2F20250101T000000Z-0000000000000001.csv"}}},{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"PROV001/uploaded/20250101T000000Z-0000000000000002.csv","size":3}}}]}"#.to_owned(),
        ] {
            client.send_message().queue_url(&url).message_body(body).send().await.unwrap();
        }
        let mut jobs = Vec::new();
        while let Some(delivery) = receive(&queue).await {
            jobs.push(delivery.job.clone());
            queue.complete(&delivery).await.unwrap();
        }
        jobs.sort_by_key(|j| j.id());
        assert_eq!(jobs, vec![job(1), job(2)]);
    }

    #[tokio::test]
    async fn an_unreadable_message_is_left_to_the_redrive_policy() {
        let (queue, ()) = fresh_sqs_queue().await;
        let client = ward_aws::AwsConnection::local(&super::moto_endpoint())
            .sqs()
            .await;
        let url = queue_url(&queue);
        client
            .send_message()
            .queue_url(&url)
            .message_body("\u{0}garbage")
            .send()
            .await
            .unwrap();
        // Each receive leases it for a second and skips it (never a job); after 3 receives
        // SQS moves it. Wait for that event, not for a fixed time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut n_receives = 0;
        while dead_count(&client, &queue).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the redrive policy never moved the unreadable message ({n_receives} receives)"
            );
            assert!(
                queue
                    .receive(Duration::from_secs(1))
                    .await
                    .unwrap()
                    .is_none()
            );
            n_receives += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(dead_count(&client, &queue).await, 1);
        assert!(
            queue.list_dead(10).await.unwrap().is_empty(),
            "no job in it"
        );
    }

    fn queue_url(queue: &ward_aws::SqsJobQueue) -> String {
        queue.queue_url().to_owned()
    }

    async fn dead_count(client: &aws_sdk_sqs::Client, queue: &ward_aws::SqsJobQueue) -> usize {
        let url = queue.dead_letter_url();
        let attributes = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        attributes
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .unwrap()
            .parse()
            .unwrap()
    }
}

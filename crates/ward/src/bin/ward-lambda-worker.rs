//! The worker as an AWS Lambda function (SQS event source, partial batch responses). It
//! reads the same settings file as `ward worker` (`WARD_CONFIG`, bundled with the
//! function), or, without one, the environment the CloudFormation template sets:
//! `WARD_TABLE`, `WARD_BUCKET`, `WARD_QUEUE_URL`, `WARD_DEAD_LETTER_QUEUE_URL`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use ward::config::Settings;
use ward::shape::{self, Shape};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
                .unwrap_or_else(|_| "warn,ward=info".into()),
        )
        .without_time()
        .init();
    let config = std::env::var_os("WARD_CONFIG").map(std::path::PathBuf::from);
    let mut settings = Settings::load(config.as_deref())?;
    if config.is_none() {
        settings.apply_lambda_environment();
    }
    let shape = Shape::from_settings(&settings)?;
    let Shape::Aws(aws) = &shape else {
        return Err("the Lambda worker runs in the AWS shape only".into());
    };
    let dead_letters = ward_aws::SqsJobQueue::new(
        aws.sqs.sqs().await,
        &aws.queue_url,
        &aws.dead_letter_queue_url,
        aws.wait,
    );
    let backend = shape::open(
        &shape,
        std::path::Path::new("/tmp"),
        ward_ingest::IngestSettings::default(),
        &Default::default(),
    )
    .await?;
    let ctx = Arc::clone(&backend.ctx);
    let dead_letters = Arc::new(dead_letters);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let ctx = Arc::clone(&ctx);
        let dead_letters = Arc::clone(&dead_letters);
        async move {
            Ok::<SqsBatchResponse, Error>(
                ward::lambda::handle_sqs_event(&ctx, &dead_letters, event.payload).await,
            )
        }
    }))
    .await
}

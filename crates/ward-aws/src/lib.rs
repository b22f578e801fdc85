//! Ward's AWS shape: the adapters behind the same ports the embedded shape fills.
//!
//! - [`s3`]: object storage on S3 through `object_store`, and SigV4 pre-signed,
//!   create-only upload URLs ([`s3::S3UploadUrls`], the [`ward_ports::UploadUrls`] port).
//! - [`sqs`]: the [`ward_ports::JobQueue`] port on SQS: S3 notifications and Ward's own
//!   jobs arrive on one queue; leases are visibility timeouts; poison messages go to the
//!   dead-letter queue by the queue's redrive policy, jobs that failed every attempt by the
//!   worker (with the reason).
//! - [`kms`]: AWS KMS as the key source of patient data at rest: each provider's
//!   key-encryption key is a KMS data key, its blob in the key store, cached for a bounded time.
//! - [`connect`]: one place that turns region / endpoint / credentials settings into SDK
//!   clients, so local servers (DynamoDB Local, moto, s3s) and AWS are configured alike.
//!
//! Owns: talking to AWS. Deliberately does not: know HTTP routes, CSV, or the key design.

pub mod connect;
pub mod kms;
pub mod s3;
pub mod sqs;

pub use connect::{AwsConnection, StaticCredentials};
// For callers (tests, tools) that set queues up.
pub use aws_sdk_dynamodb;
pub use aws_sdk_kms;
pub use aws_sdk_sqs;
pub use kms::KmsKeys;
pub use s3::{S3Settings, S3UploadUrls, s3_object_store};
pub use sqs::{SqsJobQueue, jobs_of_message};

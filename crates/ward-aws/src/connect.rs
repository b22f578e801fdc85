//! Region, endpoint and credentials, turned into SDK configuration.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Keys given in settings: for local servers only. On AWS leave them out and the standard
/// chain applies (environment, profile, the Lambda or ECS role, instance metadata).
#[derive(Clone)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// How to reach one AWS service.
#[derive(Debug, Clone, Default)]
pub struct AwsConnection {
    /// The region; default from the environment (`AWS_REGION`), else `us-east-1`.
    pub region: Option<String>,
    /// An endpoint override (a local server), e.g. `http://127.0.0.1:4566`.
    pub endpoint: Option<String>,
    /// Keys for a local server.
    pub credentials: Option<StaticCredentials>,
}

impl AwsConnection {
    /// A local server at `endpoint` with throw-away keys (tests, local development).
    pub fn local(endpoint: &str) -> Self {
        Self {
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.to_owned()),
            credentials: Some(StaticCredentials {
                access_key_id: "local".into(),
                secret_access_key: "local-secret".into(),
            }),
        }
    }

    /// The region to use.
    pub fn region_or_default(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// SDK configuration for this connection.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region_or_default()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(keys) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &keys.access_key_id,
                &keys.secret_access_key,
                None,
                None,
                "ward-settings",
            ));
        }
        loader.load().await
    }

    /// A DynamoDB client.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    /// An AWS KMS client.
    pub async fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk_config().await)
    }

    /// An SQS client.
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }
}

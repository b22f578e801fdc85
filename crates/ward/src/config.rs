//! Ward's settings: one typed tree, read from a TOML file (`--config` / `WARD_CONFIG`),
//! then overridden by `WARD_*` environment variables and flags. Every field is optional
//! with a sensible default, so the embedded shape needs no file at all; unknown keys are
//! refused so that a typo is an error, not a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The data folder (store file and objects). Default `ward-data`.
    pub data_dir: Option<PathBuf>,
    /// Address the server listens on. Default `127.0.0.1:8080`.
    pub listen: Option<SocketAddr>,
    /// Base URL clients reach the server at (for upload links). Default `http://{listen}`.
    pub public_url: Option<String>,
    /// Upload settings.
    #[serde(default)]
    pub uploads: UploadSettings,
    /// Ingest settings.
    #[serde(default)]
    pub ingest: IngestFileSettings,
    /// Object retention.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Facility analytics.
    #[serde(default)]
    pub analytics: AnalyticsFileSettings,
    /// The record store: `kind = "embedded"` (default) or `"dynamodb"`.
    #[serde(default)]
    pub store: StoreSettings,
    /// Object storage: `kind = "local"` (default, under the data folder) or `"s3"`.
    #[serde(default)]
    pub objects: ObjectsSettings,
    /// The job queue: `kind = "embedded"` (default, in the store) or `"sqs"`.
    #[serde(default)]
    pub events: EventsSettings,
}

/// `[store]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `embedded` (default) or `dynamodb`.
    pub kind: Option<String>,
    /// Page cache of the embedded store, in MiB. Default 16 (with `ingest.batch_rows` =
    /// 1024, peak memory stays under 150 MiB for a 1M-row file; 32 and 2048 ingest ~35%
    /// faster at ~200 MiB, see docs/benchmarks.md).
    pub cache_mib: Option<usize>,
    /// DynamoDB: the table name. Default `ward`.
    pub table: Option<String>,
    /// DynamoDB: create the table (with its indexes) if it is missing. Default false
    /// (CloudFormation creates it on AWS).
    pub create_table: Option<bool>,
    /// AWS region (default `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint override for a local server, e.g. `http://127.0.0.1:8000`.
    pub endpoint: Option<String>,
    /// Access key id, for a local server only (on AWS the standard credential chain).
    pub access_key_id: Option<String>,
    /// Its secret, for a local server only (never printed).
    #[serde(default)]
    pub secret_access_key: Secret,
}

/// `[objects]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsSettings {
    /// `local` (default) or `s3`.
    pub kind: Option<String>,
    /// S3: the uploads bucket.
    pub bucket: Option<String>,
    /// AWS region (default `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint override for a local server, e.g. `http://127.0.0.1:8000`.
    pub endpoint: Option<String>,
    /// Access key id, for a local server only (on AWS the standard credential chain).
    pub access_key_id: Option<String>,
    /// Its secret, for a local server only (never printed).
    #[serde(default)]
    pub secret_access_key: Secret,
}

/// `[events]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// `embedded` (default) or `sqs`.
    pub kind: Option<String>,
    /// SQS: the queue S3 notifications go to.
    pub queue_url: Option<String>,
    /// SQS: its dead-letter queue (the redrive target).
    pub dead_letter_queue_url: Option<String>,
    /// SQS: how long one receive long-polls, in seconds (0-20). Default 20.
    pub wait_seconds: Option<u64>,
    /// AWS region (default `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint override for a local server, e.g. `http://127.0.0.1:8000`.
    pub endpoint: Option<String>,
    /// Access key id, for a local server only (on AWS the standard credential chain).
    pub access_key_id: Option<String>,
    /// Its secret, for a local server only (never printed).
    #[serde(default)]
    pub secret_access_key: Secret,
}

/// Where an AWS service is (from one of `[store]`, `[objects]`, `[events]`). On AWS only
/// the region is needed (or none: `AWS_REGION`); the endpoint and keys are for local
/// servers, credentials otherwise come from the standard chain (environment, profile, the
/// Lambda or instance role).
#[derive(Debug, Clone, Default)]
pub struct AwsEndpoint {
    /// The region.
    pub region: Option<String>,
    /// An endpoint override.
    pub endpoint: Option<String>,
    /// An access key id and its secret.
    pub keys: Option<(String, Secret)>,
}

macro_rules! aws_endpoint_of {
    ($($section:ty),*) => {$(
        impl $section {
            /// The AWS endpoint settings of this section.
            pub fn aws(&self) -> AwsEndpoint {
                AwsEndpoint {
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    keys: match (&self.access_key_id, self.secret_access_key.expose()) {
                        (Some(id), Some(_)) => Some((id.clone(), self.secret_access_key.clone())),
                        _ => None,
                    },
                }
            }
        }
    )*};
}
aws_endpoint_of!(StoreSettings, ObjectsSettings, EventsSettings);

/// `[uploads]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSettings {
    /// Largest accepted file, in bytes. Default 1 GiB.
    pub max_bytes: Option<u64>,
    /// How long an upload URL is valid, in seconds. Default 900.
    pub url_ttl_seconds: Option<i64>,
}

/// `[ingest]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestFileSettings {
    /// Longest doctor's note, in characters. Default 10,000.
    pub max_notes_chars: Option<usize>,
    /// Rows per store write batch. Default 1,024.
    pub batch_rows: Option<usize>,
    /// Answer a visit file byte-identical to an earlier completed upload from that
    /// upload's outcomes, without reading its rows. Default true.
    pub reuse_identical_files: Option<bool>,
    /// Memory, in MiB, for sorting a visit file into the store's key order before it is
    /// written (the embedded store; the rest goes to sorted runs on disk). Default 16.
    pub sort_buffer_mib: Option<usize>,
}

/// `[analytics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsFileSettings {
    /// Longest one query may run, in seconds (standard queries and ad hoc SQL). Default 240.
    pub query_timeout_seconds: Option<u64>,
    /// Most rows an ad hoc query returns. Default 10,000.
    pub max_sql_rows: Option<usize>,
    /// Memory one query may use, in MiB, before it fails. Default 1,024.
    pub query_memory_mib: Option<usize>,
    /// Ad hoc queries one provider may run at once. Default 1.
    pub max_sql_per_provider: Option<usize>,
    /// Ad hoc queries the server runs at once, all providers together. Default 2.
    pub max_sql_queries: Option<usize>,
}

/// `[retention]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days processed files (and their reports and error lists) are kept. Default 2,557
    /// (7 years).
    pub completed_days: Option<u64>,
    /// Hours before an upload URL that was never used is forgotten and any partial object
    /// removed. Default 24.
    pub stale_upload_hours: Option<u64>,
}

impl Settings {
    /// Fills the AWS shape from the variables the CloudFormation template gives the
    /// Lambdas (`WARD_TABLE`, `WARD_BUCKET`, `WARD_QUEUE_URL`,
    /// `WARD_DEAD_LETTER_QUEUE_URL`), when they are set.
    pub fn apply_lambda_environment(&mut self) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let (Some(table), Some(bucket), Some(queue), Some(dead)) = (
            var("WARD_TABLE"),
            var("WARD_BUCKET"),
            var("WARD_QUEUE_URL"),
            var("WARD_DEAD_LETTER_QUEUE_URL"),
        ) {
            self.store.kind = Some("dynamodb".into());
            self.store.table = Some(table);
            self.objects.kind = Some("s3".into());
            self.objects.bucket = Some(bucket);
            self.events.kind = Some("sqs".into());
            self.events.queue_url = Some(queue);
            self.events.dead_letter_queue_url = Some(dead);
        }
    }

    /// Reads the file at `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid Ward settings file", path.display()))
    }
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(Option<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: Option<String>) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(deserializer).map(Self)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(<redacted>)"
        } else {
            "Secret(None)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_and_known_ones_read() {
        let ok: Settings =
            toml::from_str("listen = \"127.0.0.1:9000\"\n[uploads]\nmax_bytes = 10\n").unwrap();
        assert_eq!(ok.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(ok.uploads.max_bytes, Some(10));
        let typo = toml::from_str::<Settings>("[uploads]\nmax_byte = 10\n").unwrap_err();
        assert!(typo.to_string().contains("max_byte"), "{typo}");
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(Some("hunter2".into()));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose(), Some("hunter2"));
    }
}

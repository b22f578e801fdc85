//! Ward's settings: one typed tree, read from a TOML file (`--config` / `WARD_CONFIG`),
//! then overridden by `WARD_*` environment variables and flags. Every field is optional
//! with a sensible default, so the embedded shape needs no file at all; unknown keys are
//! refused so that a typo is an error, not a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Where the AWS services are (the AWS shape only).
    #[serde(default)]
    pub aws: AwsSettings,
    /// Sign-in: built-in users' tokens, an OpenID provider, break-glass.
    #[serde(default)]
    pub access: AccessSettings,
    /// The keys that seal patient data at rest.
    #[serde(default)]
    pub keys: KeysSettings,
}

/// `[keys]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSettings {
    /// The key folder: the master key file and the key store. Default beside the data
    /// folder, `{data folder}-keys`; `WARD_KEYS_DIR` overrides it. Never inside the data
    /// folder. The embedded shape's.
    pub dir: Option<PathBuf>,
    /// The AWS shape: the AWS KMS key (id, ARN or alias) that wraps each provider's
    /// key-encryption key (`WARD_KMS_KEY_ID`). Required there.
    pub kms_key_id: Option<String>,
    /// The AWS shape: the DynamoDB table of the key store (`WARD_KEYS_TABLE`), never the
    /// records table. Default `{[store] table}-keys`.
    pub table: Option<String>,
    /// The AWS shape: how long a key-encryption key from KMS is kept in memory before it
    /// is decrypted again, in seconds (1-3,600). Default 300.
    pub cache_seconds: Option<u64>,
}

/// `[access]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// How long a built-in user's token lives, in seconds (60-86,400). Default 900.
    pub token_ttl_seconds: Option<i64>,
    /// How long a clinician's break-glass grant lasts, in minutes (1-1,440). Default 60.
    pub break_glass_minutes: Option<i64>,
    /// An OpenID provider whose bearer tokens are accepted (Cognito on AWS).
    pub oidc: Option<OidcFileSettings>,
}

/// `[access.oidc]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFileSettings {
    /// The issuer, exactly as its discovery document states it.
    pub issuer: String,
    /// The audience Ward is: `aud` (an API resource, or the app client id of ID tokens) or
    /// Cognito's `client_id` of access tokens.
    pub audience: String,
    /// Algorithms accepted (asymmetric only). Default `["RS256", "ES256"]`.
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 60.
    pub leeway_seconds: Option<u64>,
    /// Least time between key-set fetches for an unknown `kid`, in seconds. Default 60.
    pub refetch_cooldown_seconds: Option<u64>,
    /// The claim naming the provider. Default `custom:provider`.
    pub provider_claim: Option<String>,
    /// One provider every token of this issuer belongs to (instead of a claim).
    pub provider: Option<String>,
    /// The claim with the role name or a list of groups. Default `cognito:groups`.
    pub role_claim: Option<String>,
    /// The claim with a clinician's clinician id. Default `custom:clinician_id`.
    pub clinician_claim: Option<String>,
    /// The claim with a patient's MRN. Default `custom:mrn`.
    pub mrn_claim: Option<String>,
}

impl OidcFileSettings {
    /// The verifier's settings, or why they are wrong.
    pub fn verifier_settings(&self) -> anyhow::Result<ward_identity::OidcSettings> {
        let defaults = ward_identity::ClaimMapping::default();
        let algorithms = match &self.algorithms {
            None => vec![jsonwebtoken_alg("RS256")?, jsonwebtoken_alg("ES256")?],
            Some(names) if names.is_empty() => {
                anyhow::bail!("[access.oidc] algorithms must name at least one algorithm")
            }
            Some(names) => names
                .iter()
                .map(|name| jsonwebtoken_alg(name))
                .collect::<anyhow::Result<_>>()?,
        };
        let fixed_provider = self
            .provider
            .as_deref()
            .map(ward_domain::ProviderId::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("[access.oidc] provider: {e}"))?;
        if self.issuer.is_empty() || self.audience.is_empty() {
            anyhow::bail!("[access.oidc] needs an issuer and an audience");
        }
        Ok(ward_identity::OidcSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms,
            leeway: self
                .leeway_seconds
                .unwrap_or(ward_identity::DEFAULT_LEEWAY_SECONDS)
                .min(600),
            refetch_cooldown_seconds: self.refetch_cooldown_seconds.unwrap_or(60),
            claims: ward_identity::ClaimMapping {
                provider_claim: if fixed_provider.is_some() {
                    None
                } else {
                    self.provider_claim.clone().or(defaults.provider_claim)
                },
                fixed_provider,
                role_claim: self.role_claim.clone().unwrap_or(defaults.role_claim),
                clinician_claim: self
                    .clinician_claim
                    .clone()
                    .unwrap_or(defaults.clinician_claim),
                mrn_claim: self.mrn_claim.clone().unwrap_or(defaults.mrn_claim),
            },
        })
    }
}

fn jsonwebtoken_alg(name: &str) -> anyhow::Result<ward_identity::oidc::Algorithm> {
    ward_identity::oidc::asymmetric_algorithm(name).with_context(|| {
        format!("[access.oidc] algorithms: {name:?} is not an asymmetric JWS algorithm (RS256, ES256, PS256, EdDSA, ...)")
    })
}

/// `[store]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which store.
    pub kind: Option<StoreKind>,
    /// Page cache of the embedded store, in MiB. Default 16 (with `ingest.batch_rows` =
    /// 1024, peak memory stays under 150 MiB for a 1M-row file; 32 and 2048 ingest ~35%
    /// faster at ~200 MiB, see docs/benchmarks.md).
    pub cache_mib: Option<usize>,
    /// DynamoDB: the table name. Default `ward`.
    pub table: Option<String>,
    /// DynamoDB: create the table (with its indexes) if it is missing. Default false
    /// (CloudFormation creates it on AWS).
    pub create_table: Option<bool>,
}

/// `[store] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One redb file in the data folder (the default).
    #[default]
    Embedded,
    /// DynamoDB (the AWS shape).
    Dynamodb,
}

/// `[objects]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsSettings {
    /// Which object storage.
    pub kind: Option<ObjectsKind>,
    /// S3: the uploads bucket.
    pub bucket: Option<String>,
}

/// `[objects] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsKind {
    /// A folder under the data folder (the default).
    #[default]
    Local,
    /// An S3 bucket (the AWS shape).
    S3,
}

/// `[events]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// Which job queue.
    pub kind: Option<EventsKind>,
    /// SQS: the queue S3 notifications go to.
    pub queue_url: Option<String>,
    /// SQS: its dead-letter queue (the redrive target).
    pub dead_letter_queue_url: Option<String>,
    /// SQS: how long one receive long-polls, in seconds (0-20). Default 20.
    pub wait_seconds: Option<u64>,
}

/// `[events] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsKind {
    /// The queue kept in the store (the default).
    #[default]
    Embedded,
    /// SQS (the AWS shape).
    Sqs,
}

macro_rules! kind_names {
    ($($kind:ty { $($variant:ident => $name:literal),* })*) => {$(
        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$variant => $name),* })
            }
        }
    )*};
}
kind_names! {
    StoreKind { Embedded => "embedded", Dynamodb => "dynamodb" }
    ObjectsKind { Local => "local", S3 => "s3" }
    EventsKind { Embedded => "embedded", Sqs => "sqs" }
}

/// `[aws]`: where the AWS services of the AWS shape are, for all three of them. On AWS
/// only the region is needed (or none: `AWS_REGION`) and credentials come from the
/// standard chain (environment, profile, the Lambda or instance role); the endpoints and
/// keys are for local servers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The region.
    pub region: Option<String>,
    /// Access key id, for a local server only.
    pub access_key_id: Option<String>,
    /// Its secret, for a local server only (never printed).
    #[serde(default)]
    pub secret_access_key: Secret,
    /// Endpoint overrides, per service.
    #[serde(default)]
    pub endpoints: AwsEndpoints,
}

/// `[aws.endpoints]`: a local server per service, e.g. `dynamodb = "http://127.0.0.1:8000"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEndpoints {
    /// DynamoDB's.
    pub dynamodb: Option<String>,
    /// S3's.
    pub s3: Option<String>,
    /// SQS's.
    pub sqs: Option<String>,
    /// AWS KMS's.
    pub kms: Option<String>,
}

/// The AWS services Ward talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    /// The record store.
    Dynamodb,
    /// Object storage.
    S3,
    /// The job queue.
    Sqs,
    /// The key source.
    Kms,
}

/// Where one AWS service is.
#[derive(Debug, Clone, Default)]
pub struct AwsEndpoint {
    /// The region.
    pub region: Option<String>,
    /// An endpoint override.
    pub endpoint: Option<String>,
    /// An access key id and its secret.
    pub keys: Option<(String, Secret)>,
}

impl AwsSettings {
    /// Where `service` is.
    pub fn endpoint(&self, service: AwsService) -> AwsEndpoint {
        let endpoint = match service {
            AwsService::Dynamodb => &self.endpoints.dynamodb,
            AwsService::S3 => &self.endpoints.s3,
            AwsService::Sqs => &self.endpoints.sqs,
            AwsService::Kms => &self.endpoints.kms,
        };
        AwsEndpoint {
            region: self.region.clone(),
            endpoint: endpoint.clone(),
            keys: match (&self.access_key_id, self.secret_access_key.expose()) {
                (Some(id), Some(_)) => Some((id.clone(), self.secret_access_key.clone())),
                _ => None,
            },
        }
    }
}

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
    /// `WARD_DEAD_LETTER_QUEUE_URL`, and `WARD_KEYS_TABLE`, `WARD_KMS_KEY_ID`), when they
    /// are set.
    pub fn apply_lambda_environment(&mut self) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let (Some(table), Some(bucket), Some(queue), Some(dead)) = (
            var("WARD_TABLE"),
            var("WARD_BUCKET"),
            var("WARD_QUEUE_URL"),
            var("WARD_DEAD_LETTER_QUEUE_URL"),
        ) {
            self.store.kind = Some(StoreKind::Dynamodb);
            self.store.table = Some(table);
            self.objects.kind = Some(ObjectsKind::S3);
            self.objects.bucket = Some(bucket);
            self.events.kind = Some(EventsKind::Sqs);
            self.events.queue_url = Some(queue);
            self.events.dead_letter_queue_url = Some(dead);
        }
        if let Some(table) = var("WARD_KEYS_TABLE") {
            self.keys.table = Some(table);
        }
        if let Some(key) = var("WARD_KMS_KEY_ID") {
            self.keys.kms_key_id = Some(key);
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

/// The runtime settings a settings file makes: its values where it has them, the
/// defaults (and the bounds) of each setting where it is silent or out of range. Flags
/// and `WARD_*` variables override these at the call site.
impl Settings {
    /// The pipeline's settings (defaults where the file is silent).
    pub fn ingest(&self) -> ward_ingest::IngestSettings {
        let settings = self;
        let ingest_defaults = ward_ingest::IngestSettings::default();
        ward_ingest::IngestSettings {
            max_notes_chars: settings
                .ingest
                .max_notes_chars
                .unwrap_or(ingest_defaults.max_notes_chars),
            batch_rows: settings
                .ingest
                .batch_rows
                .unwrap_or(ingest_defaults.batch_rows)
                .clamp(1, 100_000),
            reuse_identical_files: settings
                .ingest
                .reuse_identical_files
                .unwrap_or(ingest_defaults.reuse_identical_files),
            sort_buffer_bytes: settings
                .ingest
                .sort_buffer_mib
                .map_or(ingest_defaults.sort_buffer_bytes, |mib| {
                    mib.clamp(1, 4096) * 1024 * 1024
                }),
            analytics: ward_ports::AnalyticsSettings {
                query_timeout: settings
                    .analytics
                    .query_timeout_seconds
                    .map_or(ingest_defaults.analytics.query_timeout, |s| {
                        Duration::from_secs(s.clamp(1, 24 * 3600))
                    }),
                max_sql_rows: settings
                    .analytics
                    .max_sql_rows
                    .unwrap_or(ingest_defaults.analytics.max_sql_rows)
                    .clamp(1, 1_000_000),
                query_memory_bytes: settings
                    .analytics
                    .query_memory_mib
                    .map_or(ingest_defaults.analytics.query_memory_bytes, |mib| {
                        mib.max(16) << 20
                    }),
                max_sql_per_provider: settings
                    .analytics
                    .max_sql_per_provider
                    .unwrap_or(ingest_defaults.analytics.max_sql_per_provider)
                    .max(1),
                max_sql_queries: settings
                    .analytics
                    .max_sql_queries
                    .unwrap_or(ingest_defaults.analytics.max_sql_queries)
                    .max(1),
                sql_sandbox_program: None,
            },
            ..ingest_defaults.clone()
        }
    }

    /// The embedded store's tuning (its attribute dictionary is `embedded::open_table`'s)
    /// and its key folder (`WARD_KEYS_DIR`, else `[keys] dir`, else beside the data
    /// folder).
    pub fn embedded_store(&self) -> crate::embedded::EmbeddedStore {
        let defaults = ward_store_embedded::EmbeddedOptions::default();
        crate::embedded::EmbeddedStore {
            options: ward_store_embedded::EmbeddedOptions {
                cache_bytes: self
                    .store
                    .cache_mib
                    .map_or(defaults.cache_bytes, |mib| mib.max(1) << 20),
                ..defaults
            },
            keys_dir: std::env::var_os("WARD_KEYS_DIR")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
                .or_else(|| self.keys.dir.clone()),
        }
    }

    /// The API's settings (an `[access.oidc]` section that is wrong is an error).
    pub fn api(&self) -> anyhow::Result<ward_api::ApiSettings> {
        let defaults = ward_api::ApiSettings::default();
        Ok(ward_api::ApiSettings {
            token_ttl_seconds: self
                .access
                .token_ttl_seconds
                .map_or(defaults.token_ttl_seconds, |s| s.clamp(60, 86_400)),
            break_glass_minutes: self
                .access
                .break_glass_minutes
                .map_or(defaults.break_glass_minutes, |m| m.clamp(1, 1_440)),
            oidc: self
                .access
                .oidc
                .as_ref()
                .map(OidcFileSettings::verifier_settings)
                .transpose()?,
            max_upload_bytes: self.uploads.max_bytes.unwrap_or(defaults.max_upload_bytes),
            upload_url_ttl_seconds: self
                .uploads
                .url_ttl_seconds
                .unwrap_or(defaults.upload_url_ttl_seconds),
            ..defaults
        })
    }

    /// How long objects are kept.
    pub fn retention(&self) -> ward_ingest::retention::RetentionPolicy {
        let defaults = ward_ingest::retention::RetentionPolicy::default();
        let hours = |h: u64| Duration::from_secs(h * 3600);
        ward_ingest::retention::RetentionPolicy {
            completed: self
                .retention
                .completed_days
                .map_or(defaults.completed, |d| hours(d * 24)),
            stale_uploaded: self
                .retention
                .stale_upload_hours
                .map_or(defaults.stale_uploaded, hours),
        }
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
    fn an_unknown_kind_is_refused_with_the_kinds_there_are() {
        let error = toml::from_str::<Settings>("[store]\nkind = \"dynamo\"\n").unwrap_err();
        assert!(
            error.to_string().contains("`embedded` or `dynamodb`"),
            "{error}"
        );
        let aws: Settings = toml::from_str(
            "[store]\nkind = \"dynamodb\"\n[aws]\nregion = \"eu-west-1\"\n[aws.endpoints]\nsqs = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        assert_eq!(aws.store.kind, Some(StoreKind::Dynamodb));
        let sqs = aws.aws.endpoint(AwsService::Sqs);
        assert_eq!(sqs.region.as_deref(), Some("eu-west-1"));
        assert_eq!(sqs.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(aws.aws.endpoint(AwsService::S3).endpoint, None);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(Some("hunter2".into()));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose(), Some("hunter2"));
    }
}

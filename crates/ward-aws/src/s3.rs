//! S3: the object store (through `object_store`) and SigV4 pre-signed upload URLs.
//!
//! An upload URL is a query-string-signed `PUT` whose signature covers `host`,
//! `content-type: text/csv` and `if-none-match: *`: S3 refuses the request unless the
//! client sends exactly those headers, and `If-None-Match: *` makes the write create-only
//! (a second PUT to the same key gets 412). The URL expires with the upload.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ports::{PresignError, PresignedPut, UploadUrls};

use crate::connect::AwsConnection;

/// The headers an upload URL for `object_key` signs, besides `host`: the media type of
/// the upload's kind (from the key's extension) and `if-none-match: *`.
pub fn signed_upload_headers(object_key: &str) -> [(&'static str, &'static str); 2] {
    let kind = if object_key.ends_with(".json") {
        UploadKind::Facilities
    } else {
        UploadKind::Visits
    };
    [("content-type", kind.media_type()), ("if-none-match", "*")]
}

/// S3's longest pre-signed URL lifetime.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Characters left as they are in a URI path segment or query value (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the uploads bucket is.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// Region, endpoint override, keys.
    pub connection: AwsConnection,
}

/// The bucket as an object store. With an endpoint override (a local server) requests are
/// path-style and plain HTTP is allowed.
pub fn s3_object_store(settings: &S3Settings) -> Result<AmazonS3, object_store::Error> {
    let connection = &settings.connection;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_region(connection.region_or_default());
    if let Some(endpoint) = &connection.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false);
    }
    if let Some(keys) = &connection.credentials {
        builder = builder
            .with_access_key_id(&keys.access_key_id)
            .with_secret_access_key(&keys.secret_access_key);
    }
    builder.build()
}

/// Upload URLs pointing straight at S3.
#[derive(Debug, Clone)]
pub struct S3UploadUrls {
    store: Arc<AmazonS3>,
    bucket: String,
    region: String,
    base_url: String,
}

impl S3UploadUrls {
    /// URLs for the bucket behind `store` (whose credentials sign them).
    pub fn new(store: Arc<AmazonS3>, settings: &S3Settings) -> Self {
        let region = settings.connection.region_or_default();
        let base_url = match &settings.connection.endpoint {
            Some(endpoint) => format!(
                "{}/{}",
                endpoint.trim_end_matches('/'),
                utf8_percent_encode(&settings.bucket, UNRESERVED)
            ),
            None => format!("https://{}.s3.{region}.amazonaws.com", settings.bucket),
        };
        Self {
            store,
            bucket: settings.bucket.clone(),
            region,
            base_url,
        }
    }

    /// A pre-signed create-only PUT of `object_key`, valid for `expires_in` from `now`.
    pub async fn presign(
        &self,
        object_key: &str,
        now: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedPut, PresignError> {
        self.presign_put_with(
            object_key,
            &signed_upload_headers(object_key),
            now,
            expires_in,
        )
        .await
    }

    /// A pre-signed PUT carrying exactly `headers`.
    async fn presign_put_with(
        &self,
        object_key: &str,
        headers: &[(&str, &str)],
        now: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedPut, PresignError> {
        let url = self
            .presign_request("PUT", object_key, headers, now, expires_in)
            .await?;
        Ok(PresignedPut {
            url,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        })
    }

    /// A SigV4 query-signed URL for `method` on `object_key` with exactly `headers`.
    pub async fn presign_request(
        &self,
        method: &str,
        object_key: &str,
        headers: &[(&str, &str)],
        now: SystemTime,
        expires_in: Duration,
    ) -> Result<String, PresignError> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|error| PresignError(format!("no AWS credentials: {error}")))?;
        let identity = Credentials::new(
            &credential.key_id,
            &credential.secret_key,
            credential.token.clone(),
            None,
            "ward-s3",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in.clamp(Duration::from_secs(1), MAX_EXPIRY));
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|error| PresignError(error.to_string()))?
            .into();
        let path: Vec<String> = object_key
            .split('/')
            .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
            .collect();
        let url = format!("{}/{}", self.base_url, path.join("/"));
        let request = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().copied(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|error| PresignError(error.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|error| PresignError(error.to_string()))?
            .into_parts();
        let (_headers, query) = instructions.into_parts();
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, UNRESERVED)))
            .collect();
        Ok(format!("{url}?{}", query.join("&")))
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl UploadUrls for S3UploadUrls {
    async fn presign_put(
        &self,
        provider: &ProviderId,
        upload: &UploadId,
        kind: UploadKind,
        expires_at: UtcInstant,
    ) -> Result<PresignedPut, PresignError> {
        let now = UtcInstant::now();
        let seconds = (expires_at.unix_seconds() - now.unix_seconds()).max(1) as u64;
        let key = key_layout::upload_object_key(provider, ObjectStage::Uploaded, upload, kind);
        self.presign(&key, SystemTime::now(), Duration::from_secs(seconds))
            .await
    }

    async fn presign_object_put(
        &self,
        object_key: &str,
        media_type: &str,
        expires_at: UtcInstant,
    ) -> Result<PresignedPut, PresignError> {
        let headers = [("content-type", media_type), ("if-none-match", "*")];
        self.presign_put_with(
            object_key,
            &headers,
            SystemTime::now(),
            seconds_until(expires_at),
        )
        .await
    }

    async fn presign_object_get(
        &self,
        object_key: &str,
        expires_at: UtcInstant,
    ) -> Result<String, PresignError> {
        self.presign_request(
            "GET",
            object_key,
            &[],
            SystemTime::now(),
            seconds_until(expires_at),
        )
        .await
    }
}

fn seconds_until(expires_at: UtcInstant) -> Duration {
    let seconds = expires_at.unix_seconds() - UtcInstant::now().unix_seconds();
    Duration::from_secs(seconds.max(1) as u64)
}

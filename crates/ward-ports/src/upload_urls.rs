//! The upload-URL port: how a client is told where to send a file. The embedded shape
//! answers with a URL of Ward's own signed PUT endpoint (HMAC); the AWS shape with a SigV4
//! pre-signed S3 PUT. Either way the URL is create-only and expires.

use async_trait::async_trait;
use ward_domain::key_layout::UploadKind;
use ward_domain::{ProviderId, UploadId, UtcInstant};

/// A pre-signed request: the client sends the file with this method to this URL, with
/// exactly these headers (they are part of the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    /// The URL, credentials included.
    pub url: String,
    /// Headers the request must carry, lower-case names.
    pub headers: Vec<(String, String)>,
}

/// Why no URL could be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign an upload URL: {0}")]
pub struct PresignError(pub String);

/// Makes upload URLs.
#[async_trait]
pub trait UploadUrls: Send + Sync + 'static {
    /// A create-only PUT of the upload's file (`{provider}/uploaded/{id}.csv`), valid until
    /// `expires_at`.
    async fn presign_put(
        &self,
        provider: &ProviderId,
        upload: &UploadId,
        kind: UploadKind,
        expires_at: UtcInstant,
    ) -> Result<PresignedPut, PresignError>;

    /// A create-only PUT of an object Ward named (a document's bytes) carrying
    /// `media_type`, valid until `expires_at`.
    async fn presign_object_put(
        &self,
        object_key: &str,
        media_type: &str,
        expires_at: UtcInstant,
    ) -> Result<PresignedPut, PresignError>;

    /// A GET of an object (a document's bytes), valid until `expires_at`.
    async fn presign_object_get(
        &self,
        object_key: &str,
        expires_at: UtcInstant,
    ) -> Result<String, PresignError>;
}

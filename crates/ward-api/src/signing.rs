//! Pre-signed upload URLs for the embedded shape: HMAC-SHA256 over method, object key
//! and expiry. The signature is the credential of the PUT endpoint.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ports::{PresignError, PresignedPut, UploadUrls};

/// Upload URLs of the embedded shape: Ward's own signed PUT endpoint
/// (`/v1/upload-objects/{provider}/{upload}?expires&signature`).
#[derive(Debug, Clone)]
pub struct ServerUploadUrls {
    signer: UploadSigner,
    public_url: String,
}

impl ServerUploadUrls {
    /// URLs under `public_url`, signed by `signer`.
    pub fn new(signer: UploadSigner, public_url: &str) -> Self {
        Self {
            signer,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }
}

#[async_trait]
impl UploadUrls for ServerUploadUrls {
    async fn presign_put(
        &self,
        provider: &ProviderId,
        upload: &UploadId,
        kind: UploadKind,
        expires_at: UtcInstant,
    ) -> Result<PresignedPut, PresignError> {
        let object_key =
            key_layout::upload_object_key(provider, ObjectStage::Uploaded, upload, kind);
        let expires = expires_at.unix_seconds();
        let signature = self.signer.sign("PUT", &object_key, expires);
        Ok(PresignedPut {
            url: format!(
                "{}/v1/upload-objects/{provider}/{upload}?expires={expires}&signature={signature}",
                self.public_url
            ),
            headers: vec![("content-type".into(), kind.media_type().into())],
        })
    }

    async fn presign_object_put(
        &self,
        object_key: &str,
        media_type: &str,
        expires_at: UtcInstant,
    ) -> Result<PresignedPut, PresignError> {
        let expires = expires_at.unix_seconds();
        let signature = self.signer.sign("PUT", object_key, expires);
        Ok(PresignedPut {
            url: format!(
                "{}/v1/document-objects/{object_key}?expires={expires}&signature={signature}",
                self.public_url
            ),
            headers: vec![("content-type".into(), media_type.into())],
        })
    }

    async fn presign_object_get(
        &self,
        object_key: &str,
        expires_at: UtcInstant,
    ) -> Result<String, PresignError> {
        let expires = expires_at.unix_seconds();
        let signature = self.signer.sign("GET", object_key, expires);
        Ok(format!(
            "{}/v1/document-objects/{object_key}?expires={expires}&signature={signature}",
            self.public_url
        ))
    }
}

/// Signs and verifies upload URLs with a server secret.
#[derive(Clone)]
pub struct UploadSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UploadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSigner(..)")
    }
}

impl UploadSigner {
    /// A signer with this secret (at least 32 bytes).
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// The hex signature of a PUT to `object_key` valid until `expires` (Unix seconds).
    pub fn sign(&self, method: &str, object_key: &str, expires: i64) -> String {
        let mut mac = self.mac();
        mac.update(format!("{method}\n{object_key}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` (hex) signs exactly this method, key and expiry.
    pub fn verify(&self, method: &str, object_key: &str, expires: i64, signature: &str) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(format!("{method}\n{object_key}\n{expires}").as_bytes());
        mac.verify_slice(&given).is_ok()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac accepts any key length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_method_key_and_expiry() {
        let signer = UploadSigner::new(vec![7; 32]);
        let signature = signer.sign("PUT", "P/uploaded/a.csv", 100);
        assert!(signer.verify("PUT", "P/uploaded/a.csv", 100, &signature));
        assert!(!signer.verify("PUT", "P/uploaded/b.csv", 100, &signature));
        assert!(!signer.verify("PUT", "P/uploaded/a.csv", 101, &signature));
        assert!(!signer.verify("GET", "P/uploaded/a.csv", 100, &signature));
        assert!(!signer.verify("PUT", "P/uploaded/a.csv", 100, "zz"));
        let other = UploadSigner::new(vec![8; 32]);
        assert!(!other.verify("PUT", "P/uploaded/a.csv", 100, &signature));
    }
}

//! Patient data at rest: envelope encryption of the attributes that hold it.
//!
//! Owns: the key hierarchy (a versioned key-encryption key per provider, from the master
//! key file in the embedded shape: [`MasterKeys`]; a data key per patient and one per
//! provider, each wrapped by the provider's current key and kept in a key store of its
//! own: [`DataKeys`]), the sealed form of one attribute ([`envelope`]: AES-256-GCM whose
//! associated data binds it to its item key, attribute and data key; LZ4 first when it is
//! over 1 KiB), and [`ProtectedTable`], the decorator of the table port that seals the
//! protected attributes on every write and opens them on every read, so no domain code
//! knows it is there. Which attributes are protected and whose key an item uses are
//! supplied by the composition root ([`Protection`]).
//!
//! Deliberately does not: know Ward's key layout or schemas, or keep keys in the table it
//! protects (a restored table must not bring an erased patient's key back).

mod data_keys;
pub mod envelope;
pub mod ephemeral;
pub mod kek;
mod master;
pub mod objects;
mod table;

pub use data_keys::{DataKey, DataKeys, Scope};
pub use kek::Kek;
pub use master::MasterKeys;
pub use objects::SealedObjects;
pub use table::{DATA_KEY_SK, ProtectedTable, Protection, SEALED_ATTRIBUTE};

use std::path::PathBuf;

/// What can go wrong protecting or opening data.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    /// The master key file is missing, unreadable, malformed or not owner-only.
    #[error("the key file {path} {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key version that the key source does not have.
    #[error("key version {0} is not in the key file (was it written with another one?)")]
    UnknownKeyVersion(u32),
    /// Stored ciphertext failed its integrity check: changed, moved to another item or
    /// attribute, or sealed with another key. Never answered as data.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A data key that is not in the key store (never made, or erased).
    #[error("no data key for {0}")]
    NoDataKey(String),
    /// The cryptographic library refused an operation.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
}

impl From<ProtectError> for ward_store::StoreError {
    fn from(error: ProtectError) -> Self {
        match error {
            ProtectError::Store(error) => error,
            error => ward_store::StoreError::Internal(error.to_string()),
        }
    }
}

/// The source of the key-encryption keys: the master key file here, a KMS key in the AWS
/// shape. A data key is wrapped under the current version and unwrapped under the
/// version it names.
#[async_trait::async_trait]
pub trait KeyEncryptionKeys: Send + Sync + 'static {
    /// The version new data keys are wrapped under.
    fn current_version(&self) -> u32;
    /// Wraps `data_key` for `provider` under the current version, bound to `aad`.
    async fn wrap(
        &self,
        provider: &str,
        data_key: &[u8; 32],
        aad: &[u8],
    ) -> Result<(u32, Vec<u8>), ProtectError>;
    /// Unwraps what [`KeyEncryptionKeys::wrap`] made.
    async fn unwrap(
        &self,
        provider: &str,
        version: u32,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<[u8; 32], ProtectError>;
    /// A keyed pseudonym of `identifier` within `provider` (32 hex digits), the same for
    /// every key version: what the key store names a patient's data key by.
    fn pseudonym(&self, provider: &str, identifier: &str) -> String;
}

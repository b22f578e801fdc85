//! AWS KMS as the AWS shape's key source ([`ward_protect::KeyEncryptionKeys`]).
//!
//! Each provider's key-encryption key of each version is an AWS KMS data key
//! (`GenerateDataKey` under the deployment's KMS key, its encryption context naming the
//! provider and the version). Only its encrypted blob is kept, in the key store (the
//! DynamoDB table of its own beside the records table); its plaintext is kept in memory
//! for a bounded time (`Decrypt` again after that), so an ingest makes about one KMS call
//! per provider per period, not one per patient. Data keys are wrapped and unwrapped by it
//! locally, as the master key file's are. The root of Ward's pseudonyms is one more KMS
//! data key, made once and never rotated.
//!
//! The current version is a counter in the key store; `ward keys rotate` increments it,
//! and every process reads it again when its cached keys expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use ward_protect::{Kek, KeyEncryptionKeys, ProtectError};
use ward_store::{Condition, Item, Key, PK, SK, StoreError, Table, VERSION, Value};

const ROOT_PK: &str = "KMS";
const CURRENT_SK: &str = "CURRENT";
const PSEUDONYM_SK: &str = "PSEUDONYM";
const BLOB: &str = "blob";
/// Cached key-encryption keys at most (a bound on memory; past it the cache starts again).
const CACHE_LIMIT: usize = 10_000;

/// Unwrapped key-encryption keys by provider and version, each with when it was fetched.
type Cached = HashMap<(String, u32), (Instant, Arc<Kek>)>;

/// The key-encryption keys of every provider, from AWS KMS.
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    key_id: String,
    store: Arc<dyn Table>,
    cache_for: Duration,
    current: AtomicU32,
    checked: Mutex<Instant>,
    pseudonym_root: [u8; 32],
    keks: Mutex<Cached>,
    /// One fetch of an uncached key at a time, so a burst of writes makes one KMS call.
    fetching: tokio::sync::Mutex<()>,
    calls: AtomicU64,
}

impl std::fmt::Debug for KmsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeys")
            .field("key_id", &self.key_id)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

fn kms_error(what: &str, error: impl std::error::Error) -> ProtectError {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ProtectError::Store(StoreError::Unavailable(format!(
        "AWS KMS {what}: {message}"
    )))
}

fn kek_key(provider: &str, version: u32) -> Key {
    Key::new(format!("KEK#{provider}"), format!("V#{version:08}"))
}

impl KmsKeys {
    /// The keys under `key_id` (an id, ARN or alias of a symmetric KMS key), their blobs
    /// in `store`; made there on first use if `create` (a new deployment), else an empty
    /// key store is refused. Fails if KMS or the store cannot be reached.
    pub async fn open(
        client: aws_sdk_kms::Client,
        key_id: &str,
        store: Arc<dyn Table>,
        cache_for: Duration,
        create: bool,
    ) -> Result<Self, ProtectError> {
        let mut keys = Self {
            client,
            key_id: key_id.to_owned(),
            store,
            cache_for,
            current: AtomicU32::new(1),
            checked: Mutex::new(Instant::now()),
            pseudonym_root: [0; 32],
            keks: Mutex::default(),
            fetching: tokio::sync::Mutex::default(),
            calls: AtomicU64::new(0),
        };
        let context = [("ward", "pseudonym root")];
        let root_key = Key::new(ROOT_PK, PSEUDONYM_SK);
        let root = match keys.stored_blob(&root_key).await? {
            Some(blob) => keys.decrypt(&blob, &context).await?,
            None if create => keys.stored_or_generated(&root_key, &context).await?,
            None => {
                return Err(ProtectError::NoDataKey(
                    "the pseudonym root (the key store is empty: is it the one the records \
                     table was written with?)"
                        .into(),
                ));
            }
        };
        keys.pseudonym_root = root;
        let current = keys.read_current().await?;
        keys.current.store(current, Ordering::Relaxed);
        Ok(keys)
    }

    /// The secret that keys Ward's pseudonyms (never changes when keys rotate).
    pub fn pseudonym_secret(&self) -> [u8; 32] {
        ward_protect::kek::pseudonym_secret(&self.pseudonym_root)
    }

    /// KMS calls made so far (`GenerateDataKey` and `Decrypt`).
    pub fn kms_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Makes the next version current (new data keys are wrapped under it; the older ones
    /// still unwrap); returns it. Other processes see it when their cache expires.
    pub async fn rotate(&self) -> Result<u32, ProtectError> {
        loop {
            let stored = self.stored_current().await?;
            let version = stored.unwrap_or(1);
            let mut item = Item::new();
            item.insert(PK.into(), Value::s(ROOT_PK));
            item.insert(SK.into(), Value::s(CURRENT_SK));
            item.insert(VERSION.into(), Value::n(version + 1));
            let condition = if stored.is_some() {
                Condition::VersionIs(version)
            } else {
                Condition::NotExists
            };
            match self.store.put(item, condition).await {
                Ok(()) => {
                    let next = u32::try_from(version + 1)
                        .map_err(|_| ProtectError::Crypto("key version overflow"))?;
                    self.current.store(next, Ordering::Relaxed);
                    return Ok(next);
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The current version as the key store records it (none before the first rotation).
    async fn stored_current(&self) -> Result<Option<i64>, ProtectError> {
        let stored = self.store.get(&Key::new(ROOT_PK, CURRENT_SK)).await?;
        Ok(stored
            .as_ref()
            .and_then(|item| item.get(VERSION))
            .and_then(Value::as_i64))
    }

    async fn read_current(&self) -> Result<u32, ProtectError> {
        Ok(self
            .stored_current()
            .await?
            .and_then(|version| u32::try_from(version).ok())
            .filter(|version| *version > 0)
            .unwrap_or(1))
    }

    /// The plaintext of the KMS data key stored at `key`, made (and stored, unless another
    /// process stored one first) if there is none yet.
    async fn stored_or_generated(
        &self,
        key: &Key,
        context: &[(&str, &str)],
    ) -> Result<[u8; 32], ProtectError> {
        if let Some(blob) = self.stored_blob(key).await? {
            return self.decrypt(&blob, context).await;
        }
        let mut request = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256);
        for (name, value) in context {
            request = request.encryption_context(*name, *value);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let made = request
            .send()
            .await
            .map_err(|error| kms_error("GenerateDataKey", error))?;
        let (Some(plaintext), Some(blob)) = (made.plaintext(), made.ciphertext_blob()) else {
            return Err(ProtectError::Crypto(
                "GenerateDataKey answered without a key",
            ));
        };
        let mut item = Item::new();
        item.insert(PK.into(), Value::s(&key.pk));
        item.insert(SK.into(), Value::s(&key.sk));
        item.insert(BLOB.into(), Value::B(blob.as_ref().to_vec()));
        match self.store.put(item, Condition::NotExists).await {
            Ok(()) => plaintext
                .as_ref()
                .try_into()
                .map_err(|_| ProtectError::Crypto("a KMS data key is not 32 bytes")),
            // Another process made it first: use theirs, so every process agrees.
            Err(StoreError::ConditionFailed { .. }) => {
                let blob = self.stored_blob(key).await?.ok_or_else(|| {
                    ProtectError::NoDataKey(format!("{} {} (vanished)", key.pk, key.sk))
                })?;
                self.decrypt(&blob, context).await
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn stored_blob(&self, key: &Key) -> Result<Option<Vec<u8>>, ProtectError> {
        let Some(item) = self.store.get(key).await? else {
            return Ok(None);
        };
        match item.get(BLOB) {
            Some(Value::B(blob)) => Ok(Some(blob.clone())),
            _ => Err(ProtectError::Integrity(format!(
                "the key store's record {} {} holds no key blob",
                key.pk, key.sk
            ))),
        }
    }

    async fn decrypt(
        &self,
        blob: &[u8],
        context: &[(&str, &str)],
    ) -> Result<[u8; 32], ProtectError> {
        let mut request = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(blob));
        for (name, value) in context {
            request = request.encryption_context(*name, *value);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let opened = request.send().await.map_err(|error| {
            let service = error
                .as_service_error()
                .map(|e| e.is_invalid_ciphertext_exception());
            if service == Some(true) {
                ProtectError::Integrity(
                    "AWS KMS refused a stored key blob (changed, moved to another provider or \
                     version, or made under another KMS key)"
                        .into(),
                )
            } else {
                kms_error("Decrypt", error)
            }
        })?;
        opened
            .plaintext()
            .and_then(|plaintext| plaintext.as_ref().try_into().ok())
            .ok_or(ProtectError::Crypto(
                "Decrypt answered without a 32-byte key",
            ))
    }

    fn cached(&self, provider: &str, version: u32) -> Option<Arc<Kek>> {
        let keks = self.keks.lock().unwrap_or_else(|e| e.into_inner());
        keks.get(&(provider.to_owned(), version))
            .filter(|(at, _)| at.elapsed() < self.cache_for)
            .map(|(_, kek)| Arc::clone(kek))
    }

    /// `provider`'s key of `version`: cached, or from its blob (made with `create`).
    async fn kek(
        &self,
        provider: &str,
        version: u32,
        create: bool,
    ) -> Result<Arc<Kek>, ProtectError> {
        if let Some(kek) = self.cached(provider, version) {
            return Ok(kek);
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(kek) = self.cached(provider, version) {
            return Ok(kek);
        }
        let key = kek_key(provider, version);
        let version_text = version.to_string();
        let context = [
            ("ward", "key-encryption key"),
            ("provider", provider),
            ("version", version_text.as_str()),
        ];
        let secret = if create {
            self.stored_or_generated(&key, &context).await?
        } else {
            let blob = self
                .stored_blob(&key)
                .await?
                .ok_or(ProtectError::UnknownKeyVersion(version))?;
            self.decrypt(&blob, &context).await?
        };
        let kek = Arc::new(Kek::from_bytes(&secret)?);
        let mut keks = self.keks.lock().unwrap_or_else(|e| e.into_inner());
        if keks.len() >= CACHE_LIMIT {
            keks.retain(|_, (at, _)| at.elapsed() < self.cache_for);
            if keks.len() >= CACHE_LIMIT {
                keks.clear();
            }
        }
        keks.insert(
            (provider.to_owned(), version),
            (Instant::now(), Arc::clone(&kek)),
        );
        Ok(kek)
    }

    /// The current version, read again from the key store once per cache period (another
    /// process may have rotated).
    async fn current_now(&self) -> Result<u32, ProtectError> {
        let due = {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let due = checked.elapsed() >= self.cache_for;
            if due {
                *checked = Instant::now();
            }
            due
        };
        if due {
            let current = self.read_current().await?;
            self.current.fetch_max(current, Ordering::Relaxed);
        }
        Ok(self.current.load(Ordering::Relaxed))
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKeys for KmsKeys {
    fn current_version(&self) -> u32 {
        self.current.load(Ordering::Relaxed)
    }

    async fn wrap(
        &self,
        provider: &str,
        data_key: &[u8; 32],
        aad: &[u8],
    ) -> Result<(u32, Vec<u8>), ProtectError> {
        let version = self.current_now().await?;
        let wrapped = self
            .kek(provider, version, true)
            .await?
            .wrap(data_key, aad)?;
        Ok((version, wrapped))
    }

    async fn unwrap(
        &self,
        provider: &str,
        version: u32,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<[u8; 32], ProtectError> {
        self.kek(provider, version, false)
            .await?
            .unwrap(wrapped, aad)
    }

    fn pseudonym(&self, provider: &str, identifier: &str) -> String {
        ward_protect::kek::pseudonym(&self.pseudonym_root, provider, identifier)
    }
}

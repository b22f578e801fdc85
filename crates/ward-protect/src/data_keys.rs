//! Data keys: one per patient and one per provider, random, wrapped by the provider's
//! key-encryption key, kept in a key store (a table of its own, never the one it
//! protects), and cached unwrapped in memory for a bounded number of scopes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rand::RngCore as _;
use ring::aead::{self, LessSafeKey, UnboundKey};
use ward_store::{Condition, Item, Key, PK, PutOutcome, Query, SK, SkCondition, Table, Value};

use crate::{KeyEncryptionKeys, ProtectError};

/// Unwrapped data keys kept at once; past it the cache starts again (a bound on memory).
const CACHE_LIMIT: usize = 16_384;
const WRAPPED: &str = "wrapped";
const KEK_VERSION: &str = "kekVersion";
const GENERATION: &str = "generation";
const BATCH: usize = ward_store::MAX_BATCH_GET_KEYS;

/// Whose data key seals an attribute: a patient of a provider, or the provider itself (for
/// items of no one patient: audit events, idempotency answers, users).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The provider (empty for the platform's own items).
    pub provider: String,
    /// The patient's identifier within the provider, if the item is a patient's.
    pub patient: Option<String>,
}

impl Scope {
    /// A patient's scope.
    pub fn patient(provider: &str, patient: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            patient: Some(patient.to_owned()),
        }
    }

    /// A provider's own scope.
    pub fn provider(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            patient: None,
        }
    }
}

/// One unwrapped data key.
pub struct DataKey {
    /// Which data key of its scope this is (part of every sealed value's associated data).
    pub generation: u32,
    /// The AES-256-GCM key.
    pub key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The data keys of every scope, in their key store.
pub struct DataKeys {
    store: Arc<dyn Table>,
    keks: Arc<dyn KeyEncryptionKeys>,
    cache: Mutex<HashMap<Scope, Arc<DataKey>>>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys").finish_non_exhaustive()
    }
}

impl DataKeys {
    /// The data keys kept in `store`, wrapped by `keks`.
    pub fn new(store: Arc<dyn Table>, keks: Arc<dyn KeyEncryptionKeys>) -> Self {
        Self {
            store,
            keks,
            cache: Mutex::default(),
        }
    }

    /// The key source.
    pub fn keks(&self) -> &Arc<dyn KeyEncryptionKeys> {
        &self.keks
    }

    /// The key-store key of `scope`'s data key (a pseudonym, never the patient's id).
    fn store_key(&self, scope: &Scope) -> Key {
        let sk = match &scope.patient {
            Some(patient) => format!("PATIENT#{}", self.keks.pseudonym(&scope.provider, patient)),
            None => "PROVIDER".to_owned(),
        };
        Key::new(format!("DEK#{}", scope.provider), sk)
    }

    fn wrap_aad(key: &Key) -> Vec<u8> {
        format!("ward/dek/v1|{}|{}", key.pk, key.sk).into_bytes()
    }

    fn cached(&self, scope: &Scope) -> Option<Arc<DataKey>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(scope)
            .cloned()
    }

    fn remember(&self, scope: Scope, key: Arc<DataKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(scope, key);
    }

    /// Forgets the cached key of `scope` (after it is erased).
    pub fn forget(&self, scope: &Scope) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(scope);
    }

    /// The raw data key a key-store item holds, with its generation and wrapping version.
    async fn unwrap_raw(
        &self,
        provider: &str,
        item: &Item,
    ) -> Result<([u8; 32], u32, u32), ProtectError> {
        let broken = || ProtectError::Integrity("a data key in the key store is malformed".into());
        let Some(Value::B(wrapped)) = item.get(WRAPPED) else {
            return Err(broken());
        };
        let number = |name: &str| {
            item.get(name)
                .and_then(Value::as_i64)
                .and_then(|number| u32::try_from(number).ok())
                .ok_or_else(broken)
        };
        let (version, generation) = (number(KEK_VERSION)?, number(GENERATION)?);
        let key = Key::of(item).map_err(|_| broken())?;
        let raw = self
            .keks
            .unwrap(provider, version, wrapped, &Self::wrap_aad(&key))
            .await?;
        Ok((raw, generation, version))
    }

    async fn unwrap_item(&self, scope: &Scope, item: &Item) -> Result<Arc<DataKey>, ProtectError> {
        let (raw, generation, _) = self.unwrap_raw(&scope.provider, item).await?;
        Self::bind(&raw, generation)
    }

    fn bind(raw: &[u8; 32], generation: u32) -> Result<Arc<DataKey>, ProtectError> {
        let key = UnboundKey::new(&aead::AES_256_GCM, raw)
            .map_err(|_| ProtectError::Crypto("data key"))?;
        Ok(Arc::new(DataKey {
            generation,
            key: LessSafeKey::new(key),
        }))
    }

    /// The data key of `scope` for a read: [`ProtectError::NoDataKey`] if it has none.
    pub async fn for_read(&self, scope: &Scope) -> Result<Arc<DataKey>, ProtectError> {
        if let Some(key) = self.cached(scope) {
            return Ok(key);
        }
        let item = self
            .store
            .get(&self.store_key(scope))
            .await?
            .ok_or_else(|| ProtectError::NoDataKey(describe(scope)))?;
        let key = self.unwrap_item(scope, &item).await?;
        self.remember(scope.clone(), Arc::clone(&key));
        Ok(key)
    }

    /// The data keys of `scopes` for writes, made (and stored durably) where missing.
    pub async fn for_write(
        &self,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Result<HashMap<Scope, Arc<DataKey>>, ProtectError> {
        let mut found = HashMap::new();
        let mut missing: Vec<Scope> = Vec::new();
        let mut seen = HashSet::new();
        for scope in scopes {
            if !seen.insert(scope.clone()) {
                continue;
            }
            match self.cached(&scope) {
                Some(key) => {
                    found.insert(scope, key);
                }
                None => missing.push(scope),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let by_key: HashMap<Key, &Scope> = missing
            .iter()
            .map(|scope| (self.store_key(scope), scope))
            .collect();
        let keys: Vec<Key> = by_key.keys().cloned().collect();
        for chunk in keys.chunks(BATCH) {
            for item in &self.store.batch_get(chunk.to_vec()).await? {
                let Some(scope) = Key::of(item).ok().and_then(|key| by_key.get(&key)) else {
                    continue;
                };
                let key = self.unwrap_item(scope, item).await?;
                self.remember((*scope).clone(), Arc::clone(&key));
                found.insert((*scope).clone(), key);
            }
        }
        self.make(&by_key, &mut found).await?;
        Ok(found)
    }

    /// Makes the data keys of the scopes in `by_key` that `found` lacks: one key-store
    /// write for all of them, made durable before any of them seals a value.
    async fn make(
        &self,
        by_key: &HashMap<Key, &Scope>,
        found: &mut HashMap<Scope, Arc<DataKey>>,
    ) -> Result<(), ProtectError> {
        let mut new_items = Vec::new();
        let mut made = Vec::new();
        for (key, scope) in by_key {
            if found.contains_key(*scope) {
                continue;
            }
            let mut raw = [0u8; 32];
            rand::rng().fill_bytes(&mut raw);
            let (version, wrapped) = self
                .keks
                .wrap(&scope.provider, &raw, &Self::wrap_aad(key))
                .await?;
            let mut item = Item::new();
            item.insert(PK.into(), Value::s(key.pk.clone()));
            item.insert(SK.into(), Value::s(key.sk.clone()));
            item.insert(WRAPPED.into(), Value::B(wrapped));
            item.insert(KEK_VERSION.into(), Value::n(i64::from(version)));
            item.insert(GENERATION.into(), Value::n(1));
            new_items.push(item);
            made.push((*scope, Self::bind(&raw, 1)?));
        }
        if new_items.is_empty() {
            return Ok(());
        }
        let outcomes = self.store.put_many_if_absent(new_items).await?;
        // The keys must be durable before anything sealed with them is: one durable write
        // after the batch (the port lets a batch skip its sync until the next write).
        self.sync().await?;
        for ((scope, mine), outcome) in made.into_iter().zip(outcomes) {
            let key = match outcome {
                PutOutcome::Written => mine,
                // Another writer made this scope's key first: use theirs.
                PutOutcome::Exists(existing) => self.unwrap_item(scope, &existing).await?,
            };
            self.remember(scope.clone(), Arc::clone(&key));
            found.insert(scope.clone(), key);
        }
        Ok(())
    }

    /// How many of `provider`'s data keys are wrapped under each key version.
    pub async fn versions(&self, provider: &str) -> Result<BTreeMap<u32, u64>, ProtectError> {
        let mut counts = BTreeMap::new();
        self.each(provider, |item| {
            let version = item
                .get(KEK_VERSION)
                .and_then(Value::as_i64)
                .and_then(|version| u32::try_from(version).ok())
                .unwrap_or(0);
            *counts.entry(version).or_insert(0) += 1;
        })
        .await?;
        Ok(counts)
    }

    /// Wraps every data key of `provider` that an older version wraps under the current
    /// one (the keys themselves, and so every sealed value, stay as they are); calls
    /// `progress` after each. Safe to interrupt and run again.
    pub async fn rewrap(
        &self,
        provider: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, ProtectError> {
        let current = i64::from(self.keks.current_version());
        let mut stale = Vec::new();
        self.each(provider, |item| {
            if item.get(KEK_VERSION).and_then(Value::as_i64) != Some(current) {
                stale.push(item.clone());
            }
        })
        .await?;
        let mut done = 0;
        for mut item in stale {
            let (raw, _, _) = self.unwrap_raw(provider, &item).await?;
            let key = Key::of(&item).map_err(ProtectError::Store)?;
            let (version, wrapped) = self
                .keks
                .wrap(provider, &raw, &Self::wrap_aad(&key))
                .await?;
            item.insert(WRAPPED.into(), Value::B(wrapped));
            item.insert(KEK_VERSION.into(), Value::n(i64::from(version)));
            match self.store.put(item, Condition::Exists).await {
                // Erased meanwhile: nothing to re-wrap.
                Ok(()) | Err(ward_store::StoreError::ConditionFailed { .. }) => {}
                Err(error) => return Err(error.into()),
            }
            done += 1;
            progress(done);
        }
        Ok(done)
    }

    async fn each(&self, provider: &str, mut visit: impl FnMut(&Item)) -> Result<(), ProtectError> {
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query(Query {
                    cursor,
                    limit: 1000,
                    ..Query::partition(format!("DEK#{provider}"), SkCondition::Any)
                })
                .await?;
            page.items.iter().for_each(&mut visit);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn sync(&self) -> Result<(), ProtectError> {
        let mut item = Item::new();
        item.insert(PK.into(), Value::s("KEYSTORE"));
        item.insert(SK.into(), Value::s("SYNC"));
        self.store.put(item, Condition::None).await?;
        Ok(())
    }
}

/// A scope as an error may name it (never the patient's identifier).
fn describe(scope: &Scope) -> String {
    match scope.patient {
        Some(_) => format!("a patient of provider {}", scope.provider),
        None => format!("provider {}", scope.provider),
    }
}

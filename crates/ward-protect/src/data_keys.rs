//! Data keys: random AES-256-GCM keys, each wrapped by its provider's key-encryption key
//! and kept in a key store (a table of its own, never the one it protects), named by a
//! time-ordered id that every value sealed with it carries. Unwrapped keys are cached for
//! a bounded number of ids.
//!
//! New keys are made ahead, in pools written durably in one key-store write each (the
//! ingest makes one per new patient, and one durable write per batch of patients was half
//! its time), and as many as a caller says it will need ([`DataKeys::reserve`]): a key is
//! durable before it seals anything, and one left unused (a crash, a need that did not
//! come) is never referenced.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::RngCore as _;
use ring::aead::{self, LessSafeKey, UnboundKey};
use ward_store::{Condition, Item, Key, PK, PutOutcome, Query, SK, SkCondition, Table, Value};

use crate::{KeyEncryptionKeys, ProtectError};

/// Unwrapped data keys kept at once; past it the cache starts again (a bound on memory).
const CACHE_LIMIT: usize = 16_384;
/// The largest pool made at once (keys a crash can leave unused, per provider).
const POOL_LIMIT: usize = 2048;
/// The smallest pool made at once.
const POOL_START: usize = 16;
/// The most keys of one provider made ahead of a known need ([`DataKeys::reserve`]) and
/// ready at once: 40 bytes each (a key is expanded only when given out), about 10 MiB.
const RESERVE_LIMIT: usize = 262_144;
/// Keys made ahead of a known need per key-store write (and sync).
const RESERVE_CHUNK: usize = 8_192;
/// Pools made again at most when their ids meet another writer's.
const MAKE_ATTEMPTS: usize = 5;
const WRAPPED: &str = "wrapped";
const KEK_VERSION: &str = "kekVersion";

/// Whose data key seals an item: a patient's (its partition's), a provider's (every other
/// partition of the provider), or the platform's. `home` is the partition where the
/// protected table records which key that is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The provider whose key-encryption key wraps the data key (empty for the platform).
    pub provider: String,
    /// The partition that records the scope's data key.
    pub home: String,
}

impl Scope {
    /// The scope of `provider` recorded in partition `home`.
    pub fn new(provider: &str, home: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            home: home.to_owned(),
        }
    }
}

/// One unwrapped data key.
pub struct DataKey {
    /// The key's id in the key store (part of every sealed value and its associated data).
    pub id: u64,
    /// The AES-256-GCM key.
    pub key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A data key made and durable in the key store, not yet given out (nor expanded).
struct Unused {
    id: u64,
    raw: [u8; 32],
}

#[derive(Default)]
struct Pool {
    /// Oldest ids first, handed out in that order.
    ready: VecDeque<Unused>,
    last_size: usize,
    /// A pool is being made ahead ([`DataKeys::make_ahead`]).
    making: bool,
}

impl Pool {
    /// Adds `made` (newer ids than any here) to be handed out after the keys already here.
    fn add(&mut self, made: Vec<Unused>) {
        self.ready.extend(made);
    }

    fn next_size(&self, at_least: usize) -> usize {
        (self.last_size * 2)
            .clamp(POOL_START, POOL_LIMIT)
            .max(at_least)
    }
}

/// The data keys of every provider, in their key store.
pub struct DataKeys {
    store: Arc<dyn Table>,
    keks: Arc<dyn KeyEncryptionKeys>,
    cache: Mutex<HashMap<(String, u64), Arc<DataKey>>>,
    pools: tokio::sync::Mutex<HashMap<String, Pool>>,
    last_id: AtomicU64,
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
            pools: tokio::sync::Mutex::default(),
            last_id: AtomicU64::new(0),
        }
    }

    /// The key source.
    pub fn keks(&self) -> &Arc<dyn KeyEncryptionKeys> {
        &self.keks
    }

    fn store_key(provider: &str, id: u64) -> Key {
        Key::new(format!("DEK#{provider}"), format!("KEY#{id:016x}"))
    }

    fn wrap_aad(key: &Key) -> Vec<u8> {
        format!("ward/dek/v2|{}|{}", key.pk, key.sk).into_bytes()
    }

    /// A new id: microseconds since the epoch, times 1,024, plus a count, never below the
    /// last one handed out (so ids grow and the key store appends).
    fn next_id(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_micros() as u64)
            .unwrap_or(0)
            << 10;
        let mut last = self.last_id.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .last_id
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    fn cached(&self, provider: &str, id: u64) -> Option<Arc<DataKey>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(provider.to_owned(), id))
            .cloned()
    }

    fn remember(&self, provider: &str, key: Arc<DataKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert((provider.to_owned(), key.id), key);
    }

    /// Forgets the cached key `id` of `provider` (after it is destroyed).
    pub fn forget(&self, provider: &str, id: u64) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(provider.to_owned(), id));
    }

    /// The raw data key a key-store item holds, with its wrapping version.
    async fn unwrap_raw(
        &self,
        provider: &str,
        item: &Item,
    ) -> Result<([u8; 32], u32), ProtectError> {
        let broken = || ProtectError::Integrity("a data key in the key store is malformed".into());
        let Some(Value::B(wrapped)) = item.get(WRAPPED) else {
            return Err(broken());
        };
        let version = item
            .get(KEK_VERSION)
            .and_then(Value::as_i64)
            .and_then(|number| u32::try_from(number).ok())
            .ok_or_else(broken)?;
        let key = Key::of(item).map_err(|_| broken())?;
        let raw = self
            .keks
            .unwrap(provider, version, wrapped, &Self::wrap_aad(&key))
            .await?;
        Ok((raw, version))
    }

    fn bind(raw: &[u8; 32], id: u64) -> Result<Arc<DataKey>, ProtectError> {
        let key = UnboundKey::new(&aead::AES_256_GCM, raw)
            .map_err(|_| ProtectError::Crypto("data key"))?;
        Ok(Arc::new(DataKey {
            id,
            key: LessSafeKey::new(key),
        }))
    }

    /// Data key `id` of `provider`: [`ProtectError::NoDataKey`] if the key store has none
    /// (never made, or destroyed).
    pub async fn by_id(&self, provider: &str, id: u64) -> Result<Arc<DataKey>, ProtectError> {
        if let Some(key) = self.cached(provider, id) {
            return Ok(key);
        }
        let item = self
            .store
            .get(&Self::store_key(provider, id))
            .await?
            .ok_or_else(|| ProtectError::NoDataKey(describe(provider)))?;
        let (raw, _) = self.unwrap_raw(provider, &item).await?;
        let key = Self::bind(&raw, id)?;
        self.remember(provider, Arc::clone(&key));
        Ok(key)
    }

    /// `count` new data keys of `provider`, each already durable in the key store and
    /// given out once.
    pub async fn fresh(
        &self,
        provider: &str,
        count: usize,
    ) -> Result<Vec<Arc<DataKey>>, ProtectError> {
        let given: Vec<Unused> = {
            let mut pools = self.pools.lock().await;
            let pool = pools.entry(provider.to_owned()).or_default();
            if pool.ready.len() < count {
                let size = pool.next_size(count - pool.ready.len());
                let made = self.make(provider, size).await?;
                pool.last_size = size;
                pool.add(made);
            }
            pool.ready.drain(..count).collect()
        };
        // Not remembered by id: the writer keeps what it seals with, and a read of what it
        // sealed finds the key in the store (an ingest gives out a key per patient, each a
        // cache insert that only churned the cache).
        given
            .iter()
            .map(|unused| Self::bind(&unused.raw, unused.id))
            .collect()
    }

    /// Makes up to `count` more keys of `provider` now, ahead of a need the caller knows
    /// of (that many new scopes are soon to be sealed: [`Table::expect_writes`]), so that
    /// the writes take theirs without waiting; at most [`RESERVE_LIMIT`] ready at once.
    /// The pool is not locked meanwhile. Keys made and never needed stay unused (as a
    /// crash can leave them): they are never recorded and seal nothing.
    ///
    /// [`Table::expect_writes`]: ward_store::Table::expect_writes
    pub async fn reserve(&self, provider: &str, count: usize) -> Result<(), ProtectError> {
        let ready = {
            let pools = self.pools.lock().await;
            pools.get(provider).map_or(0, |pool| pool.ready.len())
        };
        let mut left = count.min(RESERVE_LIMIT.saturating_sub(ready));
        while left > 0 {
            let size = left.min(RESERVE_CHUNK);
            let made = self.make(provider, size).await?;
            self.pools
                .lock()
                .await
                .entry(provider.to_owned())
                .or_default()
                .add(made);
            left -= size;
        }
        Ok(())
    }

    /// How many keys of `provider` are made and not yet given out.
    pub async fn ready(&self, provider: &str) -> usize {
        let pools = self.pools.lock().await;
        pools.get(provider).map_or(0, |pool| pool.ready.len())
    }

    /// Makes the next pool of `provider`'s keys ahead of need, if its pool is down to less
    /// than half the last one made and no other call is making one: called beside a write,
    /// so that the writes that follow take their keys without waiting for the key store.
    /// (The pool is not locked meanwhile; a write that runs out first makes its own.)
    pub async fn make_ahead(&self, provider: &str) -> Result<(), ProtectError> {
        let size = {
            let mut pools = self.pools.lock().await;
            let Some(pool) = pools.get_mut(provider) else {
                return Ok(());
            };
            if pool.making || pool.ready.len() * 2 >= pool.last_size {
                return Ok(());
            }
            pool.making = true;
            pool.next_size(0)
        };
        let made = self.make(provider, size).await;
        let mut pools = self.pools.lock().await;
        let pool = pools.entry(provider.to_owned()).or_default();
        pool.making = false;
        let made = made?;
        pool.last_size = size;
        pool.add(made);
        Ok(())
    }

    /// Makes `count` data keys of `provider`: one key-store write for all of them, made
    /// durable before any of them is given out. Processes that share a key store (the AWS
    /// shape's workers and API) can pick the same ids in the same microseconds: the write
    /// is put-if-absent, and a pool that met another's ids is made again past them (what
    /// it did write stays unused, like a pool a crash leaves).
    async fn make(&self, provider: &str, count: usize) -> Result<Vec<Unused>, ProtectError> {
        for _ in 0..MAKE_ATTEMPTS {
            let mut items = Vec::with_capacity(count);
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                let id = self.next_id();
                let mut raw = [0u8; 32];
                rand::rng().fill_bytes(&mut raw);
                let store_key = Self::store_key(provider, id);
                let (version, wrapped) = self
                    .keks
                    .wrap(provider, &raw, &Self::wrap_aad(&store_key))
                    .await?;
                let mut item = Item::new();
                item.insert(PK.into(), Value::s(store_key.pk));
                item.insert(SK.into(), Value::s(store_key.sk));
                item.insert(WRAPPED.into(), Value::B(wrapped));
                item.insert(KEK_VERSION.into(), Value::n(i64::from(version)));
                items.push(item);
                keys.push(Unused { id, raw });
            }
            let outcomes = self.store.put_many_if_absent(items).await?;
            // The keys must be durable before anything sealed with them is: one durable
            // write after the batch (the port lets a batch skip its sync until the next).
            self.sync().await?;
            if !outcomes
                .iter()
                .any(|outcome| matches!(outcome, PutOutcome::Exists(_)))
            {
                return Ok(keys);
            }
            // Past the other writer's ids, by a random stride so two retries part ways.
            let stride = 1 + (rand::rng().next_u64() % (1 << 20));
            self.last_id
                .fetch_add(stride + count as u64, Ordering::Relaxed);
        }
        Err(ProtectError::Integrity(format!(
            "{MAKE_ATTEMPTS} pools of new data keys in a row met ids another writer had taken \
             in the key store"
        )))
    }

    /// Hands out ids after `id` from now on (a test's way to make two writers meet).
    #[doc(hidden)]
    pub fn continue_ids_after(&self, id: u64) {
        self.last_id.store(id, Ordering::Relaxed);
    }

    /// Destroys data key `id` of `provider` (durably): what it sealed can never be read
    /// again, from this store or any copy of the data.
    pub async fn destroy(&self, provider: &str, id: u64) -> Result<(), ProtectError> {
        self.destroy_many(provider, &[id]).await
    }

    /// Destroys data keys `ids` of `provider`, made durable together. A key already gone
    /// is no error (an interrupted erasure runs again).
    pub async fn destroy_many(&self, provider: &str, ids: &[u64]) -> Result<(), ProtectError> {
        for &id in ids {
            self.store
                .delete(&Self::store_key(provider, id), Condition::None)
                .await?;
            self.forget(provider, id);
        }
        self.sync().await
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
            let (raw, _) = self.unwrap_raw(provider, &item).await?;
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

/// A data key as an error may name it (never whose it is).
fn describe(provider: &str) -> String {
    if provider.is_empty() {
        "the platform (the key store holds no such key: never made, or erased)".into()
    } else {
        format!("provider {provider} (the key store holds no such key: never made, or erased)")
    }
}

//! [`ProtectedTable`]: the table port with its protected attributes sealed at rest.

use std::sync::Arc;

use async_trait::async_trait;
use ward_store::{
    Condition, Item, Key, PK, Page, PutOutcome, Query, SK, StoreError, Table, Value, WriteOp,
};

use crate::data_keys::{DataKey, DataKeys, Scope};
use crate::{ProtectError, envelope};

/// What the composition root says about its schemas: which attribute names hold patient
/// data, and whose data key an item (by its partition key) is sealed with.
pub struct Protection {
    /// Sorted: a binary search of a dozen names is cheaper than hashing each attribute
    /// name of each item on the ingest path.
    attributes: Vec<&'static str>,
    scope: Box<dyn Fn(&str) -> Scope + Send + Sync>,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

impl Protection {
    /// Protects `attributes` (in every item that has them), with the data key that
    /// `scope` names for an item's partition key.
    pub fn new(
        attributes: impl IntoIterator<Item = &'static str>,
        scope: impl Fn(&str) -> Scope + Send + Sync + 'static,
    ) -> Self {
        let mut attributes: Vec<&'static str> = attributes.into_iter().collect();
        attributes.sort_unstable();
        attributes.dedup();
        Self {
            attributes,
            scope: Box::new(scope),
        }
    }

    /// Whether attribute `name` is sealed.
    pub fn protects(&self, name: &str) -> bool {
        self.attributes.binary_search(&name).is_ok()
    }

    fn needs_key(&self, item: &Item) -> bool {
        item.iter()
            .any(|(name, value)| !matches!(value, Value::Null) && self.protects(name))
    }
}

/// A table whose protected attributes are stored sealed: written through it, they are
/// sealed with their scope's data key; read through it, they are opened, and one that does
/// not open (changed, moved, plaintext where ciphertext belongs, its key gone) fails the
/// read with an integrity error rather than answering garbage. Keys, index keys, versions
/// and expiry stay as they are, so every contract of the port holds unchanged.
pub struct ProtectedTable {
    inner: Arc<dyn Table>,
    keys: Arc<DataKeys>,
    protection: Arc<Protection>,
}

impl std::fmt::Debug for ProtectedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedTable")
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

fn item_key(item: &Item) -> Option<(&str, &str)> {
    Some((item.get(PK)?.as_s()?, item.get(SK)?.as_s()?))
}

impl ProtectedTable {
    /// `inner` with `protection`'s attributes sealed by `keys`.
    pub fn new(inner: Arc<dyn Table>, keys: Arc<DataKeys>, protection: Protection) -> Self {
        Self {
            inner,
            keys,
            protection: Arc::new(protection),
        }
    }

    /// The data keys.
    pub fn keys(&self) -> &Arc<DataKeys> {
        &self.keys
    }

    fn scope_of(&self, item: &Item) -> Option<Scope> {
        item_key(item).map(|(pk, _)| (self.protection.scope)(pk))
    }

    fn seal_with(&self, item: &mut Item, key: &DataKey) -> Result<(), ProtectError> {
        let Some((pk, sk)) = item_key(item) else {
            return Ok(());
        };
        let mut aad = envelope::ItemAad::new(pk, sk);
        for (name, value) in item.iter_mut() {
            if matches!(value, Value::Null) || !self.protection.protects(name) {
                continue;
            }
            *value = envelope::seal_in(&key.key, key.generation, &mut aad, name, value)?;
        }
        Ok(())
    }

    async fn seal_items(&self, mut items: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        // Ingest batches come in key order: consecutive items of one partition share its
        // scope, which is worked out once.
        let mut scopes: Vec<Scope> = Vec::new();
        let mut of_item: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut last_pk: Option<&str> = None;
        for item in &items {
            if !self.protection.needs_key(item) {
                of_item.push(None);
                continue;
            }
            let Some((pk, _)) = item_key(item) else {
                of_item.push(None);
                continue;
            };
            if last_pk != Some(pk) {
                scopes.push((self.protection.scope)(pk));
                last_pk = Some(pk);
            }
            of_item.push(Some(scopes.len() - 1));
        }
        let keys = self.keys.for_write(scopes.iter().cloned()).await?;
        for (item, scope) in items.iter_mut().zip(&of_item) {
            if let Some(scope) = scope {
                self.seal_with(item, &keys[&scopes[*scope]])?;
            }
        }
        Ok(items)
    }

    async fn seal_one(&self, item: Item) -> Result<Item, StoreError> {
        let mut sealed = self.seal_items(vec![item]).await?;
        Ok(sealed.pop().expect("one item in, one out"))
    }

    async fn open_item(&self, mut item: Item) -> Result<Item, StoreError> {
        if !self.protection.needs_key(&item) {
            return Ok(item);
        }
        let Some(scope) = self.scope_of(&item) else {
            return Ok(item);
        };
        let key = self.keys.for_read(&scope).await?;
        let Some((pk, sk)) = item_key(&item) else {
            return Ok(item);
        };
        let mut aad = envelope::ItemAad::new(pk, sk);
        for (name, value) in item.iter_mut() {
            if matches!(value, Value::Null) || !self.protection.protects(name) {
                continue;
            }
            let Value::B(sealed) = value else {
                return Err(ProtectError::Integrity(format!(
                    "attribute `{name}` holds plaintext where Ward keeps ciphertext"
                ))
                .into());
            };
            if envelope::generation(sealed) != Some(key.generation) {
                return Err(ProtectError::Integrity(format!(
                    "attribute `{name}` was sealed with another data key"
                ))
                .into());
            }
            *value = envelope::open_in(&key.key, &mut aad, name, sealed)?;
        }
        Ok(item)
    }

    async fn open_items(&self, items: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut opened = Vec::with_capacity(items.len());
        for item in items {
            opened.push(self.open_item(item).await?);
        }
        Ok(opened)
    }

    async fn open_failure(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::ConditionFailed {
                existing: Some(existing),
            } => match self.open_item(*existing).await {
                Ok(existing) => StoreError::ConditionFailed {
                    existing: Some(Box::new(existing)),
                },
                Err(error) => error,
            },
            error => error,
        }
    }
}

#[async_trait]
impl Table for ProtectedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        match self.inner.get(key).await? {
            Some(item) => Ok(Some(self.open_item(item).await?)),
            None => Ok(None),
        }
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        let item = self.seal_one(item).await?;
        match self.inner.put(item, condition).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.open_failure(error).await),
        }
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        match self.inner.delete(key, condition).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.open_failure(error).await),
        }
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let page = self.inner.query(query).await?;
        Ok(Page {
            items: self.open_items(page.items).await?,
            ..page
        })
    }

    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError> {
        let items = self.inner.batch_get(keys).await?;
        self.open_items(items).await
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let mut ops = ops;
        let mut puts = Vec::new();
        let mut at = Vec::new();
        for (index, op) in ops.iter_mut().enumerate() {
            if let WriteOp::Put { item, .. } = op {
                puts.push(std::mem::take(item));
                at.push(index);
            }
        }
        let mut sealed = self.seal_items(puts).await?.into_iter();
        for index in at {
            if let WriteOp::Put { item, .. } = &mut ops[index] {
                *item = sealed.next().expect("one sealed item per put");
            }
        }
        self.inner.transact_write(ops).await
    }

    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError> {
        let items = self.seal_items(items).await?;
        let outcomes = self.inner.put_many_if_absent(items).await?;
        let mut opened = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            opened.push(match outcome {
                PutOutcome::Exists(existing) => PutOutcome::Exists(self.open_item(existing).await?),
                PutOutcome::Written => PutOutcome::Written,
            });
        }
        Ok(opened)
    }

    fn prefers_key_order(&self) -> bool {
        self.inner.prefers_key_order()
    }
}

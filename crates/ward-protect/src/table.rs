//! [`ProtectedTable`]: the table port with its protected attributes sealed at rest.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ward_store::{
    Condition, Item, Key, PK, Page, PutOutcome, Query, SK, StoreError, Table, Value, WriteOp,
};

use crate::data_keys::{DataKey, DataKeys, Scope};
use crate::{ProtectError, envelope};

/// What the composition root says about its schemas: which attribute names hold patient
/// data, and whose data key an item (by its partition key) is sealed with.
pub struct Protection {
    /// Sorted and deduplicated.
    attributes: Vec<&'static str>,
    /// The same names by their length: an item's attribute name is compared only with
    /// the few protected names of its length (the ingest asks for every attribute of
    /// every item; a binary search of the whole list was 5% of a sealed load's samples).
    by_len: Vec<Vec<&'static str>>,
    /// What names each field in a sealed value.
    codes: envelope::FieldCodes,
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
        let longest = attributes.iter().map(|name| name.len()).max().unwrap_or(0);
        let mut by_len = vec![Vec::new(); longest + 1];
        for name in &attributes {
            by_len[name.len()].push(*name);
        }
        Self {
            attributes,
            by_len,
            codes: envelope::FieldCodes::default(),
            scope: Box::new(scope),
        }
    }

    /// The same protection, its sealed values naming their fields by `codes` (a field
    /// without a code is named in full).
    pub fn with_codes(mut self, codes: envelope::FieldCodes) -> Self {
        self.codes = codes;
        self
    }

    /// Whether attribute `name` is sealed.
    pub fn protects(&self, name: &str) -> bool {
        self.by_len
            .get(name.len())
            .is_some_and(|names| names.contains(&name))
    }

    fn needs_key(&self, item: &Item) -> bool {
        item.contains_key(PREPARED_ATTRIBUTE)
            || item
                .iter()
                .any(|(name, value)| !matches!(value, Value::Null) && self.protects(name))
    }
}

/// The sort key of the item, in a scope's home partition, that records which data key the
/// scope's new values are sealed with. It starts with `#`, which no identifier can hold,
/// so it names no item of any schema; reads through the protected table never return it.
pub const DATA_KEY_SK: &str = "#DATAKEY";
/// The attribute that holds an item's protected attributes, sealed together (`#` cannot
/// start any schema's attribute name).
pub const SEALED_ATTRIBUTE: &str = "#sealed";
const KEY_ID: &str = "keyId";
/// The attribute that carries an item's protected values, encoded for sealing, from
/// [`Table::prepare`] to the write that seals them (plaintext in memory: never stored).
const PREPARED_ATTRIBUTE: &str = "#prepared";

/// A table whose protected attributes are stored sealed: written through it, they are
/// sealed with their scope's data key; read through it, they are opened, and one that does
/// not open (changed, moved, plaintext where ciphertext belongs, its key gone) fails the
/// read with an integrity error rather than answering garbage. Keys, index keys, versions
/// and expiry stay as they are, so every contract of the port holds unchanged.
///
/// Each sealed value names its data key by id; a scope's home partition records the key
/// its values are sealed with (the [`DATA_KEY_SK`] item), written in the same batch as the
/// first values it seals on the ingest path.
pub struct ProtectedTable {
    inner: Arc<dyn Table>,
    keys: Arc<DataKeys>,
    protection: Arc<Protection>,
    current: Mutex<HashMap<Scope, Arc<DataKey>>>,
    /// Homes (by hash) of scopes found without a recorded key ahead of their writes
    /// ([`Table::expect_writes`]): their first write does not look again. (Another writer
    /// that records one meanwhile, or a hash shared with a recorded home, is met as any
    /// two writers of one new scope are: the first record wins.)
    unrecorded: Mutex<HashSet<u64>>,
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

fn is_reference(item: &Item) -> bool {
    item.get(SK).and_then(Value::as_s) == Some(DATA_KEY_SK)
}

/// What sealing one item after another reuses: the taken-out fields, the associated data.
struct Scratch {
    fields: Vec<(ward_store::Name, Value)>,
    aad: envelope::ItemAad,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            fields: Vec::with_capacity(16),
            aad: envelope::ItemAad::new("", ""),
        }
    }
}

/// The data key of each of a write's scopes (by its index in them), and the records of
/// those newly given a key (with their scope's index).
struct ForWrite {
    keys: Vec<Arc<DataKey>>,
    references: Vec<(usize, Item)>,
}

impl ProtectedTable {
    /// `inner` with `protection`'s attributes sealed by `keys`.
    pub fn new(inner: Arc<dyn Table>, keys: Arc<DataKeys>, protection: Protection) -> Self {
        Self {
            inner,
            keys,
            protection: Arc::new(protection),
            current: Mutex::default(),
            unrecorded: Mutex::default(),
        }
    }

    /// The data keys.
    pub fn keys(&self) -> &Arc<DataKeys> {
        &self.keys
    }

    fn scope_of(&self, pk: &str) -> Scope {
        (self.protection.scope)(pk)
    }

    fn set_current(&self, scope: &Scope, key: &Arc<DataKey>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() >= CURRENT_LIMIT {
            current.clear();
        }
        current.insert(scope.clone(), Arc::clone(key));
    }

    /// The data key each of `scopes` (distinct) seals with: the one its home records, or a
    /// fresh one (whose record the caller writes).
    async fn for_write(&self, scopes: &[Scope]) -> Result<ForWrite, StoreError> {
        let mut keys: Vec<Option<Arc<DataKey>>> = {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            scopes
                .iter()
                .map(|scope| current.get(scope).cloned())
                .collect()
        };
        let mut missing: Vec<usize> = (0..scopes.len()).filter(|&i| keys[i].is_none()).collect();
        let mut references = Vec::new();
        if !missing.is_empty() {
            // Those found unrecorded ahead are not looked up again.
            let mut unrecorded = Vec::new();
            {
                let mut known = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
                if !known.is_empty() {
                    missing.retain(|&i| {
                        let found = known.remove(&home_hash(&scopes[i].home));
                        if found {
                            unrecorded.push(i);
                        }
                        !found
                    });
                }
            }
            let mut recorded: HashMap<String, u64> = HashMap::with_capacity(missing.len());
            for chunk in missing.chunks(ward_store::MAX_BATCH_GET_KEYS) {
                let wanted = chunk
                    .iter()
                    .map(|&i| Key::new(scopes[i].home.clone(), DATA_KEY_SK))
                    .collect();
                for item in self.inner.batch_get(wanted).await? {
                    if let (Some(home), Some(id)) = (
                        item.get(PK).and_then(Value::as_s),
                        item.get(KEY_ID).and_then(Value::as_s).and_then(parse_id),
                    ) {
                        recorded.insert(home.to_owned(), id);
                    }
                }
            }
            // Those without a record get fresh keys, by provider (a write has one, mostly).
            let mut fresh_of: Vec<(&str, Vec<usize>)> = Vec::new();
            missing.extend(unrecorded);
            for &i in &missing {
                let scope = &scopes[i];
                match recorded.get(&scope.home) {
                    Some(&id) => {
                        let key = self.keys.by_id(&scope.provider, id).await?;
                        self.set_current(scope, &key);
                        keys[i] = Some(key);
                    }
                    None => match fresh_of.iter_mut().find(|(p, _)| *p == scope.provider) {
                        Some((_, wanting)) => wanting.push(i),
                        None => fresh_of.push((&scope.provider, vec![i])),
                    },
                }
            }
            for (provider, wanting) in fresh_of {
                let fresh = self.keys.fresh(provider, wanting.len()).await?;
                for (i, key) in wanting.into_iter().zip(fresh) {
                    let mut reference = Item::new();
                    reference.insert(PK.into(), Value::s(scopes[i].home.clone()));
                    reference.insert(SK.into(), Value::s(DATA_KEY_SK));
                    reference.insert(KEY_ID.into(), Value::s(format!("{:016x}", key.id)));
                    references.push((i, reference));
                    keys[i] = Some(key);
                }
            }
        }
        let keys = keys
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or(ProtectError::Crypto("a scope without its data key"))?;
        Ok(ForWrite { keys, references })
    }

    /// Takes the outcomes of writing the records of scopes `referenced` (put if absent, in
    /// that order): where another writer
    /// recorded a key first, its key is the scope's from now on (what was sealed with this
    /// one stays readable: every sealed value names its key).
    async fn settle(
        &self,
        scopes: &[Scope],
        referenced: &[usize],
        outcomes: Vec<PutOutcome>,
        keys: &mut [Arc<DataKey>],
    ) -> Result<(), StoreError> {
        for (i, outcome) in referenced.iter().zip(outcomes) {
            let scope = &scopes[*i];
            if let PutOutcome::Exists(existing) = outcome
                && let Some(id) = existing
                    .get(KEY_ID)
                    .and_then(Value::as_s)
                    .and_then(parse_id)
            {
                keys[*i] = self.keys.by_id(&scope.provider, id).await?;
            }
            self.set_current(scope, &keys[*i]);
        }
        Ok(())
    }

    /// Takes `item`'s protected values out (keys, index keys, versions and expiry are never
    /// protected, so the item key stays), in one pass.
    fn take_protected(&self, item: &mut Item, fields: &mut Vec<(ward_store::Name, Value)>) {
        let protection = &self.protection;
        fields.clear();
        fields.extend(item.extract_if(.., |name, value| {
            !matches!(value, Value::Null) && protection.protects(name)
        }));
    }

    /// `item`'s protected values taken out and encoded for sealing (`None`: it has none);
    /// `fields` is room reused from one item to the next.
    fn prepare_fields_of(
        &self,
        item: &mut Item,
        fields: &mut Vec<(ward_store::Name, Value)>,
    ) -> Option<envelope::Prepared> {
        self.take_protected(item, fields);
        if fields.is_empty() {
            return None;
        }
        let prepared = envelope::prepare_fields(
            fields.iter().map(|(name, value)| (name.as_ref(), value)),
            &self.protection.codes,
        );
        fields.clear();
        Some(prepared)
    }

    /// The fields `item` was prepared with ([`Table::prepare`]), taken out; an item changed
    /// since (an attribute added) is checked in full again.
    fn take_prepared(
        &self,
        item: &mut Item,
        scratch: &mut Scratch,
    ) -> Result<Option<envelope::Prepared>, ProtectError> {
        let prepared = match item.remove(PREPARED_ATTRIBUTE) {
            None => return Ok(None),
            Some(Value::B(bytes)) => envelope::Prepared::from_bytes(bytes),
            Some(_) => None,
        }
        .ok_or(ProtectError::Crypto(
            "an item's prepared fields are malformed",
        ))?;
        if prepared.noted() != item.len() as u64 + 1 {
            self.take_protected(item, &mut scratch.fields);
            if !scratch.fields.is_empty() {
                return Err(ProtectError::Crypto(
                    "an item prepared for sealing was given protected attributes after",
                ));
            }
        }
        Ok(Some(prepared))
    }

    fn seal_with(
        &self,
        item: &mut Item,
        key: &DataKey,
        scratch: &mut Scratch,
    ) -> Result<(), ProtectError> {
        if item_key(item).is_none() {
            return Ok(());
        }
        let prepared = match self.take_prepared(item, scratch)? {
            Some(prepared) => prepared,
            None => match self.prepare_fields_of(item, &mut scratch.fields) {
                Some(prepared) => prepared,
                None => return Ok(()),
            },
        };
        let (pk, sk) = item_key(item).ok_or(ProtectError::Crypto(
            "an item key attribute is listed as protected",
        ))?;
        scratch.aad.reset(pk, sk);
        let sealed = envelope::seal_prepared(
            &key.key,
            key.id,
            &mut scratch.aad,
            SEALED_ATTRIBUTE,
            prepared,
        )?;
        item.insert(SEALED_ATTRIBUTE.into(), sealed);
        Ok(())
    }

    /// The distinct scopes of the items that need a data key, and each item's (by index).
    /// Ingest batches come in key order: consecutive items of one partition share its
    /// scope, worked out once, and an item of a partition that already needs its key is
    /// given it without looking for protected attributes (sealing finds none in one that
    /// has none, and seals nothing).
    fn scopes(&self, items: &[Item]) -> (Vec<Scope>, Vec<Option<usize>>) {
        let mut scopes: Vec<Scope> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut of_item: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut last: Option<(&str, usize)> = None;
        for item in items {
            let scope = match (item_key(item), last) {
                (Some((pk, _)), Some((last_pk, index))) if last_pk == pk => Some(index),
                (Some((pk, _)), _) if self.protection.needs_key(item) => {
                    let scope = self.scope_of(pk);
                    let index = *index_of.entry(scope.home.clone()).or_insert_with(|| {
                        scopes.push(scope);
                        scopes.len() - 1
                    });
                    last = Some((pk, index));
                    Some(index)
                }
                _ => None,
            };
            of_item.push(scope);
        }
        (scopes, of_item)
    }

    fn seal_all(
        &self,
        items: &mut [Item],
        of_item: &[Option<usize>],
        keys: &[Arc<DataKey>],
    ) -> Result<(), StoreError> {
        let mut scratch = Scratch::default();
        for (item, scope) in items.iter_mut().zip(of_item) {
            if let Some(scope) = scope {
                self.seal_with(item, &keys[*scope], &mut scratch)?;
            }
        }
        Ok(())
    }

    /// Seals `items`, the records of newly keyed scopes written first (for the single
    /// writes and transactions: one small batch, then the write itself).
    async fn seal_items(&self, mut items: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let (scopes, of_item) = self.scopes(&items);
        if scopes.is_empty() {
            return Ok(items);
        }
        let ForWrite {
            mut keys,
            references,
        } = self.for_write(&scopes).await?;
        if !references.is_empty() {
            let (referenced, records): (Vec<usize>, Vec<Item>) = references.into_iter().unzip();
            let outcomes = self.inner.put_many_if_absent(records).await?;
            self.settle(&scopes, &referenced, outcomes, &mut keys)
                .await?;
        }
        self.seal_all(&mut items, &of_item, &keys)?;
        Ok(items)
    }

    async fn seal_one(&self, item: Item) -> Result<Item, StoreError> {
        let mut sealed = self.seal_items(vec![item]).await?;
        Ok(sealed.pop().expect("one item in, one out"))
    }

    /// Makes the next pool of data keys of each provider of `scopes` whose pool runs low.
    /// A failure is left to the write that next takes a key (it makes its own, and says).
    async fn make_keys_ahead(&self, scopes: &[Scope]) {
        let mut providers: Vec<&str> = scopes.iter().map(|s| s.provider.as_str()).collect();
        providers.sort_unstable();
        providers.dedup();
        for provider in providers {
            let _ = self.keys.make_ahead(provider).await;
        }
    }

    async fn open_item(&self, mut item: Item) -> Result<Item, StoreError> {
        if let Some((name, _)) = item
            .iter()
            .find(|(name, value)| !matches!(value, Value::Null) && self.protection.protects(name))
        {
            return Err(ProtectError::Integrity(format!(
                "attribute `{name}` holds plaintext outside the item's sealed value"
            ))
            .into());
        }
        if !item.contains_key(SEALED_ATTRIBUTE) {
            return Ok(item);
        }
        let Some((pk, sk)) = item_key(&item) else {
            return Ok(item);
        };
        let provider = self.scope_of(pk).provider;
        let mut aad = envelope::ItemAad::new(pk, sk);
        let broken = |why: &str| -> StoreError {
            ProtectError::Integrity(format!("attribute `{SEALED_ATTRIBUTE}` {why}")).into()
        };
        let Some(Value::B(sealed)) = item.get(SEALED_ATTRIBUTE) else {
            return Err(broken("is not sealed data"));
        };
        let Some(id) = envelope::key_id(sealed) else {
            return Err(broken("is not sealed data"));
        };
        let key = match self.keys.by_id(&provider, id).await {
            Err(ProtectError::NoDataKey(_)) => {
                return Err(broken(
                    "names a data key the key store does not hold (erased, or the value was \
                     changed)",
                ));
            }
            found => found?,
        };
        let Value::M(fields) = envelope::open_fields_in(
            &key.key,
            &mut aad,
            SEALED_ATTRIBUTE,
            sealed,
            &self.protection.codes,
        )?
        else {
            return Err(broken("holds an unreadable value"));
        };
        item.remove(SEALED_ATTRIBUTE);
        for (name, value) in fields {
            if !self.protection.protects(&name) {
                return Err(broken("holds an attribute Ward does not seal"));
            }
            item.insert(name.into(), value);
        }
        Ok(item)
    }

    async fn open_items(&self, items: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut opened = Vec::with_capacity(items.len());
        for item in items {
            if is_reference(&item) {
                continue;
            }
            opened.push(self.open_item(item).await?);
        }
        Ok(opened)
    }

    /// The ids of the data keys partition `pk` names: its record's and every sealed
    /// value's (a race between two writers can leave more than one).
    async fn key_ids(&self, pk: &str) -> Result<Vec<u64>, StoreError> {
        let mut ids = std::collections::BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .query(Query {
                    cursor,
                    limit: 1000,
                    ..Query::partition(pk, ward_store::SkCondition::Any)
                })
                .await?;
            for item in &page.items {
                let id = if is_reference(item) {
                    item.get(KEY_ID).and_then(Value::as_s).and_then(parse_id)
                } else {
                    match item.get(SEALED_ATTRIBUTE) {
                        Some(Value::B(sealed)) => envelope::key_id(sealed),
                        _ => None,
                    }
                };
                ids.extend(id);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(ids.into_iter().collect()),
            }
        }
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

/// Scopes whose current data key is kept at once (a bound on memory).
const CURRENT_LIMIT: usize = 16_384;

fn parse_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

#[async_trait]
impl Table for ProtectedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        if key.sk == DATA_KEY_SK {
            return Ok(None);
        }
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
        // The ingest path: the records of newly keyed scopes go in the same batch as the
        // values they seal (one write, not two).
        let mut items = items;
        let (scopes, of_item) = self.scopes(&items);
        let ForWrite {
            mut keys,
            references,
        } = self.for_write(&scopes).await?;
        self.seal_all(&mut items, &of_item, &keys)?;
        let count = items.len();
        let (referenced, records): (Vec<usize>, Vec<Item>) = references.into_iter().unzip();
        items.extend(records);
        // Beside the write, the next keys are made if the pool runs low: the batches that
        // follow then take theirs without waiting for the key store.
        let (outcomes, ()) = tokio::join!(
            self.inner.put_many_if_absent(items),
            self.make_keys_ahead(&scopes)
        );
        let mut outcomes = outcomes?;
        let settled = outcomes.split_off(count);
        self.settle(&scopes, &referenced, settled, &mut keys)
            .await?;
        let mut opened = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            opened.push(match outcome {
                PutOutcome::Exists(existing) => PutOutcome::Exists(self.open_item(existing).await?),
                PutOutcome::Written => PutOutcome::Written,
            });
        }
        Ok(opened)
    }

    async fn erase_partition(&self, pk: &str) -> Result<u64, StoreError> {
        // The keys go first: once they are, no copy of the items can be read, even if
        // the deletes that follow are interrupted (and run again).
        let scope = self.scope_of(pk);
        if scope.home == pk {
            let ids = self.key_ids(pk).await?;
            self.keys.destroy_many(&scope.provider, &ids).await?;
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&scope);
        }
        ward_store::delete_partition(&*self.inner, pk).await
    }

    fn prefers_key_order(&self) -> bool {
        self.inner.prefers_key_order()
    }

    /// Encodes the item's protected values for sealing (all of sealing but the cipher,
    /// which needs the data key the write finds).
    fn prepare(&self, item: &mut Item) {
        if item_key(item).is_none() || item.contains_key(PREPARED_ATTRIBUTE) {
            return;
        }
        let Some(prepared) = self.prepare_fields_of(item, &mut Vec::new()) else {
            return;
        };
        let count = item.len() as u64 + 1;
        item.insert(
            PREPARED_ATTRIBUTE.into(),
            Value::B(prepared.noting(count).into_bytes()),
        );
    }

    /// Finds which of the scopes of `partitions` have no key recorded yet and makes that
    /// many data keys of their providers now ([`DataKeys::reserve`]), so that the writes
    /// that follow take theirs without looking or waiting. A failure is left to those
    /// writes (they look and make their own, and say).
    async fn expect_writes(&self, partitions: Vec<String>) {
        let mut seen = HashSet::new();
        let scopes: Vec<Scope> = {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            partitions
                .iter()
                .map(|pk| self.scope_of(pk))
                .filter(|scope| !current.contains_key(scope) && seen.insert(scope.home.clone()))
                .collect()
        };
        let mut unrecorded: Vec<&Scope> = Vec::new();
        for chunk in scopes.chunks(ward_store::MAX_BATCH_GET_KEYS) {
            let wanted = chunk
                .iter()
                .map(|scope| Key::new(scope.home.clone(), DATA_KEY_SK))
                .collect();
            let Ok(found) = self.inner.batch_get(wanted).await else {
                return;
            };
            let recorded: HashSet<&str> = found
                .iter()
                .filter_map(|item| item.get(PK).and_then(Value::as_s))
                .collect();
            unrecorded.extend(
                chunk
                    .iter()
                    .filter(|scope| !recorded.contains(scope.home.as_str())),
            );
        }
        {
            let mut known = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
            if known.len() + unrecorded.len() > UNRECORDED_LIMIT {
                known.clear();
            }
            known.extend(unrecorded.iter().map(|scope| home_hash(&scope.home)));
        }
        let mut count_of: Vec<(&str, usize)> = Vec::new();
        for scope in unrecorded {
            match count_of.iter_mut().find(|(p, _)| *p == scope.provider) {
                Some((_, count)) => *count += 1,
                None => count_of.push((&scope.provider, 1)),
            }
        }
        for (provider, count) in count_of {
            let _ = self.keys.reserve(provider, count).await;
        }
    }
}

/// Scopes remembered as found unrecorded ahead of their writes, at most.
const UNRECORDED_LIMIT: usize = 262_144;

fn home_hash(home: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    home.hash(&mut hasher);
    hasher.finish()
}

//! The table port on redb: one ACID file on disk, copy-on-write B-trees, crash-safe
//! commits (a committed write survives `kill -9`).
//!
//! Owns: mapping the port's items, keys, conditions, queries and indexes onto redb
//! tables. Deliberately does not: know Ward's key layout or any domain type.
//!
//! Why redb (see `docs/benchmarks.md` and `ARCHITECTURE.md`): pure Rust (no C/C++ build on
//! a 2-core machine), one file, ACID with MVCC readers that never block the single
//! writer, and ordered byte keys, which is exactly what a DynamoDB-shaped table needs.
//! Writes run on the blocking pool (a commit waits for fsync); reads run inline (a point
//! read or a page is microseconds).

mod bounds;
mod codec;
mod write;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ward_store::{
    Condition, Cursor, INDEX_KEY_ATTRIBUTES, INDEXES, Item, Key, MAX_BATCH_GET_KEYS,
    MAX_ITEM_BYTES, MAX_TRANSACTION_ITEMS, Order, Page, PutOutcome, Query, StoreError, Table,
    VERSION, Value, WriteOp, item_is_expired,
};

use bounds::{as_slice_bound, bounds_empty, max_lower, min_upper, sort_key_bounds};
pub use codec::AttributeDictionary;
use codec::{check_key_part, decode_item, encode_item, join_parts, split_parts};
use write::{PreparedPut, WriteTables, index_entry};

pub(crate) const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
pub(crate) const INDEX_TABLES: [TableDefinition<&[u8], ()>; 3] = [
    TableDefinition::new("index:GSI1"),
    TableDefinition::new("index:GSI2"),
    TableDefinition::new("index:GSI3"),
];
const MAX_QUERY_LIMIT: usize = 1000;
/// The store's own records: the attribute dictionary it was created with.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const DICTIONARY_KEY: &str = "attribute-dictionary";

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Page cache, in bytes (default 16 MiB): with the ingest batch size, bounds the
    /// memory the store uses (docs/benchmarks.md).
    pub cache_bytes: usize,
    /// The attribute names stored as one byte (default none: every name in full). Fixed
    /// when the file is created; a later open may only extend it.
    pub dictionary: AttributeDictionary,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 16 * 1024 * 1024,
            dictionary: AttributeDictionary::default(),
        }
    }
}

/// The table in one redb file. Cheap to clone; all clones share the database.
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
    dictionary: Arc<AttributeDictionary>,
    /// Ingest batches written so far (every [`DURABLE_EVERY_BATCHES`]th is durable).
    ingest_batches: Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for EmbeddedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTable").finish_non_exhaustive()
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (usually a running `ward serve`) has the file open.
    #[error("the store at {path} is in use by another ward process")]
    InUse {
        /// The database file.
        path: String,
    },
    /// The file was created with another attribute dictionary than the one given.
    #[error(
        "the store at {path} codes its attribute names with another dictionary ({why}); open it with the dictionary it was created with, or one that extends it"
    )]
    Dictionary {
        /// The database file.
        path: String,
        /// How the two differ.
        why: String,
    },
    /// The file could not be created or read.
    #[error("cannot open the store at {path}: {error}")]
    Failed {
        /// The database file.
        path: String,
        /// What redb said.
        error: String,
    },
}

impl EmbeddedTable {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path, options: &EmbeddedOptions) -> Result<Self, OpenError> {
        let path_text = path.display().to_string();
        let db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .map_err(|error| match error {
                redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse {
                    path: path_text.clone(),
                },
                error => OpenError::Failed {
                    path: path_text.clone(),
                    error: error.to_string(),
                },
            })?;
        let failed = |error: redb::Error| OpenError::Failed {
            path: path_text.clone(),
            error: error.to_string(),
        };
        let txn = db.begin_write().map_err(|e| failed(e.into()))?;
        {
            txn.open_table(ITEMS).map_err(|e| failed(e.into()))?;
            for definition in INDEX_TABLES {
                txn.open_table(definition).map_err(|e| failed(e.into()))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| failed(e.into()))?;
            let stored = meta
                .get(DICTIONARY_KEY)
                .map_err(|e| failed(e.into()))?
                .map(|names| names.value().to_owned());
            let given = options.dictionary.names();
            let stored_names: Vec<&str> = stored
                .as_deref()
                .map(|text| text.split('\n').filter(|n| !n.is_empty()).collect())
                .unwrap_or_default();
            if stored.is_some() && !given.starts_with(&stored_names) {
                return Err(OpenError::Dictionary {
                    path: path_text,
                    why: dictionary_difference(&stored_names, given),
                });
            }
            if stored.is_none() || given.len() > stored_names.len() {
                meta.insert(DICTIONARY_KEY, given.join("\n").as_str())
                    .map_err(|e| failed(e.into()))?;
            }
        }
        txn.commit().map_err(|e| failed(e.into()))?;
        Ok(Self {
            db: Arc::new(db),
            dictionary: Arc::new(options.dictionary.clone()),
            ingest_batches: Arc::default(),
        })
    }

    /// Up to `limit` items in key order after `after` (from the first when `None`), as
    /// stored (expired ones too: a scan resumed later sees the same items in the same
    /// order), and the key to go on after when more may follow: a full scan of the store,
    /// for moving a whole store (the migration to encryption at rest), never a request's
    /// path.
    pub fn scan(
        &self,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<Key>), StoreError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let items_table = txn.open_table(ITEMS).map_err(store_error)?;
        let start = after.map(|key| join_parts(&[&key.pk, &key.sk]));
        let lower = match &start {
            Some(bytes) => Bound::Excluded(bytes.as_slice()),
            None => Bound::Unbounded,
        };
        let limit = limit.max(1);
        let mut items = Vec::new();
        let mut last = None;
        for entry in items_table
            .range::<&[u8]>((lower, Bound::Unbounded))
            .map_err(store_error)?
        {
            if items.len() == limit {
                return Ok((items, last));
            }
            let (key_guard, value) = entry.map_err(store_error)?;
            let parts = split_parts(key_guard.value())?;
            let [pk, sk] = parts.as_slice() else {
                return Err(StoreError::Internal("malformed item key".into()));
            };
            last = Some(Key::new(*pk, *sk));
            items.push(decode_item(value.value(), pk, sk, &self.dictionary)?);
        }
        Ok((items, None))
    }

    async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Database, &AttributeDictionary) -> Result<R, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let dictionary = Arc::clone(&self.dictionary);
        tokio::task::spawn_blocking(move || work(&db, &dictionary))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    /// A conditional single-item write: `Some` puts the (encoded) item, `None` deletes.
    async fn write_one(
        &self,
        key: Key,
        condition: Condition,
        replacement: Option<(Vec<u8>, Item)>,
    ) -> Result<(), StoreError> {
        self.write(move |db, dictionary| {
            let txn = db.begin_write().map_err(store_error)?;
            {
                let mut tables = WriteTables::open(&txn, dictionary)?;
                let key_bytes = join_parts(&[&key.pk, &key.sk]);
                let existing =
                    read_live(&tables.items, &key, &key_bytes, now_seconds(), dictionary)?;
                if !condition_holds(&condition, existing.as_ref()) {
                    return Err(StoreError::ConditionFailed {
                        existing: existing.map(Box::new),
                    });
                }
                match &replacement {
                    Some((encoded, item)) => tables.replace(&key, &key_bytes, encoded, item)?,
                    None => tables.remove(&key, &key_bytes)?,
                }
            }
            txn.commit().map_err(store_error)
        })
        .await
    }

    fn query_sync(&self, query: &Query) -> Result<Page, StoreError> {
        if query.limit == 0 || query.limit > MAX_QUERY_LIMIT {
            return Err(invalid(format!("limit must be 1..={MAX_QUERY_LIMIT}")));
        }
        check_key_part(&query.pk)?;
        let index_table = match query.index {
            None => None,
            Some(name) => Some(index_definition(name)?),
        };
        let (mut lower, mut upper) = sort_key_bounds(&query.pk, &query.sk);
        if let Some(cursor) = &query.cursor {
            if cursor.pk != query.pk {
                return Err(invalid("cursor belongs to another partition"));
            }
            let position = match index_table {
                None if cursor.table_key.pk == cursor.pk && cursor.table_key.sk == cursor.sk => {
                    join_parts(&[&cursor.pk, &cursor.sk])
                }
                None => return Err(invalid("cursor belongs to an index query")),
                Some(_) => join_parts(&[
                    &cursor.pk,
                    &cursor.sk,
                    &cursor.table_key.pk,
                    &cursor.table_key.sk,
                ]),
            };
            match query.order {
                Order::Forward => lower = max_lower(lower, Bound::Excluded(position)),
                Order::Reverse => upper = min_upper(upper, Bound::Excluded(position)),
            }
        }
        if bounds_empty(&lower, &upper) {
            return Ok(Page::default());
        }
        let now = now_seconds();
        let txn = self.db.begin_read().map_err(store_error)?;
        let items_table = txn.open_table(ITEMS).map_err(store_error)?;
        let range = (as_slice_bound(&lower), as_slice_bound(&upper));
        let mut page = Page::default();
        let mut last_position: Option<Cursor> = None;
        macro_rules! scan {
            ($iter:expr, $decode:expr) => {{
                for entry in $iter {
                    let (key_guard, _value) = entry.map_err(store_error)?;
                    let key_bytes = key_guard.value();
                    if page.items.len() == query.limit {
                        page.next = last_position.take();
                        break;
                    }
                    let (position, item) = $decode(key_bytes)?;
                    let Some(item) = item else { continue };
                    if !query.sk.matches(&position.sk) || item_is_expired(&item, now) {
                        continue;
                    }
                    page.items.push(item);
                    last_position = Some(position);
                }
            }};
        }
        match index_table {
            None => {
                let decode = |key_bytes: &[u8]| -> Result<(Cursor, Option<Item>), StoreError> {
                    let parts = split_parts(key_bytes)?;
                    let [pk, sk] = parts.as_slice() else {
                        return Err(StoreError::Internal("malformed item key".into()));
                    };
                    let value = items_table.get(key_bytes).map_err(store_error)?;
                    let item = value
                        .map(|v| decode_item(v.value(), pk, sk, &self.dictionary))
                        .transpose()?;
                    let key = Key::new(*pk, *sk);
                    Ok((cursor_of(&key.pk, &key.sk, key.clone()), item))
                };
                let iter = items_table.range::<&[u8]>(range).map_err(store_error)?;
                match query.order {
                    Order::Forward => scan!(iter, decode),
                    Order::Reverse => scan!(iter.rev(), decode),
                }
            }
            Some(definition) => {
                let index = txn.open_table(definition).map_err(store_error)?;
                let decode = |key_bytes: &[u8]| -> Result<(Cursor, Option<Item>), StoreError> {
                    let parts = split_parts(key_bytes)?;
                    let [index_pk, index_sk, pk, sk] = parts.as_slice() else {
                        return Err(StoreError::Internal("malformed index key".into()));
                    };
                    let item_key = join_parts(&[pk, sk]);
                    let value = items_table.get(item_key.as_slice()).map_err(store_error)?;
                    let item = value
                        .map(|v| decode_item(v.value(), pk, sk, &self.dictionary))
                        .transpose()?;
                    Ok((cursor_of(index_pk, index_sk, Key::new(*pk, *sk)), item))
                };
                let iter = index.range::<&[u8]>(range).map_err(store_error)?;
                match query.order {
                    Order::Forward => scan!(iter, decode),
                    Order::Reverse => scan!(iter.rev(), decode),
                }
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        check_key_part(&key.pk)?;
        check_key_part(&key.sk)?;
        let txn = self.db.begin_read().map_err(store_error)?;
        let items = txn.open_table(ITEMS).map_err(store_error)?;
        read_live(
            &items,
            key,
            &join_parts(&[&key.pk, &key.sk]),
            now_seconds(),
            &self.dictionary,
        )
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        let key = checked_key(&item)?;
        let encoded = checked_encoding(&item, &self.dictionary)?;
        self.write_one(key, condition, Some((encoded, item))).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        check_key_part(&key.pk)?;
        check_key_part(&key.sk)?;
        self.write_one(key.clone(), condition, None).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.query_sync(&query)
    }

    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError> {
        if keys.len() > MAX_BATCH_GET_KEYS {
            return Err(invalid(format!(
                "at most {MAX_BATCH_GET_KEYS} keys per batch"
            )));
        }
        let txn = self.db.begin_read().map_err(store_error)?;
        let items = txn.open_table(ITEMS).map_err(store_error)?;
        let now = now_seconds();
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            check_key_part(&key.pk)?;
            check_key_part(&key.sk)?;
            if let Some(item) = read_live(
                &items,
                &key,
                &join_parts(&[&key.pk, &key.sk]),
                now,
                &self.dictionary,
            )? {
                found.push(item);
            }
        }
        Ok(found)
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        if ops.len() > MAX_TRANSACTION_ITEMS {
            return Err(invalid(format!(
                "at most {MAX_TRANSACTION_ITEMS} operations per transaction"
            )));
        }
        let mut prepared = Vec::with_capacity(ops.len());
        let mut seen = std::collections::HashSet::new();
        for op in ops {
            let (key, encoded) = match &op {
                WriteOp::Put { item, .. } => (
                    checked_key(item)?,
                    Some(checked_encoding(item, &self.dictionary)?),
                ),
                WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => {
                    check_key_part(&key.pk)?;
                    check_key_part(&key.sk)?;
                    (key.clone(), None)
                }
            };
            if !seen.insert(key.clone()) {
                return Err(invalid("a transaction may name each key only once"));
            }
            prepared.push((op, key, encoded));
        }
        self.write(move |db, dictionary| {
            let txn = db.begin_write().map_err(store_error)?;
            {
                let mut tables = WriteTables::open(&txn, dictionary)?;
                let now = now_seconds();
                for (index, (op, key, _)) in prepared.iter().enumerate() {
                    let condition = match op {
                        WriteOp::Put { condition, .. }
                        | WriteOp::Delete { condition, .. }
                        | WriteOp::Check { condition, .. } => condition,
                    };
                    let key_bytes = join_parts(&[&key.pk, &key.sk]);
                    let existing = read_live(&tables.items, key, &key_bytes, now, dictionary)?;
                    if !condition_holds(condition, existing.as_ref()) {
                        // Dropping the transaction without commit discards it.
                        return Err(StoreError::TransactionCanceled { index });
                    }
                }
                for (op, key, encoded) in &prepared {
                    let key_bytes = join_parts(&[&key.pk, &key.sk]);
                    match (op, encoded) {
                        (WriteOp::Put { item, .. }, Some(encoded)) => {
                            tables.replace(key, &key_bytes, encoded, item)?;
                        }
                        (WriteOp::Delete { .. }, _) => tables.remove(key, &key_bytes)?,
                        _ => {}
                    }
                }
            }
            txn.commit().map_err(store_error)
        })
        .await
    }

    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut prepared = Vec::with_capacity(items.len());
        for item in items {
            let key = checked_key(&item)?;
            let key_bytes = join_parts(&[&key.pk, &key.sk]);
            let encoded = checked_encoding(&item, &self.dictionary)?;
            // The item itself is dropped here, before the write: only its bytes and index
            // entries go on (a write transaction runs one at a time; this part need not).
            let index_entries = INDEXES.map(|name| index_entry(name, &item, &key));
            prepared.push(PreparedPut {
                key,
                key_bytes,
                encoded,
                index_entries,
            });
        }
        let batch_number = self
            .ingest_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.write(move |db, dictionary| {
            let mut txn = db.begin_write().map_err(store_error)?;
            // Most ingest batches skip the fsync: redb keeps a non-durable commit
            // crash-consistent (a crash rolls back to the last durable commit), and the next
            // ordinary write makes it durable. The port allows this: an interrupted ingest
            // is retried. Every few batches one is durable all the same: until then redb
            // can reuse no page freed since the last durable commit and tracks every page
            // written in memory, so the file and the process would grow with the ingest.
            // Measured at 1M rows (docs/benchmarks.md): every 64th batch durable ingests
            // 1.7x faster than none, with a third of the system time.
            if batch_number % DURABLE_EVERY_BATCHES != DURABLE_EVERY_BATCHES - 1 {
                txn.set_durability(redb::Durability::None)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
            }
            // Key order walks the B-tree once from left to right; the sort is stable, so of
            // two items with one key the earlier one (in the order given) is written.
            let mut order: Vec<usize> = (0..prepared.len()).collect();
            order.sort_by(|a, b| prepared[*a].key_bytes.cmp(&prepared[*b].key_bytes));
            let outcomes = {
                let mut tables = WriteTables::open(&txn, dictionary)?;
                tables.put_sorted_if_absent(&prepared, &order, now_seconds())?
            };
            txn.commit().map_err(store_error)?;
            Ok(outcomes)
        })
        .await
    }

    /// redb is a copy-on-write B-tree: a batch in key order rewrites a leaf per ~10 items,
    /// a batch of spread keys a leaf per item (docs/benchmarks.md).
    fn prefers_key_order(&self) -> bool {
        true
    }
}

/// One ingest batch in this many is committed durably (see `put_many_if_absent`).
const DURABLE_EVERY_BATCHES: u32 = 64;

/// The unexpired item at `key` (`key_bytes` is its encoding).
pub(crate) fn read_live<T>(
    items: &T,
    key: &Key,
    key_bytes: &[u8],
    now: i64,
    dictionary: &AttributeDictionary,
) -> Result<Option<Item>, StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let Some(guard) = items.get(key_bytes).map_err(store_error)? else {
        return Ok(None);
    };
    let item = decode_item(guard.value(), &key.pk, &key.sk, dictionary)?;
    Ok((!item_is_expired(&item, now)).then_some(item))
}

pub(crate) fn condition_holds(condition: &Condition, existing: Option<&Item>) -> bool {
    match condition {
        Condition::None => true,
        Condition::NotExists => existing.is_none(),
        Condition::Exists => existing.is_some(),
        Condition::VersionIs(version) => {
            existing
                .and_then(|item| item.get(VERSION))
                .and_then(Value::as_i64)
                == Some(*version)
        }
    }
}

fn checked_key(item: &Item) -> Result<Key, StoreError> {
    let key = Key::of(item)?;
    check_key_part(&key.pk)?;
    check_key_part(&key.sk)?;
    for (_, pk_attribute, sk_attribute) in INDEX_KEY_ATTRIBUTES {
        for attribute in [pk_attribute, sk_attribute] {
            if let Some(Value::S(part)) = item.get(attribute) {
                check_key_part(part)?;
            }
        }
    }
    Ok(key)
}

fn checked_encoding(item: &Item, dictionary: &AttributeDictionary) -> Result<Vec<u8>, StoreError> {
    let encoded = encode_item(item, dictionary);
    if encoded.len() > MAX_ITEM_BYTES {
        return Err(invalid(format!(
            "item is larger than {MAX_ITEM_BYTES} bytes"
        )));
    }
    Ok(encoded)
}

fn index_definition(name: &str) -> Result<TableDefinition<'static, &'static [u8], ()>, StoreError> {
    INDEXES
        .iter()
        .position(|index| *index == name)
        .map(|position| INDEX_TABLES[position])
        .ok_or_else(|| invalid(format!("no index named {name:?}")))
}

fn cursor_of(pk: &str, sk: &str, table_key: Key) -> Cursor {
    Cursor {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
        table_key,
    }
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::InvalidRequest(message.into())
}

pub(crate) fn store_error(error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::Io(error) => StoreError::Unavailable(format!("storage IO: {error}")),
        error => StoreError::Internal(error.to_string()),
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// Where a given dictionary departs from the stored one.
fn dictionary_difference(stored: &[&str], given: &[&str]) -> String {
    match stored.iter().zip(given).position(|(a, b)| a != b) {
        Some(at) => format!(
            "name {at} is {:?} in the file, {:?} given",
            stored[at], given[at]
        ),
        None => format!(
            "the file codes {} names, {} given",
            stored.len(),
            given.len()
        ),
    }
}

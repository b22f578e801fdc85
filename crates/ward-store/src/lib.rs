//! The table port: one logical table of generic items with DynamoDB semantics.
//!
//! Owns: the item model ([`Value`], [`Item`], [`Key`]), the operations every adapter offers
//! ([`Table`]) with a contract per method, the [`conformance`] suite that proves an
//! adapter keeps those contracts, and [`merge`]: several ordered partitions read as one
//! list with one cursor. Every operation maps 1:1 onto DynamoDB (get, conditional
//! put/delete, query on a partition with a sort-key condition, batch get, transactional
//! write, TTL) so that the DynamoDB adapter is a translation, not a re-design.
//! Deliberately does not: know any key layout (that is `ward-domain`), do IO itself, or
//! offer scans.

mod item;
mod query;

pub mod conformance;
pub mod merge;

use async_trait::async_trait;

pub use item::{Item, Key, Name, Value, item_expires_at, item_is_expired};
pub use query::{Cursor, Order, Page, Query, SkCondition};

/// The partition-key attribute of every item.
pub const PK: &str = "PK";
/// The sort-key attribute of every item.
pub const SK: &str = "SK";
/// The optimistic-concurrency version attribute (a number) checked by
/// [`Condition::VersionIs`].
pub const VERSION: &str = "version";
/// The TTL attribute: seconds since the Unix epoch after which the item is absent.
pub const EXPIRES_AT: &str = "expiresAt";
/// Largest number of operations in one [`Table::transact_write`] (DynamoDB's limit).
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// Largest number of keys in one [`Table::batch_get`] (DynamoDB's limit).
pub const MAX_BATCH_GET_KEYS: usize = 100;
/// Largest encoded item, in bytes (DynamoDB's limit is 400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The secondary indexes of Ward's table. An index named `N` is keyed by the item
/// attributes `{N}PK` and `{N}SK` (both strings); items without them are not in the index
/// (sparse, as in DynamoDB). Indexes project every attribute and are eventually
/// consistent on DynamoDB, immediately consistent in the embedded adapter.
pub const INDEXES: [&str; 3] = ["GSI1", "GSI2", "GSI3"];

/// Each index of [`INDEXES`] with the attribute names that key it.
pub const INDEX_KEY_ATTRIBUTES: [(&str, &str, &str); 3] = [
    ("GSI1", "GSI1PK", "GSI1SK"),
    ("GSI2", "GSI2PK", "GSI2SK"),
    ("GSI3", "GSI3PK", "GSI3SK"),
];

/// The attribute names that key index `name` (`{name}PK`, `{name}SK`), if it is one.
pub fn index_key_attributes(name: &str) -> Option<(&'static str, &'static str)> {
    INDEX_KEY_ATTRIBUTES
        .iter()
        .find(|(index, _, _)| *index == name)
        .map(|(_, pk, sk)| (*pk, *sk))
}

/// A precondition on a single-item write.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Write unconditionally.
    None,
    /// Only if no (unexpired) item has this key.
    NotExists,
    /// Only if an (unexpired) item has this key.
    Exists,
    /// Only if an item has this key and its [`VERSION`] attribute equals this number.
    VersionIs(i64),
}

/// One operation of a [`Table::transact_write`].
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Put an item if the condition holds.
    Put {
        /// The full item, keys included.
        item: Item,
        /// The precondition.
        condition: Condition,
    },
    /// Delete an item if the condition holds (deleting an absent item with
    /// [`Condition::None`] succeeds).
    Delete {
        /// The item's key.
        key: Key,
        /// The precondition.
        condition: Condition,
    },
    /// Check a condition on an item without writing it.
    Check {
        /// The item's key.
        key: Key,
        /// The condition that must hold.
        condition: Condition,
    },
}

/// What happened to one item of [`Table::put_many_if_absent`].
#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    /// The item was written.
    Written,
    /// An item with this key already existed; it is returned unchanged and was kept.
    Exists(Item),
}

/// What can go wrong in a table operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A single-item precondition did not hold; `existing` is the item that made it fail,
    /// if there was one.
    #[error("condition failed")]
    ConditionFailed {
        /// The current item, if any.
        existing: Option<Box<Item>>,
    },
    /// A transaction was cancelled because the condition of operation `index` failed;
    /// nothing was written.
    #[error("transaction cancelled: condition of operation {index} failed")]
    TransactionCanceled {
        /// The position of the first failing operation.
        index: usize,
    },
    /// The request breaks a rule of the port (missing key, too many items, bad cursor,
    /// item too large). Not retryable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A transient fault (throttled, busy, IO hiccup): retry with backoff.
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// A permanent fault in the store itself (corruption, unreadable item).
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// One logical DynamoDB-shaped table. An expired item (its [`EXPIRES_AT`] is in the past)
/// is absent for every operation, conditions included, even before it is removed.
#[async_trait]
pub trait Table: Send + Sync + 'static {
    /// The item with this key, or `None` if there is none (or it expired). Strongly
    /// consistent.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Writes a whole item (replacing any item with its key) if `condition` holds;
    /// otherwise [`StoreError::ConditionFailed`] with the current item, and nothing
    /// changes. The item must have string [`PK`] and [`SK`] attributes.
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError>;

    /// Deletes the item with this key if `condition` holds. Deleting an absent item with
    /// [`Condition::None`] succeeds.
    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError>;

    /// Items of one partition (of the table, or of an index) whose sort key meets the
    /// condition, in sort-key byte order or its reverse, at most `limit` of them, resuming
    /// after `cursor`. `next` is `Some` when more items may follow. A cursor from another
    /// partition or index is refused with [`StoreError::InvalidRequest`].
    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// The items that exist for these keys (at most [`MAX_BATCH_GET_KEYS`]), in no
    /// particular order; missing keys are left out.
    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError>;

    /// All operations or none (at most [`MAX_TRANSACTION_ITEMS`], each key at most once).
    /// If a condition fails: [`StoreError::TransactionCanceled`] naming it.
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Puts each item if no item has its key yet, and says per item what happened, in the
    /// order given. Not atomic as a whole: after an error, some items may be written;
    /// calling again with the same items is safe (the written ones come back as
    /// [`PutOutcome::Exists`]). Its writes are durable no later than the next `put`,
    /// `delete` or `transact_write` returns (an adapter may skip a sync per batch). The
    /// ingest path: the embedded adapter does it in one transaction, the DynamoDB adapter
    /// as concurrent conditional puts.
    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError>;

    /// Removes every item of partition `pk` for good and says how many there were. A
    /// decorator that keeps secrets for the partition alone (the protected table's data
    /// keys of a patient) destroys them first, so that no copy of the items (a backup, a
    /// replica) can be read again. Safe to call again after an interruption.
    async fn erase_partition(&self, pk: &str) -> Result<u64, StoreError> {
        delete_partition(self, pk).await
    }

    /// Whether large writes are much cheaper in key order (`PK`, then `SK`) than in any
    /// order. A B-tree on disk says yes: key order fills one leaf before the next, where
    /// spread keys dirty a page each. DynamoDB says no: spread keys spread the load over
    /// partitions. A hint for the ingest path; it changes no outcome.
    fn prefers_key_order(&self) -> bool {
        false
    }

    /// Does ahead, to an item that is to be written through this table, the part of the
    /// write's work that needs nothing but the item (no I/O, no shared state): a caller
    /// that builds many items on a thread of its own (the ingest's parser) has it done
    /// there, off the writer's path. The item must then be written through this table,
    /// and not changed meanwhile (a changed one is checked again in full). Writes take
    /// prepared and unprepared items alike; it changes no outcome.
    fn prepare(&self, _item: &mut Item) {}

    /// Says that items of `partitions` are soon to be written through this table: a caller
    /// that knows it well ahead (the key-order ingest, while it still sorts the file) lets
    /// the table get ready for them meanwhile (the protected table makes the data keys the
    /// new ones will need). A hint: it changes no outcome, a table may do nothing, and
    /// what it does must be safe to waste.
    async fn expect_writes(&self, _partitions: Vec<String>) {}
}

/// Deletes every item of partition `pk` of `table`, a page at a time from its start (what
/// was deleted is not seen again), each page in one transaction, and says how many.
pub async fn delete_partition<T: Table + ?Sized>(table: &T, pk: &str) -> Result<u64, StoreError> {
    let mut deleted = 0;
    loop {
        let page = table
            .query(Query {
                limit: MAX_TRANSACTION_ITEMS,
                ..Query::partition(pk, SkCondition::Any)
            })
            .await?;
        if page.items.is_empty() {
            return Ok(deleted);
        }
        let ops = page
            .items
            .iter()
            .map(|item| {
                Ok(WriteOp::Delete {
                    key: Key::of(item)?,
                    condition: Condition::None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        deleted += ops.len() as u64;
        table.transact_write(ops).await?;
    }
}

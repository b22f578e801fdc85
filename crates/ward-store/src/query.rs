//! Queries on one partition, and their opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Item, Key, StoreError};

/// A condition on the sort key, compared bytewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkCondition {
    /// Every item of the partition.
    Any,
    /// Sort key equals.
    Eq(String),
    /// Sort key starts with.
    BeginsWith(String),
    /// `low <= sk <= high`.
    Between(String, String),
    /// `sk < value`.
    Lt(String),
    /// `sk <= value`.
    Le(String),
    /// `sk > value`.
    Gt(String),
    /// `sk >= value`.
    Ge(String),
}

impl SkCondition {
    /// Whether a sort key meets the condition.
    pub fn matches(&self, sk: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(value) => sk == value,
            Self::BeginsWith(prefix) => sk.starts_with(prefix.as_str()),
            Self::Between(low, high) => low.as_str() <= sk && sk <= high.as_str(),
            Self::Lt(value) => sk < value.as_str(),
            Self::Le(value) => sk <= value.as_str(),
            Self::Gt(value) => sk > value.as_str(),
            Self::Ge(value) => sk >= value.as_str(),
        }
    }
}

/// Sort-key order of a query's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Ascending byte order.
    #[default]
    Forward,
    /// Descending byte order.
    Reverse,
}

/// A query on one partition of the table or of an index.
#[derive(Debug, Clone)]
pub struct Query {
    /// `None` for the table, or one of [`crate::INDEXES`].
    pub index: Option<&'static str>,
    /// The partition key (of the index, when `index` is set).
    pub pk: String,
    /// The sort-key condition.
    pub sk: SkCondition,
    /// Result order.
    pub order: Order,
    /// At most this many items (1..=1000).
    pub limit: usize,
    /// Resume after the last item of an earlier page.
    pub cursor: Option<Cursor>,
}

impl Query {
    /// A forward query of a table partition, up to 100 items.
    pub fn partition(pk: impl Into<String>, sk: SkCondition) -> Self {
        Self {
            index: None,
            pk: pk.into(),
            sk,
            order: Order::Forward,
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of query results.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The items, in the query's order.
    pub items: Vec<Item>,
    /// Where the next page starts, when more items may follow.
    pub next: Option<Cursor>,
}

/// An opaque continuation token: the position of the last item returned (its index key
/// when querying an index, and its table key). Safe to hand to callers: the table refuses
/// a cursor that does not belong to the query's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The index (or table) partition key of the last item.
    pub pk: String,
    /// The index (or table) sort key of the last item.
    pub sk: String,
    /// The table key of the last item (equal to pk/sk for table queries).
    pub table_key: Key,
}

impl Cursor {
    /// The token text handed to callers.
    pub fn encode(&self) -> String {
        let parts = [
            self.pk.as_str(),
            self.sk.as_str(),
            self.table_key.pk.as_str(),
            self.table_key.sk.as_str(),
        ];
        URL_SAFE_NO_PAD.encode(parts.join("\u{0}"))
    }

    /// Reads a token back; `InvalidRequest` when it is not one.
    pub fn decode(token: &str) -> Result<Self, StoreError> {
        let invalid = || StoreError::InvalidRequest("cursor is not valid".into());
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let parts: Vec<&str> = text.split('\u{0}').collect();
        match parts.as_slice() {
            [pk, sk, table_pk, table_sk] => Ok(Self {
                pk: (*pk).to_owned(),
                sk: (*sk).to_owned(),
                table_key: Key::new(*table_pk, *table_sk),
            }),
            _ => Err(invalid()),
        }
    }
}

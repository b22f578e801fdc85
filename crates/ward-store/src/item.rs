//! The item model: attribute values as DynamoDB has them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::{EXPIRES_AT, PK, SK, StoreError};

/// One attribute value (DynamoDB's S, N, B, BOOL, NULL, L, M).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    S(String),
    /// A number, kept as its decimal text (as DynamoDB does).
    N(String),
    /// Bytes.
    B(Vec<u8>),
    /// A boolean.
    Bool(bool),
    /// Null.
    Null,
    /// A list.
    L(Vec<Value>),
    /// A map.
    M(BTreeMap<String, Value>),
}

impl Value {
    /// A string value.
    pub fn s(text: impl Into<String>) -> Self {
        Self::S(text.into())
    }

    /// A number value from an integer.
    pub fn n(number: i64) -> Self {
        Self::N(number.to_string())
    }

    /// The string, if this is one.
    pub fn as_s(&self) -> Option<&str> {
        match self {
            Self::S(text) => Some(text),
            _ => None,
        }
    }

    /// The number as an integer, if this is an integral number.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::N(text) => text.parse().ok(),
            _ => None,
        }
    }
}

/// An attribute name: borrowed when it is a literal (most are), owned otherwise, so
/// building and dropping the items of an ingest allocates no names.
pub type Name = Cow<'static, str>;

/// An item: attribute name to value. Must hold string [`PK`] and [`SK`] attributes.
pub type Item = BTreeMap<Name, Value>;

/// A primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl Key {
    /// A key from its two parts.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    /// The key of an item, or `InvalidRequest` if it lacks string `PK`/`SK`.
    pub fn of(item: &Item) -> Result<Self, StoreError> {
        match (item.get(PK), item.get(SK)) {
            (Some(Value::S(pk)), Some(Value::S(sk))) if !pk.is_empty() && !sk.is_empty() => {
                Ok(Self::new(pk.clone(), sk.clone()))
            }
            _ => Err(StoreError::InvalidRequest(
                "item needs non-empty string PK and SK attributes".into(),
            )),
        }
    }
}

/// The item's expiry (seconds since the epoch), if it has one.
pub fn item_expires_at(item: &Item) -> Option<i64> {
    item.get(EXPIRES_AT).and_then(Value::as_i64)
}

/// Whether the item has expired at `now_unix_seconds`.
pub fn item_is_expired(item: &Item, now_unix_seconds: i64) -> bool {
    item_expires_at(item).is_some_and(|expires_at| expires_at <= now_unix_seconds)
}

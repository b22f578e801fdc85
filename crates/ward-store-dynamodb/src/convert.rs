//! Translations between the port and DynamoDB: values, keys, cursors, expressions, errors.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ward_store::{
    Condition, Cursor, EXPIRES_AT, Item, Key, PK, SK, SkCondition, StoreError, VERSION, Value,
};

type RawItem = HashMap<String, AttributeValue>;

/// A port item as a DynamoDB item.
pub fn to_item(item: &Item) -> RawItem {
    item.iter()
        .map(|(name, value)| (name.to_string(), to_value(value)))
        .collect()
}

fn to_value(value: &Value) -> AttributeValue {
    match value {
        Value::S(text) => AttributeValue::S(text.clone()),
        Value::N(number) => AttributeValue::N(number.clone()),
        Value::B(bytes) => AttributeValue::B(Blob::new(bytes.clone())),
        Value::Bool(flag) => AttributeValue::Bool(*flag),
        Value::Null => AttributeValue::Null(true),
        Value::L(values) => AttributeValue::L(values.iter().map(to_value).collect()),
        Value::M(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

/// A DynamoDB item as a port item.
pub fn from_item(raw: &RawItem) -> Result<Item, StoreError> {
    raw.iter()
        .map(|(name, value)| Ok((name.clone().into(), from_value(value)?)))
        .collect()
}

fn from_value(value: &AttributeValue) -> Result<Value, StoreError> {
    Ok(match value {
        AttributeValue::S(text) => Value::S(text.clone()),
        AttributeValue::N(number) => Value::N(number.clone()),
        AttributeValue::B(blob) => Value::B(blob.as_ref().to_vec()),
        AttributeValue::Bool(flag) => Value::Bool(*flag),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => {
            Value::L(values.iter().map(from_value).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::M(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_value(v)?)))
                .collect::<Result<BTreeMap<_, _>, StoreError>>()?,
        ),
        other => {
            return Err(StoreError::Internal(format!(
                "unsupported attribute type {other:?}"
            )));
        }
    })
}

/// A table key.
pub fn key(key: &Key) -> RawItem {
    key_attributes(PK, &key.pk, SK, &key.sk)
}

/// Two string key attributes.
pub fn key_attributes(pk_attribute: &str, pk: &str, sk_attribute: &str, sk: &str) -> RawItem {
    HashMap::from([
        (pk_attribute.to_owned(), AttributeValue::S(pk.to_owned())),
        (sk_attribute.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// A `LastEvaluatedKey` as the port's cursor.
pub fn cursor(
    last: &RawItem,
    pk_attribute: &str,
    sk_attribute: &str,
) -> Result<Cursor, StoreError> {
    let text = |name: &str| match last.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(StoreError::Internal(format!(
            "last evaluated key lacks {name}"
        ))),
    };
    Ok(Cursor {
        pk: text(pk_attribute)?,
        sk: text(sk_attribute)?,
        table_key: Key::new(text(PK)?, text(SK)?),
    })
}

/// An expression with its attribute names and values.
#[derive(Debug, Default)]
pub struct Expression {
    pub text: Option<String>,
    pub filter: Option<String>,
    pub names: Option<HashMap<String, String>>,
    pub values: Option<RawItem>,
}

const LIVE: &str = "(attribute_not_exists(#exp) OR #exp > :now)";

impl Expression {
    /// The condition expression of a port condition; an expired item counts as absent.
    pub fn condition(condition: &Condition, now: i64) -> Self {
        let (text, with_version) = match condition {
            Condition::None => return Self::default(),
            Condition::NotExists => ("attribute_not_exists(#pk) OR #exp <= :now".to_owned(), None),
            Condition::Exists => (format!("attribute_exists(#pk) AND {LIVE}"), None),
            Condition::VersionIs(version) => (format!("#ver = :v AND {LIVE}"), Some(*version)),
        };
        let mut names = HashMap::from([("#exp".to_owned(), EXPIRES_AT.to_owned())]);
        let mut values = HashMap::from([(":now".to_owned(), AttributeValue::N(now.to_string()))]);
        match with_version {
            Some(version) => {
                names.insert("#ver".into(), VERSION.into());
                values.insert(":v".into(), AttributeValue::N(version.to_string()));
            }
            None => {
                names.insert("#pk".into(), PK.into());
            }
        }
        Self {
            text: Some(text),
            filter: None,
            names: Some(names),
            values: Some(values),
        }
    }

    /// A condition that always holds (a transaction's `Check` with `Condition::None`).
    pub fn always(_now: i64) -> Self {
        Self {
            text: Some("attribute_exists(#pk) OR attribute_not_exists(#pk)".into()),
            filter: None,
            names: Some(HashMap::from([("#pk".to_owned(), PK.to_owned())])),
            values: None,
        }
    }

    /// A query's key condition, with a filter that drops expired items.
    pub fn key_condition(
        pk_attribute: &str,
        pk: &str,
        sk_attribute: &str,
        condition: &SkCondition,
        now: i64,
    ) -> Self {
        let mut names = HashMap::from([
            ("#k".to_owned(), pk_attribute.to_owned()),
            ("#exp".to_owned(), EXPIRES_AT.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":k".to_owned(), AttributeValue::S(pk.to_owned())),
            (":now".to_owned(), AttributeValue::N(now.to_string())),
        ]);
        let mut text = "#k = :k".to_owned();
        let mut sk = |clause: &str, operands: &[&String]| {
            names.insert("#s".into(), sk_attribute.to_owned());
            for (i, operand) in operands.iter().enumerate() {
                values.insert(format!(":s{i}"), AttributeValue::S((*operand).clone()));
            }
            text.push_str(" AND ");
            text.push_str(clause);
        };
        match condition {
            SkCondition::Any => {}
            SkCondition::Eq(v) => sk("#s = :s0", &[v]),
            SkCondition::BeginsWith(v) => sk("begins_with(#s, :s0)", &[v]),
            SkCondition::Between(low, high) => sk("#s BETWEEN :s0 AND :s1", &[low, high]),
            SkCondition::Lt(v) => sk("#s < :s0", &[v]),
            SkCondition::Le(v) => sk("#s <= :s0", &[v]),
            SkCondition::Gt(v) => sk("#s > :s0", &[v]),
            SkCondition::Ge(v) => sk("#s >= :s0", &[v]),
        }
        Self {
            text: Some(text),
            filter: Some(LIVE.to_owned()),
            names: Some(names),
            values: Some(values),
        }
    }
}

/// Operations whose failed condition can return the existing item.
pub trait ConditionFailure {
    /// `Some(item)` when this is a failed condition (the item, if the server returned one).
    fn failed_item(&self) -> Option<Option<&RawItem>>;
}

impl ConditionFailure for PutItemError {
    fn failed_item(&self) -> Option<Option<&RawItem>> {
        match self {
            Self::ConditionalCheckFailedException(failure) => Some(failure.item()),
            _ => None,
        }
    }
}

impl ConditionFailure for DeleteItemError {
    fn failed_item(&self) -> Option<Option<&RawItem>> {
        match self {
            Self::ConditionalCheckFailedException(failure) => Some(failure.item()),
            _ => None,
        }
    }
}

/// Any SDK error as a port error: throttling, server faults and transport faults are
/// transient; validation errors are the caller's.
pub fn store_error<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let message = service.err().message().unwrap_or("").to_owned();
            match code.as_str() {
                "ValidationException" | "SerializationException" => {
                    StoreError::InvalidRequest(format!("{code}: {message}"))
                }
                "ConditionalCheckFailedException" => StoreError::ConditionFailed { existing: None },
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionInProgressException" => {
                    StoreError::Unavailable(format!("{code}: {message}"))
                }
                _ => StoreError::Internal(format!("{code}: {message}")),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(DisplayErrorContext(&error).to_string())
        }
        _ => StoreError::Internal(DisplayErrorContext(&error).to_string()),
    }
}

/// Whether a transient error's message names DynamoDB throttling.
pub fn is_throttle(message: &str) -> bool {
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ]
    .iter()
    .any(|code| message.starts_with(code))
}

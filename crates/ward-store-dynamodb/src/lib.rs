//! The table port on Amazon DynamoDB: a translation, not a re-design. Every port method is
//! one DynamoDB call (or a few concurrent ones), with the port's rules made explicit:
//! - an expired item (TTL attribute `expiresAt` in the past) is absent for conditions too,
//!   so every condition expression carries the expiry clause and reads filter it out
//!   (DynamoDB deletes expired items only eventually);
//! - conditional writes use `ReturnValuesOnConditionCheckFailure = ALL_OLD`, so a failed
//!   condition returns the existing item without an extra read (duplicate vs conflict);
//! - `put_many_if_absent` runs conditional puts concurrently (BatchWriteItem takes no
//!   conditions), bounded, retrying throttles with jittered backoff.
//!
//! Deliberately does not: create tables in production (CloudFormation owns the table;
//! [`DynamoTable::create_table_if_missing`] is for local servers and tests).

mod adaptive;
mod convert;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TransactWriteItem,
};
use futures::StreamExt;
use ward_store::{
    Condition, INDEX_KEY_ATTRIBUTES, Item, Key, MAX_BATCH_GET_KEYS, MAX_TRANSACTION_ITEMS, Order,
    PK, Page, PutOutcome, Query, SK, StoreError, Table, WriteOp, index_key_attributes,
    item_is_expired,
};

use convert::{ConditionFailure, Expression, from_item, store_error, to_item};

/// Conditional puts in flight at the start (shared by all calls on one table handle).
const PUT_CONCURRENCY: usize = 32;
/// The fewest in flight after throttling.
const MIN_IN_FLIGHT: usize = 4;
/// The most in flight after a long run of successes.
const MAX_IN_FLIGHT: usize = 256;
/// Attempts per throttled write.
const MAX_ATTEMPTS: u32 = 6;
const MAX_QUERY_LIMIT: usize = 1000;

/// The table on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    client: Client,
    table_name: String,
    in_flight: std::sync::Arc<adaptive::AdaptiveLimit>,
}

impl DynamoTable {
    /// A table handle over an existing client.
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table_name: table_name.into(),
            in_flight: std::sync::Arc::new(adaptive::AdaptiveLimit::new(
                PUT_CONCURRENCY,
                MIN_IN_FLIGHT,
                MAX_IN_FLIGHT,
            )),
        }
    }

    /// Up to `limit` items after `after` (from the start when `None`), as stored (expired
    /// ones too), and the key to go on after when more may follow: a full scan of the
    /// table, in DynamoDB's order, for moving a whole table (the migration to encryption
    /// at rest), never a request's path. A scan is not a snapshot: an item there for the
    /// whole scan is returned once; one written during it may or may not be.
    pub async fn scan(
        &self,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<Key>), StoreError> {
        let output = self
            .client
            .scan()
            .table_name(&self.table_name)
            .set_exclusive_start_key(after.map(convert::key))
            .limit(limit.clamp(1, MAX_QUERY_LIMIT) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let items = output
            .items()
            .iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match output.last_evaluated_key() {
            Some(last) => Some(Key::of(&from_item(last)?)?),
            None => None,
        };
        Ok((items, next))
    }

    /// A table on a local DynamoDB-compatible server (DynamoDB Local in the tests and
    /// benchmarks): static dummy credentials, region `us-east-1`.
    pub fn local(endpoint: &str, table_name: impl Into<String>) -> Self {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "ward-local"))
            .build();
        Self::new(Client::from_conf(config), table_name)
    }

    /// Sets how many conditional puts `put_many_if_absent` starts with in flight (default
    /// 32); throttling lowers it (to 4 at least), a run of successes raises it (to 256).
    pub fn with_put_concurrency(mut self, put_concurrency: usize) -> Self {
        self.in_flight = std::sync::Arc::new(adaptive::AdaptiveLimit::new(
            put_concurrency,
            MIN_IN_FLIGHT,
            MAX_IN_FLIGHT,
        ));
        self
    }

    /// How many conditional puts may be in flight now (after throttling adjustments).
    pub fn put_limit(&self) -> usize {
        self.in_flight.limit()
    }

    /// Creates the table with Ward's key schema and indexes (on-demand billing) unless it
    /// exists. For local servers and tests; CloudFormation creates it on AWS.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table_name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute(PK)?)
            .attribute_definitions(string_attribute(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?);
        for (index, pk, sk) in INDEX_KEY_ATTRIBUTES {
            request = request
                .attribute_definitions(string_attribute(pk)?)
                .attribute_definitions(string_attribute(sk)?)
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(index)
                        .key_schema(key(pk, KeyType::Hash)?)
                        .key_schema(key(sk, KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(store_error(error)),
        }
    }

    async fn put_if_absent(&self, item: Item) -> Result<PutOutcome, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = self.in_flight.acquire().await;
            match self.put_once(&item, &Condition::NotExists).await {
                Ok(()) => {
                    self.in_flight.on_success(permit);
                    return Ok(PutOutcome::Written);
                }
                Err(StoreError::ConditionFailed {
                    existing: Some(existing),
                }) => {
                    self.in_flight.on_success(permit);
                    return Ok(PutOutcome::Exists(*existing));
                }
                Err(StoreError::Unavailable(message)) if attempt < MAX_ATTEMPTS => {
                    if convert::is_throttle(&message) {
                        self.in_flight.on_throttle(permit);
                    } else {
                        self.in_flight.release(permit);
                    }
                    backoff(attempt).await;
                }
                Err(error) => {
                    self.in_flight.release(permit);
                    return Err(error);
                }
            }
        }
    }

    async fn put_once(&self, item: &Item, condition: &Condition) -> Result<(), StoreError> {
        let expression = Expression::condition(condition, now_seconds());
        self.client
            .put_item()
            .table_name(&self.table_name)
            .set_item(Some(to_item(item)))
            .set_condition_expression(expression.text)
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .map(|_| ())
            .map_err(condition_error)
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(convert::key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let item = output.item.map(|raw| from_item(&raw)).transpose()?;
        Ok(item.filter(|item| !item_is_expired(item, now_seconds())))
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        Key::of(&item)?;
        self.put_once(&item, &condition).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        let expression = Expression::condition(&condition, now_seconds());
        self.client
            .delete_item()
            .table_name(&self.table_name)
            .set_key(Some(convert::key(key)))
            .set_condition_expression(expression.text)
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .map(|_| ())
            .map_err(condition_error)
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        if query.limit == 0 || query.limit > MAX_QUERY_LIMIT {
            return Err(StoreError::InvalidRequest(format!(
                "limit must be 1..={MAX_QUERY_LIMIT}"
            )));
        }
        let (pk_attribute, sk_attribute) = match query.index {
            None => (PK, SK),
            Some(name) => index_key_attributes(name)
                .ok_or_else(|| StoreError::InvalidRequest(format!("no index named {name:?}")))?,
        };
        let start_key = match &query.cursor {
            None => None,
            Some(cursor) if cursor.pk != query.pk => {
                return Err(StoreError::InvalidRequest(
                    "cursor belongs to another partition".into(),
                ));
            }
            Some(cursor) => {
                let mut start = convert::key(&cursor.table_key);
                if query.index.is_some() {
                    start.extend(convert::key_attributes(
                        pk_attribute,
                        &cursor.pk,
                        sk_attribute,
                        &cursor.sk,
                    ));
                } else if cursor.table_key.pk != cursor.pk || cursor.table_key.sk != cursor.sk {
                    return Err(StoreError::InvalidRequest(
                        "cursor belongs to an index query".into(),
                    ));
                }
                Some(start)
            }
        };
        let expression = Expression::key_condition(
            pk_attribute,
            &query.pk,
            sk_attribute,
            &query.sk,
            now_seconds(),
        );
        let output = self
            .client
            .query()
            .table_name(&self.table_name)
            .set_index_name(query.index.map(str::to_owned))
            .key_condition_expression(expression.text.unwrap_or_default())
            .filter_expression(expression.filter.unwrap_or_default())
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
            .scan_index_forward(query.order == Order::Forward)
            .limit(query.limit as i32)
            .consistent_read(query.index.is_none())
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(store_error)?;
        let items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match output.last_evaluated_key {
            None => None,
            Some(last) => Some(convert::cursor(&last, pk_attribute, sk_attribute)?),
        };
        Ok(Page { items, next })
    }

    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError> {
        if keys.len() > MAX_BATCH_GET_KEYS {
            return Err(StoreError::InvalidRequest(format!(
                "at most {MAX_BATCH_GET_KEYS} keys per batch"
            )));
        }
        let mut unique: Vec<Key> = keys;
        unique.sort();
        unique.dedup();
        let mut found = Vec::new();
        let mut pending: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> =
            unique.iter().map(convert::key).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table_name, request)
                .send()
                .await
                .map_err(store_error)?;
            for raw in output
                .responses
                .unwrap_or_default()
                .remove(&self.table_name)
                .unwrap_or_default()
            {
                found.push(from_item(&raw)?);
            }
            if let Some(mut unprocessed) = output.unprocessed_keys
                && let Some(rest) = unprocessed.remove(&self.table_name)
            {
                pending = rest.keys;
                if !pending.is_empty() {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StoreError::Unavailable("batch get throttled".into()));
                    }
                    backoff(attempt).await;
                }
            }
        }
        let now = now_seconds();
        Ok(found
            .into_iter()
            .filter(|item| !item_is_expired(item, now))
            .collect())
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        if ops.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::InvalidRequest(format!(
                "at most {MAX_TRANSACTION_ITEMS} operations per transaction"
            )));
        }
        let now = now_seconds();
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let (key, condition) = match op {
                WriteOp::Put { item, condition } => (Key::of(item)?, condition),
                WriteOp::Delete { key, condition } | WriteOp::Check { key, condition } => {
                    (key.clone(), condition)
                }
            };
            if !seen.insert(key.clone()) {
                return Err(StoreError::InvalidRequest(
                    "a transaction may name each key only once".into(),
                ));
            }
            let expression = Expression::condition(condition, now);
            let build_error =
                |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
            let item = match op {
                WriteOp::Put { item, .. } => TransactWriteItem::builder().put(
                    Put::builder()
                        .table_name(&self.table_name)
                        .set_item(Some(to_item(item)))
                        .set_condition_expression(expression.text)
                        .set_expression_attribute_names(expression.names)
                        .set_expression_attribute_values(expression.values)
                        .build()
                        .map_err(build_error)?,
                ),
                WriteOp::Delete { .. } => TransactWriteItem::builder().delete(
                    Delete::builder()
                        .table_name(&self.table_name)
                        .set_key(Some(convert::key(&key)))
                        .set_condition_expression(expression.text)
                        .set_expression_attribute_names(expression.names)
                        .set_expression_attribute_values(expression.values)
                        .build()
                        .map_err(build_error)?,
                ),
                WriteOp::Check { .. } => {
                    let always = Expression::always(now);
                    let expression = if expression.text.is_some() {
                        expression
                    } else {
                        always
                    };
                    TransactWriteItem::builder().condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table_name)
                            .set_key(Some(convert::key(&key)))
                            .set_condition_expression(expression.text)
                            .set_expression_attribute_names(expression.names)
                            .set_expression_attribute_values(expression.values)
                            .build()
                            .map_err(build_error)?,
                    )
                }
            };
            items.push(item.build());
        }
        if items.is_empty() {
            return Ok(());
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                if let Some(service) = error.as_service_error()
                    && let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) = service
                {
                    let reasons = cancelled.cancellation_reasons();
                    if let Some(index) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
                        return Err(StoreError::TransactionCanceled { index });
                    }
                    return Err(StoreError::Unavailable(format!("transaction cancelled: {reasons:?}")));
                }
                Err(store_error(error))
            }
        }
    }

    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError> {
        // The first item of each key is written; later ones of the same key see it.
        let mut first_of_key: HashMap<Key, usize> = HashMap::new();
        let mut keys = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let key = Key::of(item)?;
            first_of_key.entry(key.clone()).or_insert(position);
            keys.push(key);
        }
        let firsts: Vec<usize> = (0..items.len())
            .filter(|p| first_of_key[&keys[*p]] == *p)
            .collect();
        let mut puts = Vec::with_capacity(firsts.len());
        for position in &firsts {
            puts.push(self.put_if_absent(items[*position].clone()));
        }
        let results: Vec<Result<PutOutcome, StoreError>> = futures::stream::iter(puts)
            .buffered(MAX_IN_FLIGHT)
            .collect()
            .await;
        let mut outcome_of_first: HashMap<usize, PutOutcome> = HashMap::new();
        for (position, result) in firsts.into_iter().zip(results) {
            outcome_of_first.insert(position, result?);
        }
        Ok((0..items.len())
            .map(|position| {
                let first = first_of_key[&keys[position]];
                match &outcome_of_first[&first] {
                    outcome if first == position => outcome.clone(),
                    PutOutcome::Written => PutOutcome::Exists(items[first].clone()),
                    PutOutcome::Exists(existing) => PutOutcome::Exists(existing.clone()),
                }
            })
            .collect())
    }
}

/// A failed condition becomes `ConditionFailed` with the (unexpired) existing item.
fn condition_error<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ConditionFailure
        + aws_sdk_dynamodb::error::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(service) = error.as_service_error()
        && let Some(raw) = service.failed_item()
    {
        let existing = match raw.map(from_item).transpose() {
            Ok(existing) => existing,
            Err(error) => return error,
        };
        let now = now_seconds();
        let existing = existing.filter(|item| !item_is_expired(item, now));
        return StoreError::ConditionFailed {
            existing: existing.map(Box::new),
        };
    }
    store_error(error)
}

async fn backoff(attempt: u32) {
    let base = 25u64 << attempt.min(8);
    let jitter = rand::random::<u64>() % base.max(1);
    tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

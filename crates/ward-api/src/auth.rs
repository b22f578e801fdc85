//! API keys and the operator key. A provider key is `ward.{providerId}.{keyId}.{secret}`:
//! the provider and key id locate the stored hash (in the provider's own partition), the
//! secret (256 random bits) is compared by SHA-256 hash in constant time. Keys are shown
//! once and stored hashed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ward_domain::ProviderId;
use ward_domain::key_layout;
use ward_store::{Condition, Item, Key, PK, Query, SK, SkCondition, Table, Value, WriteOp};

use crate::AppState;
use crate::problem::ApiError;

/// The authenticated provider of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub ProviderId);

/// An authenticated operator.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

/// A newly created key, to be shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey(pub String);

/// SHA-256 hex of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Creates a provider (fails with `Conflict` if it exists) and its first key.
pub async fn create_provider(
    table: &dyn Table,
    provider: &ProviderId,
    time_zone: Option<&str>,
) -> Result<IssuedKey, ApiError> {
    let mut profile = Item::new();
    profile.insert(PK.into(), Value::s(key_layout::provider_pk(provider)));
    profile.insert(SK.into(), Value::s(key_layout::PROVIDER_SK));
    profile.insert("entity".into(), Value::s("PROVIDER"));
    profile.insert("providerId".into(), Value::s(provider.as_str()));
    if let Some(zone) = time_zone {
        profile.insert("timeZone".into(), Value::s(zone));
    }
    let mut listed = Item::new();
    listed.insert(PK.into(), Value::s(key_layout::PROVIDERS_PK));
    listed.insert(SK.into(), Value::s(key_layout::provider_list_sk(provider)));
    listed.insert("providerId".into(), Value::s(provider.as_str()));
    let (key_item, issued) = new_key_item(provider);
    let result = table
        .transact_write(vec![
            WriteOp::Put {
                item: profile,
                condition: Condition::NotExists,
            },
            WriteOp::Put {
                item: listed,
                condition: Condition::None,
            },
            WriteOp::Put {
                item: key_item,
                condition: Condition::NotExists,
            },
        ])
        .await;
    match result {
        Ok(()) => Ok(issued),
        Err(ward_store::StoreError::TransactionCanceled { .. }) => Err(ApiError::Conflict(
            format!("provider {provider} already exists"),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Issues a new key for an existing provider and revokes all its older keys.
pub async fn rotate_key(table: &dyn Table, provider: &ProviderId) -> Result<IssuedKey, ApiError> {
    let profile = Key::new(key_layout::provider_pk(provider), key_layout::PROVIDER_SK);
    if table.get(&profile).await?.is_none() {
        return Err(ApiError::NotFound("the provider"));
    }
    let old = table
        .query(Query {
            limit: 90,
            ..Query::partition(
                key_layout::provider_pk(provider),
                SkCondition::BeginsWith("APIKEY#".into()),
            )
        })
        .await?;
    let (key_item, issued) = new_key_item(provider);
    let mut ops = vec![WriteOp::Put {
        item: key_item,
        condition: Condition::NotExists,
    }];
    for item in old.items {
        let key = Key::of(&item)?;
        ops.push(WriteOp::Delete {
            key,
            condition: Condition::None,
        });
    }
    table.transact_write(ops).await?;
    Ok(issued)
}

fn new_key_item(provider: &ProviderId) -> (Item, IssuedKey) {
    let key_id = random_hex(6);
    let secret = random_hex(32);
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(key_layout::provider_pk(provider)));
    item.insert(SK.into(), Value::s(key_layout::api_key_sk(&key_id)));
    item.insert("entity".into(), Value::s("APIKEY"));
    item.insert("secretHash".into(), Value::s(hash_secret(&secret)));
    (
        item,
        IssuedKey(format!("ward.{provider}.{key_id}.{secret}")),
    )
}

/// Checks a provider key; `None` if it is not a live key.
pub async fn verify_provider_key(
    table: &dyn Table,
    token: &str,
) -> Result<Option<ProviderId>, ApiError> {
    let mut parts = token.split('.');
    let (Some("ward"), Some(provider), Some(key_id), Some(secret), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Ok(None);
    };
    let Ok(provider) = ProviderId::parse(provider) else {
        return Ok(None);
    };
    if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) || key_id.len() > 32 {
        return Ok(None);
    }
    let key = Key::new(
        key_layout::provider_pk(&provider),
        key_layout::api_key_sk(key_id),
    );
    let Some(item) = table.get(&key).await? else {
        return Ok(None);
    };
    let stored = item
        .get("secretHash")
        .and_then(Value::as_s)
        .unwrap_or_default();
    let given = hash_secret(secret);
    let matches: bool = stored.as_bytes().ct_eq(given.as_bytes()).into();
    Ok(matches.then_some(provider))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| refuse(parts, "missing key"))?;
        match verify_provider_key(state.table.as_ref(), token).await? {
            Some(provider) => Ok(Self(provider)),
            None => Err(refuse(parts, "unknown key")),
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| refuse(parts, "missing operator key"))?;
        let given = hash_secret(token);
        let matches: bool = state
            .operator_key_hash
            .as_bytes()
            .ct_eq(given.as_bytes())
            .into();
        if matches {
            Ok(Self)
        } else {
            Err(refuse(parts, "not the operator key"))
        }
    }
}

fn refuse(parts: &Parts, why: &'static str) -> ApiError {
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map_or("?", |path| path.as_str());
    tracing::warn!(route, why, "request refused: unauthenticated");
    ApiError::Unauthorized
}

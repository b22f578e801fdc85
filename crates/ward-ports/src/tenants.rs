//! Tenants: a provider's profile (its time zone), the list of providers, and its API keys.
//! A provider key is `ward.{providerId}.{keyId}.{secret}`: the provider and key id locate
//! the stored hash (in the provider's own partition), the secret (256 random bits) is
//! compared by SHA-256 hash in constant time. Keys are shown once and stored hashed. A key
//! is either a provider's full key (acts as its administrator) or a scoped key of a
//! machine client (its scopes, and an expiry after which the key item is absent).

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ward_domain::ProviderId;
use ward_domain::key_layout;
use ward_domain::time::ProviderTimeZone;
use ward_store::{
    Condition, Cursor, Item, Key, PK, Query, SK, SkCondition, StoreError, Table, Value, WriteOp,
};

/// The `entity` of a provider's profile item.
pub const PROVIDER_ENTITY: &str = "PROVIDER";
/// The `entity` of an API key item.
pub const API_KEY_ENTITY: &str = "APIKEY";
/// The provider id attribute (profile and list items).
pub const PROVIDER_ID: &str = "providerId";
/// The time zone attribute of the profile.
pub const TIME_ZONE: &str = "timeZone";
/// The key hash attribute of an API key item.
pub const SECRET_HASH: &str = "secretHash";
/// The scopes of a scoped key (absent on a full key).
pub const SCOPES: &str = "scopes";
/// The name its creator gave a key.
pub const KEY_NAME: &str = "name";

/// A key that verified: whose it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The tenant.
    pub provider: ProviderId,
    /// The key's id (never its secret).
    pub key_id: String,
    /// The scopes of a scoped key; `None` for a full key.
    pub scopes: Option<Vec<String>>,
}

/// An API key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's id.
    pub key_id: String,
    /// The name it was given.
    pub name: Option<String>,
    /// Its scopes; `None` for a full key.
    pub scopes: Option<Vec<String>>,
    /// When it was made (Unix seconds), for keys made since keys record it.
    pub created_at: Option<i64>,
    /// When it stops working (Unix seconds).
    pub expires_at: Option<i64>,
}

/// What a new scoped key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// A name to recognise it by.
    pub name: Option<String>,
    /// Its scopes (at least one).
    pub scopes: Vec<String>,
    /// When it stops working (Unix seconds).
    pub expires_at: Option<i64>,
}

/// A newly created key, to be shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey(pub String);

/// Why a tenant change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The provider exists already.
    #[error("provider {0} already exists")]
    Exists(ProviderId),
    /// There is no such provider.
    #[error("the provider does not exist")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// SHA-256 hex of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The tenant items of the table.
#[derive(Clone)]
pub struct Tenants {
    table: Arc<dyn Table>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants").finish_non_exhaustive()
    }
}

impl Tenants {
    /// The tenants of the table.
    pub fn new(table: Arc<dyn Table>) -> Self {
        Self { table }
    }

    /// Creates a provider (refused if it exists) and its first key.
    pub async fn create(
        &self,
        provider: &ProviderId,
        time_zone: Option<&ProviderTimeZone>,
    ) -> Result<IssuedKey, TenantError> {
        let mut profile = Item::new();
        profile.insert(PK.into(), Value::s(key_layout::provider_pk(provider)));
        profile.insert(SK.into(), Value::s(key_layout::PROVIDER_SK));
        profile.insert("entity".into(), Value::s(PROVIDER_ENTITY));
        profile.insert(PROVIDER_ID.into(), Value::s(provider.as_str()));
        if let Some(zone) = time_zone {
            profile.insert(TIME_ZONE.into(), Value::s(zone.name()));
        }
        let mut listed = Item::new();
        listed.insert(PK.into(), Value::s(key_layout::PROVIDERS_PK));
        listed.insert(SK.into(), Value::s(key_layout::provider_list_sk(provider)));
        listed.insert(PROVIDER_ID.into(), Value::s(provider.as_str()));
        let (key_item, issued) = new_key_item(provider);
        let result = self
            .table
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
            Err(StoreError::TransactionCanceled { .. }) => {
                Err(TenantError::Exists(provider.clone()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Issues a new full key for an existing provider; with `revoke_others`, revokes all
    /// its older keys in the same transaction (the reset for a tenant whose keys leaked).
    pub async fn issue_full_key(
        &self,
        provider: &ProviderId,
        revoke_others: bool,
    ) -> Result<IssuedKey, TenantError> {
        self.require_provider(provider).await?;
        let old = if revoke_others {
            self.key_items(provider).await?
        } else {
            Vec::new()
        };
        let (mut key_item, issued) = new_key_item(provider);
        key_item.insert(
            CREATED_AT.into(),
            Value::n(ward_domain::UtcInstant::now().unix_seconds()),
        );
        let mut ops = vec![WriteOp::Put {
            item: key_item,
            condition: Condition::NotExists,
        }];
        for item in old {
            let key = Key::of(&item)?;
            ops.push(WriteOp::Delete {
                key,
                condition: Condition::None,
            });
        }
        self.table.transact_write(ops).await?;
        Ok(issued)
    }

    /// Issues a scoped key for a machine client of the provider.
    pub async fn create_key(
        &self,
        provider: &ProviderId,
        request: &KeyRequest,
        now: i64,
    ) -> Result<(KeyInfo, IssuedKey), TenantError> {
        self.require_provider(provider).await?;
        let (mut item, issued) = new_key_item(provider);
        let key_id = item
            .get(SK)
            .and_then(Value::as_s)
            .and_then(|sk| sk.strip_prefix(KEY_SK_PREFIX))
            .unwrap_or_default()
            .to_owned();
        item.insert(
            SCOPES.into(),
            Value::L(
                request
                    .scopes
                    .iter()
                    .map(|scope| Value::s(scope.as_str()))
                    .collect(),
            ),
        );
        if let Some(name) = &request.name {
            item.insert(KEY_NAME.into(), Value::s(name.as_str()));
        }
        item.insert(CREATED_AT.into(), Value::n(now));
        if let Some(expires_at) = request.expires_at {
            item.insert(ward_store::EXPIRES_AT.into(), Value::n(expires_at));
        }
        self.table.put(item.clone(), Condition::NotExists).await?;
        Ok((key_info(&key_id, &item), issued))
    }

    /// The provider's live keys (at most 90), in id order; never their secrets.
    pub async fn list_keys(&self, provider: &ProviderId) -> Result<Vec<KeyInfo>, StoreError> {
        Ok(self
            .key_items(provider)
            .await?
            .iter()
            .filter_map(|item| {
                let sk = item.get(SK).and_then(Value::as_s)?;
                Some(key_info(sk.strip_prefix(KEY_SK_PREFIX)?, item))
            })
            .collect())
    }

    /// Revokes one key; `false` if the provider has no such key.
    pub async fn revoke_key(
        &self,
        provider: &ProviderId,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        if !is_key_id(key_id) {
            return Ok(false);
        }
        let key = Key::new(
            key_layout::provider_pk(provider),
            key_layout::api_key_sk(key_id),
        );
        match self.table.delete(&key, Condition::Exists).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `NotFound` unless the provider exists.
    async fn require_provider(&self, provider: &ProviderId) -> Result<(), TenantError> {
        let profile = Key::new(key_layout::provider_pk(provider), key_layout::PROVIDER_SK);
        match self.table.get(&profile).await? {
            Some(_) => Ok(()),
            None => Err(TenantError::NotFound),
        }
    }

    /// The provider's key items (at most 90, the most one rotation revokes in one
    /// transaction with the new key).
    async fn key_items(&self, provider: &ProviderId) -> Result<Vec<Item>, StoreError> {
        let page = self
            .table
            .query(Query {
                limit: 90,
                ..Query::partition(
                    key_layout::provider_pk(provider),
                    SkCondition::BeginsWith(KEY_SK_PREFIX.into()),
                )
            })
            .await?;
        Ok(page.items)
    }

    /// Checks a provider key; `None` if it is not a live key.
    pub async fn verify_key(&self, token: &str) -> Result<Option<VerifiedKey>, StoreError> {
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
        if !is_key_id(key_id) {
            return Ok(None);
        }
        let key = Key::new(
            key_layout::provider_pk(&provider),
            key_layout::api_key_sk(key_id),
        );
        let Some(item) = self.table.get(&key).await? else {
            return Ok(None);
        };
        let stored = item
            .get(SECRET_HASH)
            .and_then(Value::as_s)
            .unwrap_or_default();
        let given = hash_secret(secret);
        let matches: bool = stored.as_bytes().ct_eq(given.as_bytes()).into();
        Ok(matches.then(|| VerifiedKey {
            provider,
            key_id: key_id.to_owned(),
            scopes: scopes_of(&item),
        }))
    }

    /// The provider's time zone, when its profile names one.
    pub async fn time_zone(
        &self,
        provider: &ProviderId,
    ) -> Result<Option<ProviderTimeZone>, StoreError> {
        let key = Key::new(key_layout::provider_pk(provider), key_layout::PROVIDER_SK);
        let item = self.table.get(&key).await?;
        Ok(item
            .as_ref()
            .and_then(|item| item.get(TIME_ZONE))
            .and_then(Value::as_s)
            .and_then(|name| ProviderTimeZone::parse(name).ok()))
    }

    /// A page of the providers, in id order.
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<ProviderId>, Option<Cursor>), StoreError> {
        let page = self
            .table
            .query(Query {
                cursor,
                limit,
                ..Query::partition(
                    key_layout::PROVIDERS_PK,
                    SkCondition::BeginsWith("PROV#".into()),
                )
            })
            .await?;
        let providers = page
            .items
            .iter()
            .filter_map(|item| item.get(PROVIDER_ID).and_then(Value::as_s))
            .filter_map(|id| ProviderId::parse(id).ok())
            .collect();
        Ok((providers, page.next))
    }
}

/// Whether a key id is well formed (hex, at most 32 characters).
pub fn is_key_id(key_id: &str) -> bool {
    !key_id.is_empty() && key_id.len() <= 32 && key_id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The start of every key item's sort key (`key_layout::api_key_sk`).
const KEY_SK_PREFIX: &str = "APIKEY#";

/// The `createdAt` attribute of a key item (Unix seconds).
const CREATED_AT: &str = "createdAt";

fn scopes_of(item: &Item) -> Option<Vec<String>> {
    match item.get(SCOPES) {
        Some(Value::L(scopes)) => Some(
            scopes
                .iter()
                .filter_map(Value::as_s)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

fn key_info(key_id: &str, item: &Item) -> KeyInfo {
    KeyInfo {
        key_id: key_id.to_owned(),
        name: item.get(KEY_NAME).and_then(Value::as_s).map(str::to_owned),
        scopes: scopes_of(item),
        created_at: item.get(CREATED_AT).and_then(Value::as_i64),
        expires_at: item.get(ward_store::EXPIRES_AT).and_then(Value::as_i64),
    }
}

fn new_key_item(provider: &ProviderId) -> (Item, IssuedKey) {
    let key_id = random_hex(6);
    let secret = random_hex(32);
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(key_layout::provider_pk(provider)));
    item.insert(SK.into(), Value::s(key_layout::api_key_sk(&key_id)));
    item.insert("entity".into(), Value::s(API_KEY_ENTITY));
    item.insert(SECRET_HASH.into(), Value::s(hash_secret(&secret)));
    (
        item,
        IssuedKey(format!("ward.{provider}.{key_id}.{secret}")),
    )
}

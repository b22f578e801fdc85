//! Built-in users: the embedded shape's people, who have no identity provider.
//!
//! A user is one item in its provider's partition (`USER#{userId}`): its role, what the
//! role is linked to (a clinician id, an MRN), its Argon2id password hash, whether it is
//! disabled, and its run of failed logins. Changes are read-modify-write on the item's
//! version, so two administrators' changes never silently overwrite each other.

use std::sync::Arc;

use ward_domain::{ProviderId, UserId, key_layout};
use ward_store::{
    Condition, Item, Key, PK, Query, SK, SkCondition, StoreError, Table, VERSION, Value,
};

use ward_domain::{Link, Role};

/// The `entity` of a user item.
pub const USER_ENTITY: &str = "USER";
const USER_ID: &str = "userId";
const ROLE: &str = "role";
const CLINICIAN_ID: &str = "clinicianId";
const MRN: &str = "mrn";
const PASSWORD_HASH: &str = "passwordHash";
const DISABLED: &str = "disabled";
const FAILURES: &str = "failedLogins";
const LAST_FAILURE_AT: &str = "lastFailedLoginAtMillis";
const CREATED_AT: &str = "createdAt";
/// The attributes of a user item that hold patient data (a patient user's MRN): sealed
/// at rest (`ward-protect`).
pub const PROTECTED_ATTRIBUTES: [&str; 1] = [MRN];
/// The most users a provider lists in one answer.
pub const MAX_LISTED: usize = 1000;

/// A user as stored (its hash stays inside this crate's callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The provider.
    pub provider: ProviderId,
    /// The sign-in name.
    pub id: UserId,
    /// The role.
    pub role: Role,
    /// What the role is linked to.
    pub link: Link,
    /// Whether sign-in is refused.
    pub disabled: bool,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// Failed logins since the last success.
    pub failed_logins: i64,
    /// When the last failed login was (Unix milliseconds).
    pub last_failed_login_millis: Option<i64>,
    password_hash: String,
    version: i64,
}

impl User {
    /// The stored Argon2id hash.
    pub fn password_hash(&self) -> &str {
        &self.password_hash
    }
}

/// A change to a user; `None` fields stay.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// A new role and link (checked together).
    pub role: Option<(Role, Link)>,
    /// A new password hash.
    pub password_hash: Option<String>,
    /// Enable or disable sign-in.
    pub disabled: Option<bool>,
}

/// Why a user change was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The user exists already.
    #[error("the user exists already")]
    Exists,
    /// No such user (or provider).
    #[error("no such user")]
    NotFound,
    /// The role and link do not fit.
    #[error("{0}")]
    Link(&'static str),
    /// Someone else changed the user meanwhile.
    #[error("the user was changed meanwhile; try again")]
    Changed,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The built-in users of the table.
#[derive(Clone)]
pub struct Users {
    table: Arc<dyn Table>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

fn user_key(provider: &ProviderId, user: &UserId) -> Key {
    Key::new(key_layout::provider_pk(provider), key_layout::user_sk(user))
}

impl Users {
    /// The users of `table`.
    pub fn new(table: Arc<dyn Table>) -> Self {
        Self { table }
    }

    /// Makes a user of an existing provider.
    pub async fn create(
        &self,
        provider: &ProviderId,
        id: &UserId,
        role: Role,
        link: Link,
        password_hash: String,
        now: i64,
    ) -> Result<User, UserError> {
        role.check_link(&link).map_err(UserError::Link)?;
        let profile = Key::new(key_layout::provider_pk(provider), key_layout::PROVIDER_SK);
        if self.table.get(&profile).await?.is_none() {
            return Err(UserError::NotFound);
        }
        let user = User {
            provider: provider.clone(),
            id: id.clone(),
            role,
            link,
            disabled: false,
            created_at: now,
            failed_logins: 0,
            last_failed_login_millis: None,
            password_hash,
            version: 1,
        };
        match self.table.put(to_item(&user), Condition::NotExists).await {
            Ok(()) => Ok(user),
            Err(StoreError::ConditionFailed { .. }) => Err(UserError::Exists),
            Err(error) => Err(error.into()),
        }
    }

    /// The user, if it exists.
    pub async fn get(
        &self,
        provider: &ProviderId,
        id: &UserId,
    ) -> Result<Option<User>, StoreError> {
        Ok(self
            .table
            .get(&user_key(provider, id))
            .await?
            .and_then(|item| from_item(provider, &item)))
    }

    /// The provider's users in id order, page by page, each page given to `take` until it
    /// says to stop.
    async fn each_page(
        &self,
        provider: &ProviderId,
        mut take: impl FnMut(Vec<User>) -> bool,
    ) -> Result<(), StoreError> {
        let mut cursor = None;
        loop {
            let page = self
                .table
                .query(Query {
                    limit: 200,
                    cursor,
                    ..Query::partition(
                        key_layout::provider_pk(provider),
                        SkCondition::BeginsWith(key_layout::USER_SK_PREFIX.into()),
                    )
                })
                .await?;
            let users = page
                .items
                .iter()
                .filter_map(|item| from_item(provider, item))
                .collect();
            if !take(users) {
                return Ok(());
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// The provider's users, in id order (at most [`MAX_LISTED`]).
    pub async fn list(&self, provider: &ProviderId) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::new();
        self.each_page(provider, |page| {
            users.extend(page);
            users.len() < MAX_LISTED
        })
        .await?;
        users.truncate(MAX_LISTED);
        Ok(users)
    }

    /// Every user of `provider` linked to `link` (all of them, however many the provider
    /// has: what a patient's erasure removes).
    pub async fn linked_to(
        &self,
        provider: &ProviderId,
        link: &Link,
    ) -> Result<Vec<UserId>, StoreError> {
        let mut linked = Vec::new();
        self.each_page(provider, |page| {
            linked.extend(
                page.into_iter()
                    .filter(|user| &user.link == link)
                    .map(|user| user.id),
            );
            true
        })
        .await?;
        Ok(linked)
    }

    /// Applies a change; the user as it is now.
    pub async fn update(
        &self,
        provider: &ProviderId,
        id: &UserId,
        change: UserChange,
    ) -> Result<User, UserError> {
        let mut user = self.get(provider, id).await?.ok_or(UserError::NotFound)?;
        if let Some((role, link)) = change.role {
            role.check_link(&link).map_err(UserError::Link)?;
            user.role = role;
            user.link = link;
        }
        if let Some(hash) = change.password_hash {
            user.password_hash = hash;
            user.failed_logins = 0;
            user.last_failed_login_millis = None;
        }
        if let Some(disabled) = change.disabled {
            user.disabled = disabled;
        }
        self.replace(user).await
    }

    /// Deletes a user; `false` if there was none.
    pub async fn delete(&self, provider: &ProviderId, id: &UserId) -> Result<bool, StoreError> {
        match self
            .table
            .delete(&user_key(provider, id), Condition::Exists)
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Counts a failed login (a concurrent change wins; the count is a throttle, not a
    /// ledger).
    pub async fn record_failure(&self, mut user: User, now_millis: i64) -> Result<(), StoreError> {
        user.failed_logins += 1;
        user.last_failed_login_millis = Some(now_millis);
        match self.replace(user).await {
            Ok(_) | Err(UserError::Changed | UserError::NotFound) => Ok(()),
            Err(UserError::Store(error)) => Err(error),
            Err(UserError::Exists | UserError::Link(_)) => Ok(()),
        }
    }

    /// Clears the run of failed logins after a success.
    pub async fn record_success(&self, mut user: User) -> Result<(), StoreError> {
        if user.failed_logins == 0 {
            return Ok(());
        }
        user.failed_logins = 0;
        user.last_failed_login_millis = None;
        match self.replace(user).await {
            Ok(_) | Err(UserError::Changed | UserError::NotFound) => Ok(()),
            Err(UserError::Store(error)) => Err(error),
            Err(UserError::Exists | UserError::Link(_)) => Ok(()),
        }
    }

    async fn replace(&self, mut user: User) -> Result<User, UserError> {
        let expected = user.version;
        user.version += 1;
        match self
            .table
            .put(to_item(&user), Condition::VersionIs(expected))
            .await
        {
            Ok(()) => Ok(user),
            Err(StoreError::ConditionFailed { existing: None }) => Err(UserError::NotFound),
            Err(StoreError::ConditionFailed { .. }) => Err(UserError::Changed),
            Err(error) => Err(error.into()),
        }
    }
}

fn to_item(user: &User) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(key_layout::provider_pk(&user.provider)));
    item.insert(SK.into(), Value::s(key_layout::user_sk(&user.id)));
    item.insert("entity".into(), Value::s(USER_ENTITY));
    item.insert(USER_ID.into(), Value::s(user.id.as_str()));
    item.insert(ROLE.into(), Value::s(user.role.as_str()));
    match &user.link {
        Link::None => {}
        Link::Clinician(id) => {
            item.insert(CLINICIAN_ID.into(), Value::s(id.as_str()));
        }
        Link::Patient(mrn) => {
            item.insert(MRN.into(), Value::s(mrn.as_str()));
        }
    }
    item.insert(PASSWORD_HASH.into(), Value::s(user.password_hash.as_str()));
    item.insert(DISABLED.into(), Value::Bool(user.disabled));
    item.insert(FAILURES.into(), Value::n(user.failed_logins));
    if let Some(at) = user.last_failed_login_millis {
        item.insert(LAST_FAILURE_AT.into(), Value::n(at));
    }
    item.insert(CREATED_AT.into(), Value::n(user.created_at));
    item.insert(VERSION.into(), Value::n(user.version));
    item
}

fn from_item(provider: &ProviderId, item: &Item) -> Option<User> {
    let text = |name: &str| item.get(name).and_then(Value::as_s);
    let number = |name: &str| item.get(name).and_then(Value::as_i64);
    let role = Role::parse(text(ROLE)?)?;
    let link = Link::from_parts(text(CLINICIAN_ID), text(MRN)).ok()?;
    Some(User {
        provider: provider.clone(),
        id: UserId::parse(text(USER_ID)?).ok()?,
        role,
        link,
        disabled: matches!(item.get(DISABLED), Some(Value::Bool(true))),
        created_at: number(CREATED_AT).unwrap_or(0),
        failed_logins: number(FAILURES).unwrap_or(0),
        last_failed_login_millis: number(LAST_FAILURE_AT),
        password_hash: text(PASSWORD_HASH)?.to_owned(),
        version: number(VERSION).unwrap_or(0),
    })
}

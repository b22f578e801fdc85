//! Ward's own sign-in tokens: what a built-in user's login returns.
//!
//! A token is a JWT (HS256) with issuer and audience [`WARD_ISSUER`], the user as `sub`,
//! its provider, role and link as claims, and a short life ([`TOKEN_TTL_SECONDS`] by
//! default). It is checked without a store read; the secret that signs it (256 random bits)
//! is one platform item, made on first use and shared by every server and function of the
//! table, read once per process. A token cannot be revoked before it expires: disabling a
//! user, or changing its role, takes effect at its next login, at most one token life
//! later (see `docs/access.md`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use ward_domain::{ProviderId, UserId, key_layout};
use ward_store::{Condition, Item, Key, PK, SK, StoreError, Table, Value};

use crate::{SignInMethod, SignedIn};
use ward_domain::{Link, Role};

/// The issuer and audience of Ward's own tokens.
pub const WARD_ISSUER: &str = "ward";
/// How long a token lives by default (15 minutes).
pub const TOKEN_TTL_SECONDS: i64 = 15 * 60;
/// The secret attribute of the token secret item.
const SECRET: &str = "secret";

/// The claims of Ward's own tokens.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    provider: String,
    role: String,
    #[serde(
        rename = "clinicianId",
        skip_serializing_if = "Option::is_none",
        default
    )]
    clinician_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    mrn: Option<String>,
}

/// A token just issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

/// Issues and checks Ward's own tokens.
#[derive(Clone)]
pub struct WardTokens {
    table: std::sync::Arc<dyn Table>,
    secret: std::sync::Arc<OnceCell<Vec<u8>>>,
    ttl_seconds: i64,
}

impl std::fmt::Debug for WardTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WardTokens")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl WardTokens {
    /// Tokens signed with the table's token secret, living `ttl_seconds`.
    pub fn new(table: std::sync::Arc<dyn Table>, ttl_seconds: i64) -> Self {
        Self {
            table,
            secret: std::sync::Arc::default(),
            ttl_seconds: ttl_seconds.clamp(60, 24 * 3600),
        }
    }

    /// How long a token lives.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    async fn secret(&self) -> Result<&[u8], StoreError> {
        self.secret
            .get_or_try_init(|| load_or_make_secret(self.table.as_ref()))
            .await
            .map(Vec::as_slice)
    }

    /// A token for a user of a provider, issued `now` (Unix seconds).
    pub async fn issue(
        &self,
        provider: &ProviderId,
        user: &UserId,
        role: Role,
        link: &Link,
        now: i64,
    ) -> Result<IssuedToken, StoreError> {
        let claims = Claims {
            iss: WARD_ISSUER.into(),
            aud: WARD_ISSUER.into(),
            sub: user.as_str().into(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_seconds,
            provider: provider.as_str().into(),
            role: role.as_str().into(),
            clinician_id: link.clinician().map(|id| id.as_str().to_owned()),
            mrn: link.mrn().map(|mrn| mrn.as_str().to_owned()),
        };
        let secret = self.secret().await?;
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .map_err(|e| StoreError::Internal(format!("token signing failed: {e}")))?;
        Ok(IssuedToken {
            token,
            expires_at: claims.exp,
        })
    }

    /// The sign-in a token of Ward's own carries, if it is one, valid now (`leeway`
    /// seconds of clock skew allowed), and names a role and link that fit.
    pub async fn verify(&self, token: &str, leeway: u64) -> Result<Option<SignedIn>, StoreError> {
        let secret = self.secret().await?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[WARD_ISSUER]);
        validation.set_audience(&[WARD_ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let Ok(data) =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        else {
            return Ok(None);
        };
        let claims = data.claims;
        let (Ok(provider), Some(role), Ok(link)) = (
            ProviderId::parse(&claims.provider),
            Role::parse(&claims.role),
            Link::from_parts(claims.clinician_id.as_deref(), claims.mrn.as_deref()),
        ) else {
            return Ok(None);
        };
        if role.check_link(&link).is_err() || UserId::parse(&claims.sub).is_err() {
            return Ok(None);
        }
        Ok(Some(SignedIn {
            provider,
            subject: claims.sub,
            role,
            link,
            method: SignInMethod::Password,
            expires_at: claims.exp,
        }))
    }
}

async fn load_or_make_secret(table: &dyn Table) -> Result<Vec<u8>, StoreError> {
    let key = Key::new(key_layout::TOKEN_SECRET_PK, key_layout::TOKEN_SECRET_SK);
    if let Some(secret) = stored_secret(table, &key).await? {
        return Ok(secret);
    }
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(key_layout::TOKEN_SECRET_PK));
    item.insert(SK.into(), Value::s(key_layout::TOKEN_SECRET_SK));
    item.insert(SECRET.into(), Value::s(hex::encode(&secret)));
    match table.put(item, Condition::NotExists).await {
        Ok(()) => Ok(secret),
        // Another process made it first: use theirs.
        Err(StoreError::ConditionFailed { .. }) => stored_secret(table, &key)
            .await?
            .ok_or_else(|| StoreError::Internal("the token secret vanished".into())),
        Err(error) => Err(error),
    }
}

async fn stored_secret(table: &dyn Table, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table
        .get(key)
        .await?
        .and_then(|item| item.get(SECRET).and_then(Value::as_s).map(str::to_owned))
        .and_then(|text| hex::decode(text).ok())
        .filter(|secret| secret.len() == 32))
}

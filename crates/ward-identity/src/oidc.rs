//! OIDC bearer tokens from a configured issuer (an OpenID provider, Cognito on AWS).
//!
//! The issuer's discovery document (`{issuer}/.well-known/openid-configuration`) names its
//! key set (JWKS); both are fetched on first use, not at start-up, so a server starts while
//! its identity provider is down. A token is accepted when its header's algorithm is in
//! the allow-list (never `none`, never an HMAC: the issuer's keys are public), its `kid`
//! names a key of the set whose type fits that algorithm, the signature holds, and `iss`,
//! `aud` (or Cognito's `client_id`), `exp` and `nbf` hold with [`OidcSettings::leeway`]
//! seconds of clock skew. An unknown `kid` (the issuer rotated its keys) refetches the key
//! set, at most once per [`OidcSettings::refetch_cooldown_seconds`], so a stream of tokens
//! with made-up `kid`s cannot make Ward hammer the issuer.
//!
//! The claim mapping turns claims into Ward's terms: the provider (a claim, or one fixed
//! provider for an issuer that serves one tenant), the role (a claim holding a role name or
//! a list of groups, Cognito's `cognito:groups`; the first that names a role wins), and the
//! clinician id or MRN a clinician or patient is linked to.

use std::time::{Duration, Instant};

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value as Json;
use tokio::sync::Mutex;
use ward_domain::ProviderId;

use crate::{SignInMethod, SignedIn};
use ward_domain::{Link, Role};

/// The largest discovery document or key set read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// How to trust and read an issuer's tokens.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer (`iss`), exactly as its discovery document states it.
    pub issuer: String,
    /// The audience Ward is (`aud`, or `client_id` for Cognito access tokens).
    pub audience: String,
    /// The algorithms accepted (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// The least time between two key-set fetches for an unknown `kid`, in seconds.
    pub refetch_cooldown_seconds: u64,
    /// How claims map to Ward's provider, role and link.
    pub claims: ClaimMapping,
}

/// Which claims say what.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// The claim naming the provider; `None` with `fixed_provider`.
    pub provider_claim: Option<String>,
    /// The provider every token of this issuer belongs to.
    pub fixed_provider: Option<ProviderId>,
    /// The claim holding the role name, or a list of groups.
    pub role_claim: String,
    /// The claim holding a clinician's clinician id.
    pub clinician_claim: String,
    /// The claim holding a patient's MRN.
    pub mrn_claim: String,
}

impl Default for ClaimMapping {
    /// Cognito's shape: custom attributes and groups.
    fn default() -> Self {
        Self {
            provider_claim: Some("custom:provider".into()),
            fixed_provider: None,
            role_claim: "cognito:groups".into(),
            clinician_claim: "custom:clinician_id".into(),
            mrn_claim: "custom:mrn".into(),
        }
    }
}

/// Parses an algorithm name of the allow-list; HMAC and `none` are refused.
pub fn asymmetric_algorithm(name: &str) -> Option<Algorithm> {
    let algorithm: Algorithm = name.parse().ok()?;
    (!matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ))
    .then_some(algorithm)
}

/// Why a token of the issuer was not accepted (logged, never told to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a JWT, or its header is unreadable (`alg: none` among them).
    #[error("not a readable JWT")]
    Malformed,
    /// The algorithm is not in the allow-list.
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    /// No key of the issuer has this `kid`, even after a refetch.
    #[error("no key of the issuer has this kid")]
    UnknownKey,
    /// The issuer's discovery document or key set could not be had.
    #[error("the issuer could not be reached: {0}")]
    Unreachable(String),
    /// The signature or a registered claim (`iss`, `exp`, `nbf`) failed.
    #[error("{0}")]
    Invalid(String),
    /// The audience is not Ward's.
    #[error("the audience is not this service")]
    Audience,
    /// The claims name no provider, role or fitting link.
    #[error("the claims do not map to a provider user: {0}")]
    Mapping(&'static str),
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    set: Option<JwkSet>,
    fetched_at: Option<Instant>,
}

/// Verifies the tokens of one issuer.
pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: Mutex<Keys>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier of `settings.issuer`'s tokens.
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            keys: Mutex::new(Keys::default()),
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The sign-in a token of this issuer carries, if it is valid now.
    pub async fn verify(&self, token: &str) -> Result<SignedIn, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(Refusal::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.settings.leeway;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Json>(token, &key, &validation)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        let claims = data.claims;
        if !self.audience_matches(&claims) {
            return Err(Refusal::Audience);
        }
        self.map_claims(&claims)
    }

    fn audience_matches(&self, claims: &Json) -> bool {
        let audience = self.settings.audience.as_str();
        match claims.get("aud") {
            Some(Json::String(aud)) => aud == audience,
            Some(Json::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
            // Cognito's access tokens carry no `aud`, only the app client.
            None => claims.get("client_id").and_then(Json::as_str) == Some(audience),
            Some(_) => false,
        }
    }

    fn map_claims(&self, claims: &Json) -> Result<SignedIn, Refusal> {
        let mapping = &self.settings.claims;
        let text = |name: &str| claims.get(name).and_then(Json::as_str);
        let provider = match (&mapping.fixed_provider, &mapping.provider_claim) {
            (Some(provider), _) => provider.clone(),
            (None, Some(claim)) => text(claim)
                .and_then(|id| ProviderId::parse(id).ok())
                .ok_or(Refusal::Mapping("no provider claim"))?,
            (None, None) => return Err(Refusal::Mapping("no provider is configured")),
        };
        let role = match claims.get(&mapping.role_claim) {
            Some(Json::String(name)) => Role::parse(name),
            Some(Json::Array(groups)) => {
                groups.iter().filter_map(Json::as_str).find_map(Role::parse)
            }
            _ => None,
        }
        .ok_or(Refusal::Mapping("no role claim names a role"))?;
        let link = match role {
            Role::Clinician => Link::from_parts(text(&mapping.clinician_claim), None),
            Role::Patient => Link::from_parts(None, text(&mapping.mrn_claim)),
            _ => Ok(Link::None),
        }
        .map_err(|_| Refusal::Mapping("the link claim is not a clinician id or an MRN"))?;
        role.check_link(&link).map_err(Refusal::Mapping)?;
        let subject = text("sub").unwrap_or_default();
        if subject.is_empty() || subject.len() > 256 {
            return Err(Refusal::Mapping("no usable sub"));
        }
        Ok(SignedIn {
            provider,
            subject: subject.to_owned(),
            role,
            link,
            method: SignInMethod::Oidc,
            expires_at: claims.get("exp").and_then(Json::as_i64).unwrap_or(0),
        })
    }

    /// The decoding key for `kid`, fetching the key set when it is not known yet, or when
    /// the `kid` is unknown and the last fetch is older than the cooldown.
    async fn key(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<DecodingKey, Refusal> {
        let mut keys = self.keys.lock().await;
        if keys.set.is_none() {
            self.fetch(&mut keys).await?;
        }
        if let Some(key) = find_key(keys.set.as_ref(), kid, algorithm)? {
            return Ok(key);
        }
        let cooled = keys.fetched_at.is_none_or(|at| {
            at.elapsed() >= Duration::from_secs(self.settings.refetch_cooldown_seconds)
        });
        if !cooled {
            return Err(Refusal::UnknownKey);
        }
        tracing::info!(issuer = %self.settings.issuer, "unknown kid: refetching the issuer's key set");
        self.fetch(&mut keys).await?;
        find_key(keys.set.as_ref(), kid, algorithm)?.ok_or(Refusal::UnknownKey)
    }

    async fn fetch(&self, keys: &mut Keys) -> Result<(), Refusal> {
        // A failed fetch counts for the cooldown too: an issuer that is down is not asked
        // again for every token.
        keys.fetched_at = Some(Instant::now());
        if keys.jwks_uri.is_none() {
            let url = format!(
                "{}/.well-known/openid-configuration",
                self.settings.issuer.trim_end_matches('/')
            );
            let discovery = self.get_json(&url).await?;
            if discovery.get("issuer").and_then(Json::as_str) != Some(&self.settings.issuer) {
                return Err(Refusal::Unreachable(
                    "the discovery document names another issuer".into(),
                ));
            }
            keys.jwks_uri = Some(
                discovery
                    .get("jwks_uri")
                    .and_then(Json::as_str)
                    .ok_or_else(|| Refusal::Unreachable("no jwks_uri".into()))?
                    .to_owned(),
            );
        }
        let uri = keys.jwks_uri.clone().unwrap_or_default();
        let set: JwkSet = serde_json::from_value(self.get_json(&uri).await?)
            .map_err(|e| Refusal::Unreachable(format!("the key set is unreadable: {e}")))?;
        keys.set = Some(set);
        Ok(())
    }

    async fn get_json(&self, url: &str) -> Result<Json, Refusal> {
        let unreachable = |e: reqwest::Error| Refusal::Unreachable(e.without_url().to_string());
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unreachable)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(Refusal::Unreachable("the document is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| Refusal::Unreachable(e.to_string()))
    }
}

/// The key of `set` named `kid` (the only key, when the token names none), if its type
/// and its own `alg` (when it states one) fit `algorithm`.
fn find_key(
    set: Option<&JwkSet>,
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<Option<DecodingKey>, Refusal> {
    let Some(set) = set else { return Ok(None) };
    let jwk = match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    };
    let Some(jwk) = jwk else { return Ok(None) };
    let fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            algorithm,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(_) => {
            matches!(algorithm, Algorithm::ES256 | Algorithm::ES384)
        }
        AlgorithmParameters::OctetKeyPair(_) => algorithm == Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    };
    let stated = jwk
        .common
        .key_algorithm
        .is_none_or(|stated| format!("{stated:?}") == format!("{algorithm:?}"));
    if !fits || !stated {
        return Err(Refusal::Algorithm(format!("{algorithm:?} for this key")));
    }
    DecodingKey::from_jwk(jwk)
        .map(Some)
        .map_err(|e| Refusal::Invalid(e.to_string()))
}

//! What every key source shares: a key-encryption key that wraps data keys (AES-256-GCM,
//! a random nonce before the sealed key), and the pseudonym keys derived from a root
//! secret that never rotates. The master key file derives its keys with HKDF; the AWS
//! shape's come from AWS KMS data keys. Both wrap, unwrap and name alike.

use rand::RngCore as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::{hkdf, hmac};

use crate::ProtectError;

const PSEUDONYM_SALT: &[u8] = b"ward/pseudonym/v1";
const NONCE_LEN: usize = 12;

/// One provider's key-encryption key of one version.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// The key-encryption key whose 256 bits are `secret`.
    pub fn from_bytes(secret: &[u8]) -> Result<Self, ProtectError> {
        UnboundKey::new(&aead::AES_256_GCM, secret)
            .map(|key| Self(LessSafeKey::new(key)))
            .map_err(|_| ProtectError::Crypto("a key-encryption key must be 32 bytes"))
    }

    pub(crate) fn from_okm(okm: hkdf::Okm<'_, &'static aead::Algorithm>) -> Self {
        Self(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// `data_key` sealed under this key, bound to `aad`: the nonce, then the ciphertext
    /// and its tag.
    pub fn wrap(&self, data_key: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, ProtectError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed = data_key.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| ProtectError::Crypto("wrapping a data key"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        Ok(wrapped)
    }

    /// The data key [`Kek::wrap`] sealed, if `wrapped` is intact and bound to `aad`.
    pub fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<[u8; 32], ProtectError> {
        if wrapped.len() < NONCE_LEN {
            return Err(ProtectError::Integrity(
                "a wrapped data key is too short".into(),
            ));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| ProtectError::Crypto("nonce"))?;
        let mut sealed = sealed.to_vec();
        let opened = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .map_err(|_| {
                ProtectError::Integrity(
                    "a wrapped data key failed its integrity check (changed, moved, or another master key)".into(),
                )
            })?;
        opened
            .try_into()
            .map_err(|_| ProtectError::Integrity("a wrapped data key has the wrong length".into()))
    }
}

/// The secret that keys Ward's pseudonyms (what table keys and object paths name a
/// patient or an email by), derived from `root`.
pub fn pseudonym_secret(root: &[u8; 32]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut secret = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, PSEUDONYM_SALT)
        .extract(root)
        .expand(&[b"ward/pseudonym-secret/v1"], Len32)
        .and_then(|okm| okm.fill(&mut secret))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    secret
}

/// A keyed pseudonym of `identifier` within `provider` (32 hex digits), from `root`.
pub fn pseudonym(root: &[u8; 32], provider: &str, identifier: &str) -> String {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, PSEUDONYM_SALT).extract(root);
    let info = [provider.as_bytes()];
    let key: hmac::Key = prk
        .expand(&info, hmac::HMAC_SHA256)
        .map(hmac::Key::from)
        .expect("HMAC-SHA256 key length is valid for HKDF-SHA256");
    hex::encode(&hmac::sign(&key, identifier.as_bytes()).as_ref()[..16])
}

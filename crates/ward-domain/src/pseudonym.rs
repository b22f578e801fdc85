//! Keyed pseudonyms: what table keys, index keys and object paths name a patient (or an
//! email address) by, so that no MRN or email appears in any of them.
//!
//! A pseudonym is the first 128 bits of HMAC-SHA256 under a key of the provider's own,
//! itself an HMAC of the platform's pseudonym secret and the provider id. The same MRN
//! of two providers has unrelated pseudonyms, and without the secret (the key file, or
//! the key source of the AWS shape) nobody can tell which MRN a key belongs to, nor test
//! a guess. Pseudonyms never change when encryption keys rotate: they are where an item
//! lives.

use std::collections::HashMap;
use std::sync::RwLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::{Mrn, ProviderId};

type HmacSha256 = Hmac<Sha256>;

/// Hex digits of a pseudonym (128 bits).
pub const PSEUDONYM_LEN: usize = 32;

/// Providers whose keys are kept derived; past this, a key is derived per call.
const CACHED_PROVIDERS: usize = 4_096;

/// A patient's pseudonymous key: [`PSEUDONYM_LEN`] lowercase hex digits, what the key
/// layout puts where an MRN would otherwise be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatientKey(String);

impl PatientKey {
    /// A patient key read back from where Ward wrote one (a sort key of its own), if
    /// `text` is one.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == PSEUDONYM_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PatientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pseudonyms of one platform secret.
pub struct Pseudonyms {
    root: HmacSha256,
    providers: RwLock<HashMap<ProviderId, HmacSha256>>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonyms").finish_non_exhaustive()
    }
}

impl Pseudonyms {
    /// The pseudonyms of `secret` (32 random bytes kept with the platform's keys).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            root: HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length"),
            providers: RwLock::new(HashMap::new()),
        }
    }

    /// The key of `mrn`'s items within `provider`.
    pub fn patient(&self, provider: &ProviderId, mrn: &Mrn) -> PatientKey {
        PatientKey(self.pseudonym(provider, b"patient", mrn.as_str()))
    }

    /// The blind index of an email address within `provider` (case does not matter).
    pub fn email(&self, provider: &ProviderId, email: &str) -> String {
        self.pseudonym(provider, b"email", &email.to_lowercase())
    }

    fn pseudonym(&self, provider: &ProviderId, purpose: &[u8], text: &str) -> String {
        let mut mac = self.provider_key(provider);
        mac.update(purpose);
        mac.update(&[0]);
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..PSEUDONYM_LEN / 2])
    }

    fn provider_key(&self, provider: &ProviderId) -> HmacSha256 {
        let read = self
            .providers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = read.get(provider) {
            return key.clone();
        }
        drop(read);
        let mut mac = self.root.clone();
        mac.update(b"ward/pseudonym/v1\0");
        mac.update(provider.as_str().as_bytes());
        let key = HmacSha256::new_from_slice(&mac.finalize().into_bytes())
            .expect("HMAC takes a key of any length");
        let mut write = self
            .providers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if write.len() < CACHED_PROVIDERS {
            write.insert(provider.clone(), key.clone());
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(provider: &str, mrn: &str) -> (ProviderId, Mrn) {
        (
            ProviderId::parse(provider).unwrap(),
            Mrn::parse(mrn).unwrap(),
        )
    }

    #[test]
    fn a_pseudonym_is_fixed_hex_stable_and_hides_the_mrn() {
        let pseudonyms = Pseudonyms::new(&[7; 32]);
        let (provider, mrn) = ids("PROV001", "MRN123456");
        let key = pseudonyms.patient(&provider, &mrn);
        assert_eq!(key.as_str().len(), PSEUDONYM_LEN);
        assert!(
            key.as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!key.as_str().contains("123456"));
        // The same again, from a fresh instance of the same secret (nothing cached).
        assert_eq!(Pseudonyms::new(&[7; 32]).patient(&provider, &mrn), key);
        assert_eq!(PatientKey::parse(key.as_str()), Some(key.clone()));
        for text in [
            "",
            "MRN123456",
            &key.as_str().to_uppercase(),
            &key.as_str()[1..],
        ] {
            assert_eq!(PatientKey::parse(text), None, "{text}");
        }
    }

    #[test]
    fn pseudonyms_differ_by_secret_provider_purpose_and_mrn() {
        let pseudonyms = Pseudonyms::new(&[7; 32]);
        let (provider, mrn) = ids("PROV001", "MRN1");
        let (other_provider, other_mrn) = ids("PROV002", "MRN2");
        let key = pseudonyms.patient(&provider, &mrn);
        assert_ne!(Pseudonyms::new(&[8; 32]).patient(&provider, &mrn), key);
        assert_ne!(pseudonyms.patient(&other_provider, &mrn), key);
        assert_ne!(pseudonyms.patient(&provider, &other_mrn), key);
        assert_ne!(pseudonyms.email(&provider, "MRN1"), key.as_str());
    }

    #[test]
    fn an_email_blind_index_ignores_case_only() {
        let pseudonyms = Pseudonyms::new(&[7; 32]);
        let provider = ProviderId::parse("PROV001").unwrap();
        let index = pseudonyms.email(&provider, "Ada@Example.org");
        assert_eq!(pseudonyms.email(&provider, "ada@example.org"), index);
        assert_ne!(pseudonyms.email(&provider, "ada@example.com"), index);
        assert!(!index.contains("example"));
    }
}

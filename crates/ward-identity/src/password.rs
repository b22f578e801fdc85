//! Passwords: Argon2id (RFC 9106) with OWASP's parameters, as PHC strings.
//!
//! A hash costs about 19 MiB of memory and tens of milliseconds of one core, on purpose.
//! So that a burst of logins cannot take a server's memory or all its cores, at most
//! [`CONCURRENT_HASHES`] run at once (on blocking threads, off the request runtime); the
//! rest wait their turn.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use tokio::sync::Semaphore;

/// How many hashes run at once in a process.
pub const CONCURRENT_HASHES: usize = 2;
/// The shortest password accepted, in characters.
pub const MIN_CHARS: usize = 12;
/// The longest password accepted, in characters (hashing time does not depend on it, but
/// there is no reason to take a megabyte).
pub const MAX_CHARS: usize = 256;
/// The most bytes a password given at login may have (four per character at most).
pub const MAX_BYTES: usize = 4 * MAX_CHARS;

static HASHING: Semaphore = Semaphore::const_new(CONCURRENT_HASHES);

/// Why a password is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short.
    #[error("must be at least {MIN_CHARS} characters")]
    TooShort,
    /// Too long.
    #[error("must be at most {MAX_CHARS} characters")]
    TooLong,
    /// Blank, or with control characters.
    #[error("must not be blank or hold control characters")]
    Unprintable,
}

/// Checks a new password against the rules.
pub fn check(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars > MAX_CHARS {
        return Err(PasswordError::TooLong);
    }
    if chars < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.trim().is_empty() || password.chars().any(char::is_control) {
        return Err(PasswordError::Unprintable);
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    // OWASP's first choice: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of a new password (checked by [`check`] first).
pub async fn hash(password: &str) -> Result<String, PasswordError> {
    check(password)?;
    let password = password.to_owned();
    let _turn = HASHING.acquire().await;
    let hashed = tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).ok()?;
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .ok()
            .map(|hash| hash.to_string())
    })
    .await
    .ok()
    .flatten();
    // Hashing fails only if the parameters are wrong, which they are not.
    hashed.ok_or(PasswordError::Unprintable)
}

/// Whether `password` matches the stored PHC string. `None` as the stored hash does the
/// same work against a fixed hash, so an unknown account takes as long as a known one.
pub async fn verify(stored: Option<&str>, password: &str) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    let stored = stored.map_or_else(|| DECOY.to_owned(), str::to_owned);
    let real = stored != DECOY;
    let password = password.to_owned();
    let _turn = HASHING.acquire().await;
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .is_ok_and(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
    .unwrap_or(false);
    matches && real
}

/// A hash of a random password nobody knows, with the same parameters.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$Jd0yWCM0e8u0y8WbOqeC+Q0Xlj9AeP3y8fOo7Nw0lYg";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let stored = hash("correct horse battery").await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(Some(&stored), "correct horse battery").await);
        assert!(!verify(Some(&stored), "correct horse batterY").await);
        assert!(!verify(None, "correct horse battery").await);
        assert!(!verify(Some("not a hash"), "correct horse battery").await);
        // Two hashes of one password differ (their salts do).
        assert_ne!(stored, hash("correct horse battery").await.unwrap());
    }

    #[test]
    fn weak_or_odd_passwords_are_refused() {
        assert_eq!(check("short"), Err(PasswordError::TooShort));
        assert_eq!(check(&"x".repeat(2000)), Err(PasswordError::TooLong));
        assert_eq!(check("            "), Err(PasswordError::Unprintable));
        assert_eq!(check("twelve chars\u{7}"), Err(PasswordError::Unprintable));
        assert!(check("a long enough passphrase").is_ok());
        assert!(PasswordHash::new(DECOY).is_ok());
    }
}

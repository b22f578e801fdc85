//! A key that lives in memory only, for files that do not outlive the process (the
//! ingest's sort runs): each record is sealed as one frame with AES-256-GCM under a
//! random key and a counter nonce, so the file holds no plaintext, and a frame that was
//! changed or read out of place does not open.

use rand::RngCore as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::ProtectError;

/// Bytes a sealed frame adds to its plaintext.
pub const FRAME_OVERHEAD: usize = 16;

/// A random key for one file's frames, numbered from 0.
pub struct EphemeralKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralKey").finish_non_exhaustive()
    }
}

impl Default for EphemeralKey {
    fn default() -> Self {
        Self::new()
    }
}

fn nonce(index: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

impl EphemeralKey {
    /// A fresh random key.
    pub fn new() -> Self {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let key = UnboundKey::new(&aead::AES_256_GCM, &raw).expect("a 256-bit key");
        Self {
            key: LessSafeKey::new(key),
        }
    }

    /// Seals `frame` (in place, the tag appended) as frame number `index`; each index at
    /// most once per key.
    pub fn seal(&self, index: u64, frame: &mut Vec<u8>) -> Result<(), ProtectError> {
        self.key
            .seal_in_place_append_tag(nonce(index), Aad::empty(), frame)
            .map_err(|_| ProtectError::Crypto("sealing a temporary frame"))
    }

    /// Opens frame number `index` in place; returns its plaintext's length.
    pub fn open(&self, index: u64, frame: &mut [u8]) -> Result<usize, ProtectError> {
        self.key
            .open_in_place(nonce(index), Aad::empty(), frame)
            .map(|plain| plain.len())
            .map_err(|_| ProtectError::Integrity("a temporary file's frame does not open".into()))
    }
}

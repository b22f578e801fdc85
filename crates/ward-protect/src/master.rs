//! The master key file of the embedded shape, and the keys derived from it.
//!
//! The file holds one or more numbered 256-bit master secrets (`ward keys rotate` adds
//! one; the newest wraps new data keys, older ones only unwrap). It is created on first
//! start with owner-only permissions, outside the data folder, so a copied data folder
//! without it is unreadable. From each secret and a provider id, HKDF-SHA256 derives that
//! provider's key-encryption key of that version; from the first secret, the provider's
//! pseudonym key (pseudonyms must not change when keys rotate).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::RngCore as _;
use ring::{aead, hkdf};

use crate::kek::Kek;
use crate::{KeyEncryptionKeys, ProtectError};

const HEADER: &str = "ward-master-keys 1";
const KEK_SALT: &[u8] = b"ward/kek/v1";

/// The master secrets of one key file.
pub struct MasterKeys {
    path: PathBuf,
    secrets: BTreeMap<u32, [u8; 32]>,
    /// Derived key-encryption keys, by provider and version.
    keks: Mutex<HashMap<(String, u32), Arc<Kek>>>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("path", &self.path)
            .field("versions", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl MasterKeys {
    /// Reads the key file at `path`, or creates it (with one secret, owner-only) if there
    /// is none and `create` is true.
    pub fn open(path: &Path, create: bool) -> Result<Self, ProtectError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_permissions(path)?;
                Self::parse(path, &text)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                let keys = Self {
                    path: path.to_owned(),
                    secrets: BTreeMap::from([(1, secret)]),
                    keks: Mutex::default(),
                };
                keys.write(true)?;
                Ok(keys)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(ProtectError::KeyFile {
                    path: path.to_owned(),
                    reason: "does not exist".into(),
                })
            }
            Err(error) => Err(ProtectError::KeyFile {
                path: path.to_owned(),
                reason: error.to_string(),
            }),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The versions there are, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.secrets.keys().copied().collect()
    }

    /// The secret that keys Ward's pseudonyms (what table keys and object paths name a
    /// patient or an email by): derived from the first master secret, so it never changes
    /// when keys rotate, and a data folder without its key file cannot be searched for a
    /// patient by guessing MRNs.
    pub fn pseudonym_secret(&self) -> [u8; 32] {
        crate::kek::pseudonym_secret(self.first())
    }

    fn first(&self) -> &[u8; 32] {
        self.secrets
            .first_key_value()
            .map(|(_, first)| first)
            .expect("a key file holds at least one key")
    }

    fn parse(path: &Path, text: &str) -> Result<Self, ProtectError> {
        let bad = |reason: String| ProtectError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        if lines.next() != Some(HEADER) {
            return Err(bad(format!("is not a Ward key file (no `{HEADER}` line)")));
        }
        let mut secrets = BTreeMap::new();
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [tag, version, hex_secret] = parts[..] else {
                return Err(bad(format!(
                    "has a line that is not `key VERSION HEX`: {}",
                    parts.first().unwrap_or(&"")
                )));
            };
            let version: u32 = version
                .parse()
                .ok()
                .filter(|version| *version > 0 && tag == "key")
                .ok_or_else(|| bad("has a key line without a positive version".into()))?;
            let secret: [u8; 32] = hex::decode(hex_secret)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| bad(format!("key {version} is not 64 hex digits")))?;
            if secrets.insert(version, secret).is_some() {
                return Err(bad(format!("has key {version} twice")));
            }
        }
        if secrets.is_empty() {
            return Err(bad("holds no key".into()));
        }
        Ok(Self {
            path: path.to_owned(),
            secrets,
            keks: Mutex::default(),
        })
    }

    /// Adds a version (the next number) and writes the file anew; returns the version.
    pub fn rotate(&mut self) -> Result<u32, ProtectError> {
        let version = self.current() + 1;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        self.secrets.insert(version, secret);
        self.write(false)?;
        Ok(version)
    }

    fn current(&self) -> u32 {
        self.secrets.keys().next_back().copied().unwrap_or(1)
    }

    /// Writes the file: a new one with `create_new`, or a replacement through a temporary
    /// file renamed over it; owner-only, synced with its folder.
    fn write(&self, new: bool) -> Result<(), ProtectError> {
        let fail = |error: std::io::Error| ProtectError::KeyFile {
            path: self.path.clone(),
            reason: format!("cannot be written: {error}"),
        };
        let folder = self
            .path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_folder(folder).map_err(fail)?;
        let mut text = format!(
            "# Ward's master keys. Keep this file secret, owner-only and apart from the\n\
             # data folder; without it the data folder cannot be read. Back it up on its own.\n{HEADER}\n"
        );
        for (version, secret) in &self.secrets {
            text.push_str(&format!("key {version} {}\n", hex::encode(secret)));
        }
        let target = if new {
            self.path.clone()
        } else {
            self.path.with_extension("new")
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if new {
            options.create_new(true);
        } else {
            options.create(true).truncate(true);
        }
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&target).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        if !new {
            std::fs::rename(&target, &self.path).map_err(fail)?;
        }
        std::fs::File::open(folder)
            .and_then(|folder| folder.sync_all())
            .map_err(fail)
    }

    fn kek(&self, provider: &str, version: u32) -> Result<Arc<Kek>, ProtectError> {
        let id = (provider.to_owned(), version);
        if let Some(kek) = self.keks.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(Arc::clone(kek));
        }
        let kek = Arc::new(self.derive_kek(provider, version)?);
        let mut keks = self.keks.lock().unwrap_or_else(|e| e.into_inner());
        if keks.len() >= 10_000 {
            keks.clear();
        }
        keks.insert(id, Arc::clone(&kek));
        Ok(kek)
    }

    fn derive_kek(&self, provider: &str, version: u32) -> Result<Kek, ProtectError> {
        let secret = self
            .secrets
            .get(&version)
            .ok_or(ProtectError::UnknownKeyVersion(version))?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEK_SALT).extract(secret);
        let info = [provider.as_bytes()];
        let okm = prk
            .expand(&info, &aead::AES_256_GCM)
            .map_err(|_| ProtectError::Crypto("key derivation"))?;
        Ok(Kek::from_okm(okm))
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKeys for MasterKeys {
    fn current_version(&self) -> u32 {
        self.current()
    }

    async fn wrap(
        &self,
        provider: &str,
        data_key: &[u8; 32],
        aad: &[u8],
    ) -> Result<(u32, Vec<u8>), ProtectError> {
        let version = self.current();
        let wrapped = self.kek(provider, version)?.wrap(data_key, aad)?;
        Ok((version, wrapped))
    }

    async fn unwrap(
        &self,
        provider: &str,
        version: u32,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<[u8; 32], ProtectError> {
        self.kek(provider, version)?.unwrap(wrapped, aad)
    }

    fn pseudonym(&self, provider: &str, identifier: &str) -> String {
        crate::kek::pseudonym(self.first(), provider, identifier)
    }
}

/// Refuses a key file that others may read or write.
fn check_permissions(path: &Path) -> Result<(), ProtectError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|error| ProtectError::KeyFile {
                path: path.to_owned(),
                reason: error.to_string(),
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(ProtectError::KeyFile {
                path: path.to_owned(),
                reason: format!(
                    "may be read or written by others (mode {:o}); make it owner-only: chmod 600",
                    mode & 0o777
                ),
            });
        }
    }
    Ok(())
}

fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

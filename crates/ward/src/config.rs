//! Ward's settings: one typed tree, read from a TOML file (`--config` / `WARD_CONFIG`),
//! then overridden by `WARD_*` environment variables and flags. Every field is optional
//! with a sensible default, so the embedded shape needs no file at all; unknown keys are
//! refused so that a typo is an error, not a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The data folder (store file and objects). Default `ward-data`.
    pub data_dir: Option<PathBuf>,
    /// Address the server listens on. Default `127.0.0.1:8080`.
    pub listen: Option<SocketAddr>,
    /// Base URL clients reach the server at (for upload links). Default `http://{listen}`.
    pub public_url: Option<String>,
    /// Upload settings.
    #[serde(default)]
    pub uploads: UploadSettings,
    /// Ingest settings.
    #[serde(default)]
    pub ingest: IngestFileSettings,
    /// Object retention.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// The embedded store.
    #[serde(default)]
    pub store: StoreSettings,
}

/// `[store]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Page cache of the embedded store, in MiB. Default 16 (with `ingest.batch_rows` =
    /// 1024, peak memory stays under 150 MiB for a 1M-row file; 32 and 2048 ingest ~35%
    /// faster at ~200 MiB, see docs/benchmarks.md).
    pub cache_mib: Option<usize>,
}

/// `[uploads]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSettings {
    /// Largest accepted file, in bytes. Default 1 GiB.
    pub max_bytes: Option<u64>,
    /// How long an upload URL is valid, in seconds. Default 900.
    pub url_ttl_seconds: Option<i64>,
}

/// `[ingest]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestFileSettings {
    /// Longest doctor's note, in characters. Default 10,000.
    pub max_notes_chars: Option<usize>,
    /// Rows per store write batch. Default 1,024.
    pub batch_rows: Option<usize>,
}

/// `[retention]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days processed files (and their reports and error lists) are kept. Default 2,557
    /// (7 years).
    pub completed_days: Option<u64>,
    /// Hours before an upload URL that was never used is forgotten and any partial object
    /// removed. Default 24.
    pub stale_upload_hours: Option<u64>,
}

impl Settings {
    /// Reads the file at `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid Ward settings file", path.display()))
    }
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(Option<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: Option<String>) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(<redacted>)"
        } else {
            "Secret(None)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_and_known_ones_read() {
        let ok: Settings =
            toml::from_str("listen = \"127.0.0.1:9000\"\n[uploads]\nmax_bytes = 10\n").unwrap();
        assert_eq!(ok.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(ok.uploads.max_bytes, Some(10));
        let typo = toml::from_str::<Settings>("[uploads]\nmax_byte = 10\n").unwrap_err();
        assert!(typo.to_string().contains("max_byte"), "{typo}");
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(Some("hunter2".into()));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose(), Some("hunter2"));
    }
}

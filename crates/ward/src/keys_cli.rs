//! `ward keys status` and `ward keys rotate`: the key versions and where each provider's
//! data keys stand. The embedded shape's offline (the data folder must not be served at
//! the same time); the AWS shape's (settings naming it, `--config`) beside the running
//! deployment, whose processes take a new version when their cached keys expire.

use std::path::Path;
use std::sync::Arc;

use ward_protect::DataKeys;

use crate::config::Settings;

/// `ward keys ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// The key versions, and each provider's data keys by the version that wraps them.
    Status {
        #[command(flatten)]
        place: Place,
    },
    /// Add a key version and re-wrap every data key under it (`--rewrap-only`: finish an
    /// interrupted re-wrap without adding another version; `--in-background`: only add the
    /// version, and let the server re-wrap while it serves).
    Rotate {
        #[arg(long, conflicts_with = "in_background")]
        rewrap_only: bool,
        #[arg(long)]
        in_background: bool,
        #[command(flatten)]
        place: Place,
    },
}

/// Where the keys are.
#[derive(Debug, Clone, clap::Args)]
pub struct Place {
    /// A TOML settings file: its shape's keys (the AWS shape's: AWS KMS and the key-store
    /// table) [default: the embedded shape's key folder].
    #[arg(long, env = "WARD_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// The data folder (store file and objects).
    #[arg(long, env = "WARD_DATA_DIR", default_value = "ward-data")]
    data_dir: std::path::PathBuf,
}

/// Runs `action`.
pub async fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Status { place } => status(&settings(&place)?, &place.data_dir).await,
        Action::Rotate {
            rewrap_only,
            in_background,
            place,
        } => {
            rotate(
                &settings(&place)?,
                &place.data_dir,
                rewrap_only,
                in_background,
            )
            .await
        }
    }
}

/// The settings `ward keys` works with: the file's, and the Lambdas' variables (so it
/// runs where a deployment's functions do).
fn settings(place: &Place) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(place.config.as_deref())?;
    settings.apply_lambda_environment();
    Ok(settings)
}

/// The providers of the data folder, and the platform's own scope (`""`).
async fn scopes(table: &Arc<dyn ward_store::Table>) -> anyhow::Result<Vec<String>> {
    let tenants = ward_ports::Tenants::new(Arc::clone(table));
    let mut providers = vec![String::new()];
    let mut cursor = None;
    loop {
        let (page, next) = tenants.list(1000, cursor).await?;
        providers.extend(page.iter().map(|provider| provider.as_str().to_owned()));
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(providers),
        }
    }
}

fn label(provider: &str) -> &str {
    if provider.is_empty() {
        "(platform)"
    } else {
        provider
    }
}

/// The store and its data keys, as the settings' shape has them.
struct Opened {
    table: Arc<dyn ward_store::Table>,
    keys: Arc<DataKeys>,
    /// The embedded data folder, held open while the command runs.
    _embedded: Option<crate::embedded::Embedded>,
}

async fn open(settings: &Settings, data_dir: &Path) -> anyhow::Result<Opened> {
    let shape = crate::shape::Shape::from_settings(settings)?;
    #[cfg(feature = "aws")]
    if let crate::shape::Shape::Aws(_) = &shape {
        let backend = crate::shape::open(
            &shape,
            data_dir,
            Default::default(),
            &settings.embedded_store(),
        )
        .await?;
        let keys = backend
            .keys
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the store seals nothing"))?;
        return Ok(Opened {
            table: backend.table,
            keys,
            _embedded: None,
        });
    }
    #[cfg(not(feature = "aws"))]
    let _embedded_only = shape;
    let embedded =
        crate::embedded::open(data_dir, Default::default(), &settings.embedded_store()).await?;
    let keys = embedded
        .keys
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the data folder's store seals nothing"))?;
    Ok(Opened {
        table: Arc::clone(&embedded.table),
        keys,
        _embedded: Some(embedded),
    })
}

/// Prints the key file's versions and, per provider, its data keys by wrapping version.
pub async fn status(settings: &Settings, data_dir: &Path) -> anyhow::Result<()> {
    let opened = open(settings, data_dir).await?;
    let keys = &opened.keys;
    let current = keys.keks().current_version();
    println!("key versions: 1..={current} (new data keys are wrapped under {current})");
    println!(
        "data keys per provider, by wrapping version (keys made ahead and not yet used count too):"
    );
    let mut stale = 0;
    for provider in scopes(&opened.table).await? {
        let versions = keys.versions(&provider).await?;
        let listed: Vec<String> = versions
            .iter()
            .map(|(version, count)| format!("v{version}: {count}"))
            .collect();
        stale += versions
            .iter()
            .filter(|(version, _)| **version != current)
            .map(|(_, count)| count)
            .sum::<u64>();
        println!(
            "  {:<16} data keys {}",
            label(&provider),
            if listed.is_empty() {
                "none".into()
            } else {
                listed.join(", ")
            }
        );
    }
    if stale > 0 {
        println!(
            "{stale} data keys are wrapped under an older version: `ward serve` re-wraps them in \
             the background, or `ward keys rotate --rewrap-only` now"
        );
    } else {
        println!("every data key is wrapped under version {current}");
    }
    Ok(())
}

/// Re-wraps every data key that an older version wraps under the current one, provider by
/// provider, calling `progress(provider, done)` every 1,000 keys and after each provider
/// that had any; says how many. Safe to interrupt and run again, and beside a running
/// server (a key erased meanwhile is skipped).
pub async fn rewrap_all(
    table: &Arc<dyn ward_store::Table>,
    keys: &DataKeys,
    mut progress: impl FnMut(&str, u64, bool),
) -> anyhow::Result<u64> {
    let mut total = 0;
    for provider in scopes(table).await? {
        let done = keys
            .rewrap(&provider, |done| {
                if done % 1000 == 0 {
                    progress(label(&provider), done, false);
                }
            })
            .await?;
        if done > 0 {
            progress(label(&provider), done, true);
        }
        total += done;
    }
    Ok(total)
}

/// The server's background re-wrap after `ward keys rotate --in-background`: logs where
/// it is (counts, never a key or a patient) and when it is done.
pub async fn rewrap_in_background(table: Arc<dyn ward_store::Table>, keys: Arc<DataKeys>) {
    let version = keys.keks().current_version();
    let result = rewrap_all(&table, &keys, |provider, done, finished| {
        tracing::info!(provider, done, finished, version, "data keys re-wrapped");
    })
    .await;
    match result {
        Ok(0) => {}
        Ok(total) => tracing::info!(
            total,
            version,
            "every data key is now wrapped under the current key version"
        ),
        Err(error) => tracing::warn!(
            error = %error,
            "the background re-wrap stopped; it starts again with the server (or run `ward keys rotate --rewrap-only`)"
        ),
    }
}

/// Adds a key version, then re-wraps every provider's data keys under it (unless
/// `in_background`: then the server does, when it next starts).
pub async fn rotate(
    settings: &Settings,
    data_dir: &Path,
    rewrap_only: bool,
    in_background: bool,
) -> anyhow::Result<()> {
    if !rewrap_only {
        // Checked against the store first: a rotation of the wrong keys would help nobody.
        drop(open(settings, data_dir).await?);
        let (version, source) = add_version(settings, data_dir).await?;
        println!("key version {version} added to {source}");
        if in_background {
            println!(
                "new data keys are wrapped under it from the next start; `ward serve` re-wraps \
                 the older ones in the background then (its log says when it is done; \
                 `ward keys status` shows where it stands)"
            );
            return Ok(());
        }
    }
    let opened = open(settings, data_dir).await?;
    let total = rewrap_all(&opened.table, &opened.keys, |provider, done, finished| {
        if finished {
            println!("  {provider:<16} {done} data keys re-wrapped");
        } else {
            eprintln!("  {provider}: {done} re-wrapped...");
        }
    })
    .await?;
    println!(
        "{total} data keys re-wrapped; every one is now under version {}",
        opened.keys.keks().current_version()
    );
    Ok(())
}

/// Adds a version to the settings' key source; says which version, and where.
async fn add_version(settings: &Settings, data_dir: &Path) -> anyhow::Result<(u32, String)> {
    match crate::shape::Shape::from_settings(settings)? {
        crate::shape::Shape::Embedded => {
            let keys_dir = settings
                .embedded_store()
                .keys_dir
                .unwrap_or_else(|| crate::protection::default_keys_dir(data_dir));
            let mut master = ward_protect::MasterKeys::open(
                &keys_dir.join(crate::protection::MASTER_KEY_FILE),
                false,
            )?;
            let version = master.rotate()?;
            Ok((version, master.path().display().to_string()))
        }
        #[cfg(feature = "aws")]
        crate::shape::Shape::Aws(aws) => {
            let (kms, _) = crate::shape::aws_keys(&aws, false).await?;
            let version = kms.rotate().await?;
            Ok((
                version,
                format!(
                    "the key store {} (KMS key {}); running processes take it within {} s",
                    aws.keys_table,
                    aws.kms_key_id,
                    aws.key_cache.as_secs()
                ),
            ))
        }
    }
}

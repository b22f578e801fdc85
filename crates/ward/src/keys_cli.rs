//! `ward keys status` and `ward keys rotate`: the embedded shape's key versions and where
//! each provider's data keys stand (offline: the data folder must not be served at the
//! same time).

use std::path::Path;
use std::sync::Arc;

use ward_protect::DataKeys;

use crate::config::Settings;

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

async fn open(data_dir: &Path) -> anyhow::Result<(crate::embedded::Embedded, Arc<DataKeys>)> {
    let embedded = crate::embedded::open(
        data_dir,
        Default::default(),
        &Settings::default().embedded_store(),
    )
    .await?;
    let keys = embedded
        .keys
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the data folder's store seals nothing"))?;
    Ok((embedded, keys))
}

/// Prints the key file's versions and, per provider, its data keys by wrapping version.
pub async fn status(data_dir: &Path) -> anyhow::Result<()> {
    let (embedded, keys) = open(data_dir).await?;
    let current = keys.keks().current_version();
    println!("key versions: 1..={current} (new data keys are wrapped under {current})");
    println!(
        "data keys per provider, by wrapping version (keys made ahead and not yet used count too):"
    );
    let mut stale = 0;
    for provider in scopes(&embedded.table).await? {
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
            "{stale} data keys are wrapped under an older version: `ward keys rotate` re-wraps them"
        );
    } else {
        println!("every data key is wrapped under version {current}");
    }
    Ok(())
}

/// Adds a key version, then re-wraps every provider's data keys under it.
pub async fn rotate(data_dir: &Path, rewrap_only: bool) -> anyhow::Result<()> {
    if !rewrap_only {
        let keys_dir = Settings::default()
            .embedded_store()
            .keys_dir
            .unwrap_or_else(|| crate::protection::default_keys_dir(data_dir));
        // Checked against the data folder first: a rotation of the wrong key file would
        // help nobody.
        drop(open(data_dir).await?);
        let mut master = ward_protect::MasterKeys::open(
            &keys_dir.join(crate::protection::MASTER_KEY_FILE),
            false,
        )?;
        let version = master.rotate()?;
        println!("key version {version} added to {}", master.path().display());
    }
    let (embedded, keys) = open(data_dir).await?;
    let mut total = 0;
    for provider in scopes(&embedded.table).await? {
        let done = keys
            .rewrap(&provider, |done| {
                if done % 1000 == 0 {
                    eprintln!("  {}: {done} re-wrapped...", label(&provider));
                }
            })
            .await?;
        if done > 0 {
            println!("  {:<16} {done} data keys re-wrapped", label(&provider));
        }
        total += done;
    }
    println!(
        "{total} data keys re-wrapped; every one is now under version {}",
        keys.keks().current_version()
    );
    Ok(())
}

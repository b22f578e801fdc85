//! The composition root of the embedded shape: a data folder holding `ward.redb` (the
//! table, the queue) and `objects/` (object storage), and its key folder beside it
//! (`crate::protection`: the master key file and the key store).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rand::RngCore;
use ward_domain::Pseudonyms;
use ward_ingest::{IngestContext, IngestSettings};
use ward_ports::TableJobQueue;
use ward_ports::tenants::hash_secret;
use ward_store::{Condition, Item, Key, PK, SK, Table, Value};
use ward_store_embedded::{AttributeDictionary, EmbeddedOptions, EmbeddedTable, OpenError};

use crate::durable_objects::DurableLocalFileSystem;

/// The embedded adapters, wired.
pub struct Embedded {
    pub table: Arc<dyn Table>,
    /// What names patients in keys (from the key file; the benchmark's unsealed
    /// comparison keeps a secret of its own in the table).
    pub pseudonyms: Arc<Pseudonyms>,
    pub queue: Arc<TableJobQueue>,
    pub ctx: Arc<IngestContext>,
    /// The data keys that seal its patient data (`None`: nothing sealed, the benchmark's
    /// comparison only).
    pub keys: Option<Arc<ward_protect::DataKeys>>,
}

/// How the embedded store is opened: its tuning, and where its key folder is.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStore {
    /// The store file's tuning.
    pub options: EmbeddedOptions,
    /// The key folder; default beside the data folder (`protection::default_keys_dir`).
    pub keys_dir: Option<PathBuf>,
}

/// Opens (creating if needed) the data folder, its patient data sealed with the keys of
/// its key folder.
pub async fn open(
    data_dir: &Path,
    settings: IngestSettings,
    store: &EmbeddedStore,
) -> anyhow::Result<Embedded> {
    open_with(data_dir, settings, store, true).await
}

/// [`open`], or with nothing sealed (`protect` false): only what the ingest benchmark
/// compares encryption against. Never for data anyone keeps.
pub(crate) async fn open_with(
    data_dir: &Path,
    mut settings: IngestSettings,
    store: &EmbeddedStore,
    protect: bool,
) -> anyhow::Result<Embedded> {
    // Files read in key order are sorted beside the store, not in a RAM-backed /tmp.
    settings
        .sort_dir
        .get_or_insert_with(|| data_dir.join("tmp"));
    refuse_unfinished_migration(data_dir)?;
    std::fs::create_dir_all(data_dir.join("objects"))
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    let table = open_folder_table(data_dir, &data_dir.join("ward.redb"), &store.options)?;
    let keys_dir = store
        .keys_dir
        .clone()
        .unwrap_or_else(|| crate::protection::default_keys_dir(data_dir));
    let (table, keys, pseudonyms): (Arc<dyn Table>, _, _) = if protect {
        let protected = crate::protection::protect(data_dir, Arc::new(table), &keys_dir).await?;
        (protected.table, Some(protected.keys), protected.pseudonyms)
    } else {
        let table: Arc<dyn Table> = Arc::new(table);
        let pseudonyms = Arc::new(table_pseudonyms(table.as_ref()).await?);
        (table, None, pseudonyms)
    };
    let objects: Arc<dyn object_store::ObjectStore> = Arc::new(
        DurableLocalFileSystem::new(data_dir.join("objects"))
            .context("cannot open the objects folder")?,
    );
    // Every object sealed too (uploaded files, error lists, reports, datasets, results,
    // documents), each with a data key of its own from its provider's pool. A document
    // (never copied) takes its key with it when deleted: an erased patient's documents
    // cannot be opened from a backup of the objects folder either.
    let objects: Arc<dyn object_store::ObjectStore> = match &keys {
        Some(keys) => Arc::new(
            ward_protect::SealedObjects::new(objects, Arc::clone(keys)).shredding(|path| {
                path.parts()
                    .nth(1)
                    .is_some_and(|part| part.as_ref() == ward_domain::key_layout::DOCUMENTS_FOLDER)
            }),
        ),
        None => objects,
    };
    let queue = Arc::new(TableJobQueue::new(Arc::clone(&table), "ingest"));
    let ctx = Arc::new(crate::analytics_cli::attach(IngestContext::new(
        Arc::clone(&table),
        Arc::clone(&pseudonyms),
        objects,
        queue.clone(),
        settings,
    )));
    Ok(Embedded {
        table,
        pseudonyms,
        queue,
        ctx,
        keys,
    })
}

/// The staging folder of `ward migrate` in a data folder (`crate::migrate`).
pub const MIGRATION_STAGING_DIR: &str = ".encrypting";

/// Refuses a data folder whose migration (`ward migrate`) was interrupted, before anything
/// of it is opened.
pub fn refuse_unfinished_migration(data_dir: &Path) -> anyhow::Result<()> {
    if data_dir.join(MIGRATION_STAGING_DIR).exists() {
        anyhow::bail!(
            "the encryption of the data folder {} was interrupted; run `ward migrate --data-dir {}` \
             again to finish it",
            data_dir.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// Opens the store file at `path` of the data folder `data_dir`, saying so when a running
/// server holds it.
pub fn open_folder_table(
    data_dir: &Path,
    path: &Path,
    options: &EmbeddedOptions,
) -> anyhow::Result<EmbeddedTable> {
    open_table(path, options).map_err(|error| match error {
        OpenError::InUse { .. } => anyhow::anyhow!(
            "the data folder {} is in use by a running ward server; stop it, or use the HTTP API (ward upload, the admin routes)",
            data_dir.display()
        ),
        error => anyhow::anyhow!(error),
    })
}

/// Opens the store file at `path` with Ward's attribute dictionary.
pub fn open_table(path: &Path, options: &EmbeddedOptions) -> Result<EmbeddedTable, OpenError> {
    let options = EmbeddedOptions {
        dictionary: attribute_dictionary(),
        ..options.clone()
    };
    EmbeddedTable::open(path, &options)
}

/// The attribute names the embedded store writes as one byte: the most frequent ones of
/// every schema (index keys, visits, versions and expiry, uploads, the queue). The file
/// records this list when it is created; it may only ever be appended to.
pub fn attribute_dictionary() -> AttributeDictionary {
    let [
        (_, gsi1pk, gsi1sk),
        (_, gsi2pk, gsi2sk),
        (_, gsi3pk, gsi3sk),
    ] = ward_store::INDEX_KEY_ATTRIBUTES;
    let mut names = vec![gsi1pk, gsi1sk, gsi2pk, gsi2sk, gsi3pk, gsi3sk];
    names.extend(ward_ports::visits::attribute::ALL);
    names.extend([ward_store::VERSION, ward_store::EXPIRES_AT]);
    // Uploads and EMR entities; then the table-backed queue's items.
    names.extend(["status", "createdAt", "updatedAt"]);
    names.extend(["job", "attempt", "visibleAt"]);
    // The protected table's sealed attributes (every item with patient data has one).
    names.push(ward_protect::SEALED_ATTRIBUTE);
    AttributeDictionary::new(&names).expect("the attribute dictionary is well formed")
}

const SECRETS_PK: &str = "PLATFORM#SECRETS";

/// The upload-signing secret, created on first use.
pub async fn signing_secret(table: &dyn Table) -> anyhow::Result<Vec<u8>> {
    platform_secret(table, "UPLOAD_SIGNING").await
}

/// Pseudonyms keyed by a secret kept in the table itself, created on first use: for a
/// store that seals nothing (the ingest benchmark's unsealed comparison). (With the secret beside the data, pseudonyms keep
/// MRNs out of keys and paths, but whoever reads the table could test guesses.)
pub async fn table_pseudonyms(table: &dyn Table) -> anyhow::Result<Pseudonyms> {
    let secret = platform_secret(table, "PSEUDONYMS").await?;
    let secret: [u8; 32] = secret
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored pseudonym secret is not 32 bytes"))?;
    Ok(Pseudonyms::new(&secret))
}

/// The secret that tags page cursors, created on first use (every instance of a shape
/// shares it, so a cursor from one is good at another).
pub async fn cursor_secret(table: &dyn Table) -> anyhow::Result<Vec<u8>> {
    platform_secret(table, "CURSORS").await
}

/// A random 32-byte platform secret, created on first use.
async fn platform_secret(table: &dyn Table, name: &str) -> anyhow::Result<Vec<u8>> {
    let key = Key::new(SECRETS_PK, name);
    if let Some(item) = table.get(&key).await?
        && let Some(Value::B(secret)) = item.get("secret")
    {
        return Ok(secret.clone());
    }
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(key.pk.clone()));
    item.insert(SK.into(), Value::s(key.sk.clone()));
    item.insert("secret".into(), Value::B(secret.clone()));
    match table.put(item, Condition::NotExists).await {
        Ok(()) => Ok(secret),
        Err(ward_store::StoreError::ConditionFailed {
            existing: Some(item),
        }) => match item.get("secret") {
            Some(Value::B(secret)) => Ok(secret.clone()),
            _ => anyhow::bail!("the stored secret {name} is unreadable"),
        },
        Err(error) => Err(error.into()),
    }
}

/// The operator key's hash. `WARD_OPERATOR_KEY` sets the key; without it, a key is made on
/// first start and returned (to be shown once).
pub async fn operator_key(
    table: &dyn Table,
    from_env: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    let key = Key::new(SECRETS_PK, "OPERATOR_KEY");
    let store = |hash: &str| {
        let mut item = Item::new();
        item.insert(PK.into(), Value::s(key.pk.clone()));
        item.insert(SK.into(), Value::s(key.sk.clone()));
        item.insert("keyHash".into(), Value::s(hash));
        item
    };
    if let Some(given) = from_env {
        let hash = hash_secret(given);
        table.put(store(&hash), Condition::None).await?;
        return Ok((hash, None));
    }
    if let Some(item) = table.get(&key).await?
        && let Some(hash) = item.get("keyHash").and_then(Value::as_s)
    {
        return Ok((hash.to_owned(), None));
    }
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let operator_key = format!("ward-operator.{}", hex::encode(bytes));
    let hash = hash_secret(&operator_key);
    table.put(store(&hash), Condition::None).await?;
    Ok((hash, Some(operator_key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_dictionary_keeps_the_order_files_were_written_with() {
        // Every data folder written so far codes these names by position: the list may
        // grow at its end, never change.
        let historical = [
            "GSI1PK",
            "GSI1SK",
            "GSI2PK",
            "GSI2SK",
            "GSI3PK",
            "GSI3SK",
            "entity",
            "providerId",
            "medicalRecordNumber",
            "dateTime",
            "dateTimeUtc",
            "firstName",
            "lastName",
            "doctorsNotes",
            "csvFile",
            "dateTimeProcessed",
            "uploadId",
            "sourceLine",
            "contentHash",
            "version",
            "expiresAt",
            "status",
            "createdAt",
            "updatedAt",
            "job",
            "attempt",
            "visibleAt",
        ];
        let names = attribute_dictionary().names().to_vec();
        assert_eq!(&names[..historical.len()], &historical[..]);
    }
}

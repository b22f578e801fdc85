//! Patient data at rest in the embedded shape: which attributes are sealed (each schema's
//! own list), whose data key an item uses (by its partition key), and the key folder
//! beside the data folder (the master key file and the key store).
//!
//! A data folder records which key file it was written with (a check value, never the
//! key), so that a folder opened with another key file, or without its own, is refused
//! with what to do, before anything is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ward_domain::Pseudonyms;
use ward_protect::{DataKeys, KeyEncryptionKeys, MasterKeys, ProtectedTable, Protection, Scope};
use ward_store::{Condition, Item, Key, PK, SK, Table, Value};
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

/// The master key file, in the key folder.
pub const MASTER_KEY_FILE: &str = "master.keys";
/// The key store (wrapped data keys), in the key folder.
pub const KEY_STORE_FILE: &str = "keys.redb";

const MARKER_PK: &str = "PLATFORM#PROTECTION";
const MARKER_SK: &str = "KEYS";
const CHECK: &str = "keyCheck";
/// The sealed form a data folder holds (recorded with the key check).
const FORMAT: &str = "sealedFormat";
/// 3: patients named by pseudonyms in keys and object paths; 4: objects sealed too.
const SEALED_FORMAT: i64 = 4;

/// Every attribute Ward seals, from each schema's own list.
pub fn protected_attributes() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    names.extend(ward_ports::visits::attribute::PROTECTED);
    names.extend(ward_ports::audit::PROTECTED_ATTRIBUTES);
    names.extend(ward_ports::uploads::PROTECTED_ATTRIBUTES);
    names.extend(ward_emr::PROTECTED_ATTRIBUTES);
    names.extend(ward_identity::users::PROTECTED_ATTRIBUTES);
    names.sort_unstable();
    names.dedup();
    names
}

/// Whose data key seals an item with this partition key, and where that scope records
/// its key: a patient's partition (`PROV#{provider}#PAT#{patient key}`) its patient's, recorded in
/// it; any other partition of a provider the provider's, recorded in `PROV#{provider}`; the
/// platform's own items the platform's, recorded in [`MARKER_PK`].
pub fn scope_of(pk: &str) -> Scope {
    let Some(rest) = pk.strip_prefix("PROV#") else {
        return Scope::new("", MARKER_PK);
    };
    let (provider, rest) = rest.split_once('#').unwrap_or((rest, ""));
    match rest.strip_prefix("PAT#") {
        Some(patient) if !patient.is_empty() && !patient.contains('#') => Scope::new(provider, pk),
        _ => Scope::new(provider, &format!("PROV#{provider}")),
    }
}

/// The one-byte code of each protected attribute in a sealed value: its index here. The
/// list may only grow at its end (a stored value names its fields by these codes); an
/// attribute without a code is written by its name.
pub const FIELD_CODES: [&str; 17] = [
    // Visits first: they are most of a store's items.
    "medicalRecordNumber",
    "firstName",
    "lastName",
    "doctorsNotes",
    "sourceFileName",
    "event",
    "patient",
    "report",
    "fileName",
    "data",
    "id",
    "patientMrn",
    "answer",
    "mrn",
    "ownerId",
    "reason",
    "grant",
];

/// Ward's protection of its schemas.
pub fn protection() -> Protection {
    Protection::new(protected_attributes(), scope_of)
        .with_codes(ward_protect::envelope::FieldCodes::new(&FIELD_CODES))
}

/// The key folder of `data_dir` when the settings name none: beside it, `{name}-keys`.
pub fn default_keys_dir(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ward-data".into());
    data_dir.with_file_name(format!("{name}-keys"))
}

/// A data folder's store seen through its key folder.
pub struct Protected {
    /// The store, its protected attributes sealed.
    pub table: Arc<dyn Table>,
    /// The data keys that seal them.
    pub keys: Arc<DataKeys>,
    /// What names patients in keys, from the key file.
    pub pseudonyms: Arc<Pseudonyms>,
}

/// `table` (the data folder's store) with its protected attributes sealed, by the keys of
/// `keys_dir`: made there on a new data folder; checked against the folder's record on
/// an existing one.
pub async fn protect(
    data_dir: &Path,
    table: Arc<dyn Table>,
    keys_dir: &Path,
) -> anyhow::Result<Protected> {
    let marker = protection_record(&*table).await?;
    let master_path = keys_dir.join(MASTER_KEY_FILE);
    let folder = format!("the data folder {}", data_dir.display());
    let unsealed = unsealed_folder(data_dir);
    if marker.is_none() {
        refuse_unsealed(&*table, &unsealed).await?;
    }
    if marker.is_some() && !master_path.exists() {
        anyhow::bail!(
            "the data folder {} is encrypted with the key file {}, which does not exist; \
             restore the key folder it was written with (or point [keys] dir / \
             WARD_KEYS_DIR at it): without it the data cannot be read",
            data_dir.display(),
            master_path.display()
        );
    }
    if keys_dir.starts_with(data_dir) {
        anyhow::bail!(
            "the key folder {} is inside the data folder {}; keep it apart (a copy of the \
             data folder must not carry its keys)",
            keys_dir.display(),
            data_dir.display()
        );
    }
    let master = MasterKeys::open(&master_path, marker.is_none())?;
    let check = master.pseudonym("", "ward key check");
    let wrong_keys = format!(
        "the key file {} is not the one {folder} was written with; point [keys] dir / \
         WARD_KEYS_DIR at that folder's key folder",
        master_path.display()
    );
    settle_record(&*table, marker, &check, &folder, &wrong_keys, &unsealed).await?;
    let store_path = keys_dir.join(KEY_STORE_FILE);
    let store = EmbeddedTable::open(&store_path, &EmbeddedOptions::default())
        .with_context(|| format!("cannot open the key store {}", store_path.display()))?;
    let secret = master.pseudonym_secret();
    Ok(protected(table, Arc::new(store), Arc::new(master), &secret))
}

/// `table` sealed by the data keys of `key_store`, wrapped by `keks`; patients named by
/// pseudonyms keyed by `pseudonym_secret`.
pub fn protected(
    table: Arc<dyn Table>,
    key_store: Arc<dyn Table>,
    keks: Arc<dyn KeyEncryptionKeys>,
    pseudonym_secret: &[u8; 32],
) -> Protected {
    let pseudonyms = Arc::new(Pseudonyms::new(pseudonym_secret));
    let keys = Arc::new(DataKeys::new(key_store, keks));
    let protected = ProtectedTable::new(table, Arc::clone(&keys), protection());
    Protected {
        table: Arc::new(protected),
        keys,
        pseudonyms,
    }
}

/// The store's protection record, read before anything else.
pub async fn protection_record(table: &dyn Table) -> anyhow::Result<Option<Item>> {
    Ok(table.get(&Key::new(MARKER_PK, MARKER_SK)).await?)
}

/// Checks the protection record (`marker`) of `table` (named `store` in messages) against
/// the key source's `check` value, or writes it on a new store. A store written before
/// encryption at rest (refused with `unsealed`), one written with other keys (`wrong_keys`
/// says what to do) and one in an earlier sealed form are refused before anything is read.
pub async fn settle_record(
    table: &dyn Table,
    marker: Option<Item>,
    check: &str,
    store: &str,
    wrong_keys: &str,
    unsealed: &str,
) -> anyhow::Result<()> {
    match marker {
        Some(marker) => {
            if marker.get(CHECK).and_then(Value::as_s) != Some(check) {
                anyhow::bail!("{wrong_keys}");
            }
            if marker.get(FORMAT).and_then(Value::as_i64) != Some(SEALED_FORMAT) {
                anyhow::bail!(
                    "{store} holds an earlier sealed form, written by a development build of \
                     Ward, that this version does not read; start a new one and upload again"
                );
            }
        }
        None => {
            refuse_unsealed(table, unsealed).await?;
            write_record(table, check).await?;
        }
    }
    Ok(())
}

/// Writes the protection record of `table`, sealed with the key source whose check value
/// is `check`: from then on the store is served (a new one, or one `ward migrate` has
/// finished sealing).
pub async fn write_record(table: &dyn Table, check: &str) -> anyhow::Result<()> {
    let mut item = Item::new();
    item.insert(PK.into(), Value::s(MARKER_PK));
    item.insert(SK.into(), Value::s(MARKER_SK));
    item.insert(CHECK.into(), Value::s(check));
    item.insert(FORMAT.into(), Value::n(SEALED_FORMAT));
    table.put(item, Condition::NotExists).await?;
    Ok(())
}

/// Refuses `table`, which has no protection record, with `unsealed` if it holds data
/// already: a Ward without encryption at rest wrote it.
async fn refuse_unsealed(table: &dyn Table, unsealed: &str) -> anyhow::Result<()> {
    if written_before(table).await? {
        anyhow::bail!("{unsealed}");
    }
    Ok(())
}

/// What a data folder written by a Ward without encryption at rest is refused with.
pub fn unsealed_folder(data_dir: &Path) -> String {
    format!(
        "the data folder {} was written by a Ward without encryption at rest, and this version \
         keeps patient data only encrypted; stop the server that serves it and run \
         `ward migrate --data-dir {}` to encrypt it in place (docs/encryption.md#migrating)",
        data_dir.display(),
        data_dir.display()
    )
}

/// Whether a table without the protection record holds data already (every started data
/// folder has its upload-signing secret).
pub async fn written_before(table: &dyn Table) -> anyhow::Result<bool> {
    Ok(table
        .get(&Key::new("PLATFORM#SECRETS", "UPLOAD_SIGNING"))
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patients_partition_uses_its_key_and_every_other_its_providers() {
        let mrn = ward_domain::Mrn::parse("MRN-1").unwrap();
        let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
        let patient = Pseudonyms::new(&[1; 32]).patient(&provider, &mrn);
        let pk = ward_domain::key_layout::patient_pk(&provider, &patient);
        assert_eq!(scope_of(&pk), Scope::new("PROV001", &pk));
        assert_eq!(
            scope_of(&ward_domain::key_layout::uploads_pk(&provider)),
            Scope::new("PROV001", "PROV#PROV001")
        );
        assert_eq!(
            scope_of(&ward_domain::key_layout::access_log_pk(&provider, &patient)),
            Scope::new("PROV001", "PROV#PROV001")
        );
        assert_eq!(
            scope_of("PLATFORM#SECRETS"),
            Scope::new("", "PLATFORM#PROTECTION")
        );
        assert_eq!(
            default_keys_dir(Path::new("/srv/ward-data")),
            PathBuf::from("/srv/ward-data-keys")
        );
    }

    #[test]
    fn every_protected_attribute_has_a_field_code_and_the_codes_keep_their_order() {
        for name in protected_attributes() {
            assert!(
                FIELD_CODES.contains(&name),
                "{name} has no field code: append it"
            );
        }
        // Stored values name their fields by these positions: the list only grows.
        assert_eq!(
            FIELD_CODES[..5],
            [
                "medicalRecordNumber",
                "firstName",
                "lastName",
                "doctorsNotes",
                "sourceFileName"
            ]
        );
        assert_eq!(FIELD_CODES[16], "grant");
        assert_eq!(ward_ports::visits::attribute::MRN, FIELD_CODES[0]);
    }

    #[test]
    fn the_protected_attributes_are_each_schemas_patient_data() {
        let names = protected_attributes();
        for name in [
            "firstName",
            "lastName",
            "doctorsNotes",
            "medicalRecordNumber",
            "data",
            "event",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        // Keys, index keys, versions and expiry are never sealed: the port's contracts
        // (conditions, queries, TTL) read them.
        for name in [
            PK,
            SK,
            ward_store::VERSION,
            ward_store::EXPIRES_AT,
            "GSI1PK",
            "GSI1SK",
        ] {
            assert!(!names.contains(&name), "{name}");
        }
    }
}

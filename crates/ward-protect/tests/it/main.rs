//! The protected table keeps every contract of the port (the conformance suite, over the
//! embedded store), keeps no protected value in plaintext, and refuses every sealed value
//! that was changed, moved or replaced.

use std::path::Path;
use std::sync::Arc;

use ward_protect::{DataKeys, MasterKeys, ProtectedTable, Protection, SEALED_ATTRIBUTE, Scope};
use ward_store::{Condition, Item, Key, PK, SK, StoreError, Table, Value};
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

mod envelope;
mod erasure;
mod ingest_path;
mod keys;
mod objects;
mod race;

/// The attribute names the conformance suite writes, all protected, some with a field code
/// and some named in full in the sealed value; every partition is one patient's.
fn conformance_protection() -> Protection {
    Protection::new(
        [
            "v", "text", "number", "bytes", "flag", "list", "map", "secret",
        ],
        |pk| Scope::new("PROV001", pk),
    )
    .with_codes(ward_protect::envelope::FieldCodes::new(&[
        "secret", "v", "map",
    ]))
}

struct Opened {
    table: ProtectedTable,
    inner: Arc<dyn Table>,
    dir: tempfile::TempDir,
}

/// A store in `dir` (`ward.redb`), its key store beside it (`keys.redb`) and the data keys
/// wrapped by `key_file` (made if missing).
fn stores_in(dir: &Path, key_file: &Path) -> (Arc<dyn Table>, Arc<DataKeys>) {
    let inner: Arc<dyn Table> =
        Arc::new(EmbeddedTable::open(&dir.join("ward.redb"), &EmbeddedOptions::default()).unwrap());
    let store: Arc<dyn Table> =
        Arc::new(EmbeddedTable::open(&dir.join("keys.redb"), &EmbeddedOptions::default()).unwrap());
    let master = Arc::new(MasterKeys::open(key_file, true).unwrap());
    (inner, Arc::new(DataKeys::new(store, master)))
}

fn open_in(dir: &Path, key_file: &Path) -> (ProtectedTable, Arc<dyn Table>) {
    let (inner, keys) = stores_in(dir, key_file);
    (
        ProtectedTable::new(Arc::clone(&inner), keys, conformance_protection()),
        inner,
    )
}

fn open() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let (table, inner) = open_in(dir.path(), &dir.path().join("keys").join("master.keys"));
    Opened { table, inner, dir }
}

async fn open_for_suite() -> (ProtectedTable, tempfile::TempDir) {
    let opened = open();
    (opened.table, opened.dir)
}

ward_store::table_conformance_suite!(open_for_suite());

fn item(pk: &str, sk: &str, attributes: &[(&str, Value)]) -> Item {
    let mut item: Item = attributes
        .iter()
        .map(|(name, value)| ((*name).to_owned().into(), value.clone()))
        .collect();
    item.insert(PK.into(), Value::s(pk));
    item.insert(SK.into(), Value::s(sk));
    item
}

fn integrity_error(result: Result<Option<Item>, StoreError>) -> String {
    match result {
        Err(StoreError::Internal(message)) => message,
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[tokio::test]
async fn protected_values_are_stored_sealed_and_never_in_plaintext() {
    let opened = open();
    let secret = "Ada Lovelace, allergic to penicillin";
    opened
        .table
        .put(
            item(
                "PAT#1",
                "A",
                &[("secret", Value::s(secret)), ("open", Value::s("visible"))],
            ),
            Condition::None,
        )
        .await
        .unwrap();
    let raw = opened
        .inner
        .get(&Key::new("PAT#1", "A"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        ward_protect::envelope::is_sealed(&raw[SEALED_ATTRIBUTE]),
        "{:?}",
        raw[SEALED_ATTRIBUTE]
    );
    assert!(
        !raw.contains_key("secret"),
        "the protected attributes are stored together, sealed"
    );
    assert_eq!(
        raw["open"],
        Value::s("visible"),
        "other attributes stay as they are"
    );
    let read = opened
        .table
        .get(&Key::new("PAT#1", "A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read["secret"], Value::s(secret));
    drop(opened.table);
    drop(opened.inner);
    let bytes = std::fs::read(opened.dir.path().join("ward.redb")).unwrap();
    assert!(
        !bytes
            .windows(b"Lovelace".len())
            .any(|window| window == b"Lovelace"),
        "the store file holds the plaintext"
    );
    assert!(bytes.windows(7).any(|window| window == b"visible"));
}

#[tokio::test]
async fn a_flipped_byte_anywhere_in_a_sealed_value_fails_the_read() {
    let opened = open();
    let key = Key::new("PAT#2", "A");
    opened
        .table
        .put(
            item("PAT#2", "A", &[("secret", Value::s("a note"))]),
            Condition::None,
        )
        .await
        .unwrap();
    let raw = opened.inner.get(&key).await.unwrap().unwrap();
    let Value::B(sealed) = &raw[SEALED_ATTRIBUTE] else {
        panic!("sealed as bytes")
    };
    for at in 0..sealed.len() {
        let mut changed = raw.clone();
        let mut bytes = sealed.clone();
        bytes[at] ^= 0x01;
        changed.insert(SEALED_ATTRIBUTE.into(), Value::B(bytes));
        opened.inner.put(changed, Condition::None).await.unwrap();
        let message = integrity_error(opened.table.get(&key).await);
        assert!(
            message.contains("integrity") || message.contains("another data key"),
            "byte {at}: {message}"
        );
    }
    // Truncated: refused the same way.
    let mut changed = raw.clone();
    changed.insert(SEALED_ATTRIBUTE.into(), Value::B(sealed[..10].to_vec()));
    opened.inner.put(changed, Condition::None).await.unwrap();
    let message = integrity_error(opened.table.get(&key).await);
    assert!(message.contains(SEALED_ATTRIBUTE), "{message}");
    // Plaintext where ciphertext belongs (beside the sealed value, or instead of it).
    for with_sealed in [true, false] {
        let mut changed = raw.clone();
        if !with_sealed {
            changed.remove(SEALED_ATTRIBUTE);
        }
        changed.insert("secret".into(), Value::s("a note"));
        opened.inner.put(changed, Condition::None).await.unwrap();
        let message = integrity_error(opened.table.get(&key).await);
        assert!(message.contains("`secret` holds plaintext"), "{message}");
    }
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_item_or_attribute_does_not_open() {
    let opened = open();
    opened
        .table
        .put(
            item(
                "PAT#3",
                "A",
                &[("secret", Value::s("first")), ("text", Value::s("x"))],
            ),
            Condition::None,
        )
        .await
        .unwrap();
    opened
        .table
        .put(
            item("PAT#3", "B", &[("secret", Value::s("second"))]),
            Condition::None,
        )
        .await
        .unwrap();
    let a = opened
        .inner
        .get(&Key::new("PAT#3", "A"))
        .await
        .unwrap()
        .unwrap();
    let b = opened
        .inner
        .get(&Key::new("PAT#3", "B"))
        .await
        .unwrap()
        .unwrap();
    // A's value in B (same patient, same key: only the item key tells them apart).
    let mut moved = b.clone();
    moved.insert(SEALED_ATTRIBUTE.into(), a[SEALED_ATTRIBUTE].clone());
    opened.inner.put(moved, Condition::None).await.unwrap();
    let message = integrity_error(opened.table.get(&Key::new("PAT#3", "B")).await);
    assert!(message.contains("moved"), "{message}");
    // A's sealed value under a protected attribute's name: refused, never read as data.
    let mut swapped = a.clone();
    swapped.insert("text".into(), a[SEALED_ATTRIBUTE].clone());
    opened.inner.put(swapped, Condition::None).await.unwrap();
    integrity_error(opened.table.get(&Key::new("PAT#3", "A")).await);
    // Another patient's item, with its own data key.
    opened
        .table
        .put(
            item("PAT#4", "B", &[("secret", Value::s("other"))]),
            Condition::None,
        )
        .await
        .unwrap();
    let mut foreign = opened
        .inner
        .get(&Key::new("PAT#4", "B"))
        .await
        .unwrap()
        .unwrap();
    foreign.insert(SEALED_ATTRIBUTE.into(), b[SEALED_ATTRIBUTE].clone());
    opened.inner.put(foreign, Condition::None).await.unwrap();
    integrity_error(opened.table.get(&Key::new("PAT#4", "B")).await);
}

#[tokio::test]
async fn long_text_is_compressed_before_it_is_sealed() {
    let opened = open();
    let notes = "Patient reports mild headache after exercise. ".repeat(200);
    opened
        .table
        .put(
            item("PAT#5", "A", &[("secret", Value::s(&notes))]),
            Condition::None,
        )
        .await
        .unwrap();
    let raw = opened
        .inner
        .get(&Key::new("PAT#5", "A"))
        .await
        .unwrap()
        .unwrap();
    let Value::B(sealed) = &raw[SEALED_ATTRIBUTE] else {
        panic!("sealed")
    };
    assert!(
        sealed.len() < notes.len() / 4,
        "{} of {}",
        sealed.len(),
        notes.len()
    );
    let read = opened
        .table
        .get(&Key::new("PAT#5", "A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read["secret"], Value::s(notes));
}

#[test]
fn the_value_decoder_refuses_arbitrary_bytes_without_panicking() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if ward_protect::envelope::decode(&bytes, 0).is_some() {
            accepted += 1;
        }
    }
    // Deep nesting is refused, not recursed into without bound.
    let deep: Vec<u8> = std::iter::repeat_n([b'l', 0, 0, 0, 1], 10_000)
        .flatten()
        .collect();
    assert!(ward_protect::envelope::decode(&deep, 0).is_none());
    assert!(accepted < 20_000);
}

#[tokio::test]
async fn a_partition_records_its_data_key_once_and_reads_never_return_the_record() {
    let opened = open();
    let items: Vec<Item> = (0..3)
        .map(|n| item("PAT#5", &format!("V{n}"), &[("secret", Value::s("note"))]))
        .collect();
    let outcomes = opened.table.put_many_if_absent(items).await.unwrap();
    assert_eq!(
        outcomes.len(),
        3,
        "one outcome per item given, none for the record"
    );
    opened
        .table
        .put(
            item("PAT#5", "V9", &[("secret", Value::s("later"))]),
            Condition::None,
        )
        .await
        .unwrap();
    let all = ward_store::Query::partition("PAT#5", ward_store::SkCondition::Any);
    let read = opened.table.query(all.clone()).await.unwrap();
    assert_eq!(read.items.len(), 4);
    assert!(
        read.items
            .iter()
            .all(|item| item["secret"].as_s().is_some())
    );
    let raw = opened.inner.query(all).await.unwrap();
    assert_eq!(raw.items.len(), 5, "four values and the partition's record");
    let record = raw
        .items
        .iter()
        .find(|item| item[SK] == Value::s(ward_protect::DATA_KEY_SK))
        .expect("the record");
    // Every value names the recorded key.
    let id = u64::from_str_radix(record["keyId"].as_s().unwrap(), 16).unwrap();
    for item in raw
        .items
        .iter()
        .filter(|item| item.contains_key(SEALED_ATTRIBUTE))
    {
        let Value::B(sealed) = &item[SEALED_ATTRIBUTE] else {
            panic!("sealed")
        };
        assert_eq!(ward_protect::envelope::key_id(sealed), Some(id));
    }
    assert!(
        opened
            .table
            .get(&Key::new("PAT#5", ward_protect::DATA_KEY_SK))
            .await
            .unwrap()
            .is_none()
    );
}

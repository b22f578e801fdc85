//! The master key file and the data keys: made once, owner-only, refused when exposed or
//! malformed; a data folder is unreadable with another key file; rotation keeps old data.

use ward_protect::{KeyEncryptionKeys, MasterKeys};
use ward_store::{Condition, Key, Table, Value};

use super::{integrity_error, item, open_in};

#[test]
fn the_key_file_is_made_owner_only_and_read_back_the_same() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("master.keys");
    let made = MasterKeys::open(&path, true).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let folder = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(folder, 0o700);
    let read = MasterKeys::open(&path, false).unwrap();
    assert_eq!(read.versions(), vec![1]);
    assert_eq!(
        made.pseudonym("PROV001", "MRN1"),
        read.pseudonym("PROV001", "MRN1")
    );
    assert_ne!(
        read.pseudonym("PROV001", "MRN1"),
        read.pseudonym("PROV002", "MRN1")
    );
    assert_eq!(read.pseudonym("PROV001", "MRN1").len(), 32);
    // The pseudonym secret is the file's: the same when read again, another file's not.
    assert_eq!(made.pseudonym_secret(), read.pseudonym_secret());
    let other = MasterKeys::open(&dir.path().join("other").join("master.keys"), true).unwrap();
    assert_ne!(other.pseudonym_secret(), read.pseudonym_secret());
}

#[test]
fn an_exposed_missing_or_malformed_key_file_is_refused_with_the_reason() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.keys");
    let missing = MasterKeys::open(&path, false).unwrap_err().to_string();
    assert!(missing.contains("does not exist"), "{missing}");
    MasterKeys::open(&path, true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = MasterKeys::open(&path, false).unwrap_err().to_string();
    assert!(exposed.contains("chmod 600"), "{exposed}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (text, reason) in [
        ("hello\n", "not a Ward key file"),
        ("ward-master-keys 1\n", "holds no key"),
        ("ward-master-keys 1\nkey 1 abcd\n", "64 hex digits"),
        ("ward-master-keys 1\nkey 0 00\n", "positive version"),
    ] {
        std::fs::write(&path, text).unwrap();
        let error = MasterKeys::open(&path, false).unwrap_err().to_string();
        assert!(error.contains(reason), "{text:?}: {error}");
    }
}

#[tokio::test]
async fn a_data_folder_opened_with_another_key_file_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("one.keys");
    {
        let (table, _) = open_in(dir.path(), &key_file);
        table
            .put(
                item("PAT#9", "A", &[("secret", Value::s("kept"))]),
                Condition::None,
            )
            .await
            .unwrap();
    }
    // The same key file: readable after reopening.
    {
        let (table, _) = open_in(dir.path(), &key_file);
        let read = table.get(&Key::new("PAT#9", "A")).await.unwrap().unwrap();
        assert_eq!(read["secret"], Value::s("kept"));
    }
    let (table, _) = open_in(dir.path(), &dir.path().join("other.keys"));
    let message = integrity_error(table.get(&Key::new("PAT#9", "A")).await);
    assert!(message.contains("data key"), "{message}");
}

#[tokio::test]
async fn after_a_rotation_new_keys_use_the_new_version_and_old_data_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.keys");
    {
        let (table, _) = open_in(dir.path(), &key_file);
        table
            .put(
                item("PAT#10", "A", &[("secret", Value::s("before"))]),
                Condition::None,
            )
            .await
            .unwrap();
    }
    let mut master = MasterKeys::open(&key_file, false).unwrap();
    let pseudonym_secret = master.pseudonym_secret();
    assert_eq!(master.rotate().unwrap(), 2);
    let reread = MasterKeys::open(&key_file, false).unwrap();
    assert_eq!(reread.versions(), vec![1, 2]);
    // Rotation leaves pseudonyms (where items live) as they were.
    assert_eq!(reread.pseudonym_secret(), pseudonym_secret);
    assert_eq!(reread.current_version(), 2);
    let (table, _) = open_in(dir.path(), &key_file);
    table
        .put(
            item("PAT#11", "A", &[("secret", Value::s("after"))]),
            Condition::None,
        )
        .await
        .unwrap();
    for (pk, expected) in [("PAT#10", "before"), ("PAT#11", "after")] {
        let read = table.get(&Key::new(pk, "A")).await.unwrap().unwrap();
        assert_eq!(read["secret"], Value::s(expected));
    }
    drop(table);
    // Each patient's partition records its data key by id; in the key store, the first
    // patient's is wrapped under version 1, the second's under 2.
    let data = ward_store_embedded::EmbeddedTable::open(
        &dir.path().join("ward.redb"),
        &ward_store_embedded::EmbeddedOptions::default(),
    )
    .unwrap();
    let store = ward_store_embedded::EmbeddedTable::open(
        &dir.path().join("keys.redb"),
        &ward_store_embedded::EmbeddedOptions::default(),
    )
    .unwrap();
    for (pk, version) in [("PAT#10", 1), ("PAT#11", 2)] {
        let reference = data
            .get(&Key::new(pk, ward_protect::DATA_KEY_SK))
            .await
            .unwrap()
            .expect("the partition records its data key");
        let id = reference["keyId"].as_s().unwrap();
        let key = store
            .get(&Key::new("DEK#PROV001", format!("KEY#{id}")))
            .await
            .unwrap()
            .expect("the recorded key is in the key store");
        assert_eq!(key["kekVersion"].as_i64(), Some(version), "{pk}");
    }
    // No patient identifier in the key store's keys.
    let page = store
        .query(ward_store::Query::partition(
            "DEK#PROV001",
            ward_store::SkCondition::Any,
        ))
        .await
        .unwrap();
    assert!(!page.items.is_empty());
    for item in &page.items {
        let sk = item["SK"].as_s().unwrap();
        assert!(!sk.contains("PAT#1"), "{sk}");
    }
}

#[tokio::test]
async fn two_writers_of_one_key_store_whose_new_ids_meet_both_get_keys_of_their_own() {
    use std::sync::Arc;
    use ward_protect::DataKeys;
    use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};
    let dir = tempfile::tempdir().unwrap();
    // Two processes over one key store, as the AWS shape's workers and API share one.
    let store: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("keys.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    let master = Arc::new(MasterKeys::open(&dir.path().join("master.keys"), true).unwrap());
    let first = DataKeys::new(Arc::clone(&store), master.clone());
    let second = DataKeys::new(Arc::clone(&store), master.clone());
    let taken: Vec<u64> = first
        .fresh("PROV001", 16)
        .await
        .unwrap()
        .iter()
        .map(|key| key.id)
        .collect();
    // The second writer's next ids are the first one's.
    second.continue_ids_after(taken[0] - 1);
    let given: Vec<u64> = second
        .fresh("PROV001", 16)
        .await
        .expect("a pool that meets another writer's ids is made again past them")
        .iter()
        .map(|key| key.id)
        .collect();
    assert_eq!(given.len(), 16);
    assert!(
        given.iter().all(|id| !taken.contains(id)),
        "{given:?} / {taken:?}"
    );
    // Every key either writer gave out is in the store, under the id it was given.
    let reader = DataKeys::new(store, master);
    for id in taken.iter().chain(&given) {
        reader.by_id("PROV001", *id).await.unwrap();
    }
}

//! Committed items survive closing and reopening the file; a second opener is refused; a
//! full scan pages through everything stored.

use ward_store::{Condition, Item, Key, PK, SK, Table, Value};
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable, OpenError};

#[tokio::test]
async fn committed_items_survive_reopen_and_the_file_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.redb");
    let table = EmbeddedTable::open(&path, &EmbeddedOptions::default()).unwrap();
    let mut item = Item::new();
    item.insert(PK.into(), Value::s("P"));
    item.insert(SK.into(), Value::s("S"));
    table.put(item.clone(), Condition::None).await.unwrap();
    let second = EmbeddedTable::open(&path, &EmbeddedOptions::default());
    assert!(matches!(second, Err(OpenError::InUse { .. })), "{second:?}");
    drop(table);
    let reopened = EmbeddedTable::open(&path, &EmbeddedOptions::default()).unwrap();
    assert_eq!(reopened.get(&Key::new("P", "S")).await.unwrap(), Some(item));
}

fn with_dictionary(names: &[&'static str]) -> EmbeddedOptions {
    EmbeddedOptions {
        dictionary: ward_store_embedded::AttributeDictionary::new(names).unwrap(),
        ..EmbeddedOptions::default()
    }
}

#[tokio::test]
async fn a_file_keeps_its_attribute_dictionary_and_may_only_extend_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.redb");
    let mut item = Item::new();
    item.insert(PK.into(), Value::s("P"));
    item.insert(SK.into(), Value::s("S"));
    item.insert("entity".into(), Value::s("VISIT"));
    item.insert("status".into(), Value::s("DONE"));
    let table = EmbeddedTable::open(&path, &with_dictionary(&["entity", "status"])).unwrap();
    table.put(item.clone(), Condition::None).await.unwrap();
    drop(table);
    // Another order, or fewer names, would read the stored codes wrongly: refused.
    for other in [&["status", "entity"][..], &["entity"][..], &[][..]] {
        let refused = EmbeddedTable::open(&path, &with_dictionary(other));
        match refused {
            Err(OpenError::Dictionary { why, .. }) => assert!(!why.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    // Names appended at the end leave the stored codes as they were.
    let extended =
        EmbeddedTable::open(&path, &with_dictionary(&["entity", "status", "version"])).unwrap();
    assert_eq!(
        extended.get(&Key::new("P", "S")).await.unwrap(),
        Some(item.clone())
    );
    drop(extended);
    let shorter = EmbeddedTable::open(&path, &with_dictionary(&["entity", "status"]));
    assert!(
        matches!(shorter, Err(OpenError::Dictionary { .. })),
        "{shorter:?}"
    );
}

#[tokio::test]
async fn a_scan_pages_through_every_stored_item_in_key_order_expired_ones_too() {
    let dir = tempfile::tempdir().unwrap();
    let table =
        EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default()).unwrap();
    let mut written = Vec::new();
    for (pk, sk) in [("B", "2"), ("A", "1"), ("B", "1"), ("C", "9"), ("A", "2")] {
        let mut item = Item::new();
        item.insert(PK.into(), Value::s(pk));
        item.insert(SK.into(), Value::s(sk));
        if (pk, sk) == ("B", "1") {
            // Expired long ago: reads skip it, a scan (of what is stored) does not.
            item.insert(ward_store::EXPIRES_AT.into(), Value::n(1));
        }
        table.put(item, Condition::None).await.unwrap();
        written.push((pk.to_owned(), sk.to_owned()));
    }
    assert_eq!(table.get(&Key::new("B", "1")).await.unwrap(), None);
    written.sort();
    let mut scanned = Vec::new();
    let mut after: Option<Key> = None;
    let mut pages = 0;
    loop {
        let (items, next) = table.scan(after.as_ref(), 2).unwrap();
        assert!(items.len() <= 2);
        pages += 1;
        for item in &items {
            let key = Key::of(item).unwrap();
            scanned.push((key.pk, key.sk));
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(scanned, written);
    assert_eq!(pages, 3);
}

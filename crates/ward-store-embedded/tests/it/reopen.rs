//! Committed items survive closing and reopening the file; a second opener is refused.

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

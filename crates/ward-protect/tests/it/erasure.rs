//! Erasing a partition: a patient's partition takes its data keys with it, so a copy of
//! its items made before (a backup) reads as an integrity error, never as data; a shared
//! partition's erasure leaves the provider's key, and every other partition, readable.

use std::sync::Arc;

use ward_protect::{ProtectedTable, Protection, Scope};
use ward_store::{Condition, Key, Query, SkCondition, Table, Value};

use super::{item, stores_in};

/// `PAT#…` partitions are each a patient's own; every other is the provider's.
fn protection() -> Protection {
    Protection::new(["secret"], |pk| {
        if pk.starts_with("PAT#") {
            Scope::new("PROV001", pk)
        } else {
            Scope::new("PROV001", "PROV#PROV001")
        }
    })
}

async fn raw_partition(inner: &dyn Table, pk: &str) -> Vec<ward_store::Item> {
    inner
        .query(Query::partition(pk, SkCondition::Any))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn an_erased_patient_partition_cannot_be_read_again_from_any_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, keys) = stores_in(dir.path(), &dir.path().join("k").join("master.keys"));
    let table = ProtectedTable::new(Arc::clone(&inner), keys, protection());
    for pk in ["PAT#1", "PAT#2", "LIST#1"] {
        for sk in ["A", "B"] {
            table
                .put(
                    item(pk, sk, &[("secret", Value::s(format!("{pk} {sk} notes")))]),
                    Condition::None,
                )
                .await
                .unwrap();
        }
    }
    // The backup: the erased patient's items as stored (its key record too).
    let backup = raw_partition(&*inner, "PAT#1").await;
    assert_eq!(backup.len(), 3, "two items and the key record");

    assert_eq!(table.erase_partition("PAT#1").await.unwrap(), 3);
    assert!(raw_partition(&*inner, "PAT#1").await.is_empty());
    // Run again (an interrupted erasure): nothing left, no error.
    assert_eq!(table.erase_partition("PAT#1").await.unwrap(), 0);

    // The backup restored: its items are there, and none reads.
    for stored in backup {
        inner.put(stored, Condition::None).await.unwrap();
    }
    for sk in ["A", "B"] {
        let error = table
            .get(&Key::new("PAT#1", sk))
            .await
            .expect_err("an erased patient's item read as data");
        assert!(
            error
                .to_string()
                .contains("data key the key store does not hold"),
            "{error}"
        );
    }
    // Another patient and the provider's partitions read as before.
    for pk in ["PAT#2", "LIST#1"] {
        let read = table.get(&Key::new(pk, "A")).await.unwrap().unwrap();
        assert_eq!(read["secret"], Value::s(format!("{pk} A notes")));
    }

    // A shared partition is only deleted: the provider's key stays, and its other
    // partitions (sealed with it) still read.
    table
        .put(
            item("LIST#2", "A", &[("secret", Value::s("kept"))]),
            Condition::None,
        )
        .await
        .unwrap();
    assert_eq!(table.erase_partition("LIST#1").await.unwrap(), 2);
    let read = table.get(&Key::new("LIST#2", "A")).await.unwrap().unwrap();
    assert_eq!(read["secret"], Value::s("kept"));
    assert!(table.get(&Key::new("LIST#1", "A")).await.unwrap().is_none());
}

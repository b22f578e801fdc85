//! The ingest's path through the protected table: items prepared on the parser's thread
//! ([`Table::prepare`]) are sealed like any other, their preparation never stored, and an
//! item changed after it was prepared is checked again; data keys are made ahead of need,
//! and for the partitions a caller says it will write ([`Table::expect_writes`]).

use std::collections::HashSet;

use ward_protect::SEALED_ATTRIBUTE;
use ward_store::{Condition, Key, PutOutcome, Table, Value};

use super::{item, open, stores_in};

#[tokio::test]
async fn an_item_prepared_ahead_is_sealed_like_any_other_and_its_preparation_is_never_stored() {
    let opened = open();
    let plain = item(
        "PAT#1",
        "VISIT#1",
        &[
            ("secret", Value::s("Annabel Quist")),
            ("text", Value::s("seen for a sprained wrist")),
            ("open", Value::s("visible")),
        ],
    );
    let mut prepared = plain.clone();
    opened.table.prepare(&mut prepared);
    assert!(
        !prepared.contains_key("secret") && !prepared.contains_key("text"),
        "the protected values are taken out when prepared"
    );
    assert_eq!(prepared["open"], Value::s("visible"));
    // Through the ingest's write, and through a single put.
    let outcomes = opened
        .table
        .put_many_if_absent(vec![prepared])
        .await
        .unwrap();
    assert!(matches!(outcomes[..], [PutOutcome::Written]));
    let mut single = item("PAT#2", "VISIT#1", &[("secret", Value::s("Otto Quist"))]);
    opened.table.prepare(&mut single);
    opened.table.put(single, Condition::None).await.unwrap();

    let key = Key::new("PAT#1", "VISIT#1");
    assert_eq!(opened.table.get(&key).await.unwrap().unwrap(), plain);
    let second = opened
        .table
        .get(&Key::new("PAT#2", "VISIT#1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second["secret"], Value::s("Otto Quist"));
    let stored = opened.inner.get(&key).await.unwrap().unwrap();
    assert!(ward_protect::envelope::is_sealed(&stored[SEALED_ATTRIBUTE]));
    let names: Vec<&str> = stored.keys().map(|name| name.as_ref()).collect();
    assert_eq!(
        names,
        [SEALED_ATTRIBUTE, "PK", "SK", "open"],
        "stored: the sealed value, the key and what is not protected"
    );
    drop(opened.table);
    drop(opened.inner);
    let bytes = std::fs::read(opened.dir.path().join("ward.redb")).unwrap();
    for plaintext in [&b"Quist"[..], b"sprained"] {
        assert!(
            !bytes
                .windows(plaintext.len())
                .any(|window| window == plaintext),
            "the store file holds {}",
            String::from_utf8_lossy(plaintext)
        );
    }
}

#[tokio::test]
async fn a_prepared_item_given_a_protected_attribute_after_is_refused_and_nothing_is_stored() {
    let opened = open();
    let mut late = item("PAT#1", "VISIT#1", &[("secret", Value::s("Annabel Quist"))]);
    opened.table.prepare(&mut late);
    late.insert("text".into(), Value::s("a note added after"));
    let refused = opened.table.put_many_if_absent(vec![late]).await;
    let message = format!("{:?}", refused.expect_err("refused"));
    assert!(message.contains("prepared"), "{message}");
    let key = Key::new("PAT#1", "VISIT#1");
    assert_eq!(opened.inner.get(&key).await.unwrap(), None);

    // One given an attribute that is not protected is checked again and written.
    let mut added = item("PAT#1", "VISIT#1", &[("secret", Value::s("Annabel Quist"))]);
    opened.table.prepare(&mut added);
    added.insert("open".into(), Value::s("added after"));
    opened.table.put(added, Condition::None).await.unwrap();
    let read = opened.table.get(&key).await.unwrap().unwrap();
    assert_eq!(read["secret"], Value::s("Annabel Quist"));
    assert_eq!(read["open"], Value::s("added after"));
}

#[tokio::test]
async fn keys_are_made_ahead_only_when_the_pool_runs_low_and_each_is_given_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, keys) = stores_in(dir.path(), &dir.path().join("keys").join("master.keys"));
    let made = |provider: &'static str| {
        let keys = std::sync::Arc::clone(&keys);
        async move { keys.versions(provider).await.unwrap().values().sum::<u64>() }
    };
    let mut given = keys.fresh("PROV001", 1).await.unwrap();
    assert_eq!(made("PROV001").await, 16, "the first pool");
    keys.make_ahead("PROV001").await.unwrap();
    assert_eq!(made("PROV001").await, 16, "15 of 16 left: not low");
    given.extend(keys.fresh("PROV001", 8).await.unwrap());
    keys.make_ahead("PROV001").await.unwrap();
    assert_eq!(
        made("PROV001").await,
        48,
        "7 left: the next pool, twice the size"
    );
    given.extend(keys.fresh("PROV001", 39).await.unwrap());
    assert_eq!(made("PROV001").await, 48, "taken from what was made ahead");
    let ids: HashSet<u64> = given.iter().map(|key| key.id).collect();
    assert_eq!(ids.len(), 48, "each key given out once");
    keys.make_ahead("PROV002").await.unwrap();
    assert_eq!(made("PROV002").await, 0, "no pool, nothing made ahead");
}

#[tokio::test]
async fn partitions_expected_ahead_have_their_keys_made_then_and_their_writes_make_none() {
    let opened = open();
    let keys = std::sync::Arc::clone(opened.table.keys());
    let made = || {
        let keys = std::sync::Arc::clone(&keys);
        async move {
            keys.versions("PROV001")
                .await
                .unwrap()
                .values()
                .sum::<u64>()
        }
    };
    // PAT#0 has its key recorded already, by an earlier write: it needs none.
    opened
        .table
        .put(
            item("PAT#0", "VISIT#0", &[("secret", Value::s("Old Quist"))]),
            Condition::None,
        )
        .await
        .unwrap();
    let (made_before, ready_before) = (made().await, keys.ready("PROV001").await);
    let partitions: Vec<String> = (0..100).map(|i| format!("PAT#{i}")).collect();
    opened.table.expect_writes(partitions.clone()).await;
    assert_eq!(made().await, made_before + 99, "a key for each unrecorded");
    assert_eq!(keys.ready("PROV001").await, ready_before + 99);

    let mut items = Vec::new();
    for (i, pk) in partitions.iter().enumerate() {
        for visit in ["VISIT#1", "VISIT#2"] {
            let mut visit = item(pk, visit, &[("secret", Value::s(format!("Quist {i}")))]);
            opened.table.prepare(&mut visit);
            items.push(visit);
        }
    }
    let outcomes = opened.table.put_many_if_absent(items).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, PutOutcome::Written)));
    assert_eq!(made().await, made_before + 99, "the write made no key");
    assert_eq!(keys.ready("PROV001").await, ready_before, "it took 99");
    let mut ids = HashSet::new();
    for (i, pk) in partitions.iter().enumerate() {
        let read = opened
            .table
            .get(&Key::new(pk.clone(), "VISIT#2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read["secret"], Value::s(format!("Quist {i}")));
        let stored = opened
            .inner
            .get(&Key::new(pk.clone(), "VISIT#1"))
            .await
            .unwrap()
            .unwrap();
        let Value::B(sealed) = &stored[SEALED_ATTRIBUTE] else {
            panic!("not sealed: {stored:?}");
        };
        ids.insert(ward_protect::envelope::key_id(sealed).unwrap());
    }
    assert_eq!(ids.len(), 100, "a key of its own per patient");
    // Told again, or of recorded partitions only, the table makes nothing more.
    opened.table.expect_writes(partitions).await;
    assert_eq!(made().await, made_before + 99);
}

#[tokio::test]
async fn a_partition_found_unrecorded_ahead_and_recorded_by_another_writer_meanwhile_stays_readable()
 {
    let dir = tempfile::tempdir().unwrap();
    let (inner, keys) = stores_in(dir.path(), &dir.path().join("keys").join("master.keys"));
    let protection =
        || ward_protect::Protection::new(["secret"], |pk| ward_protect::Scope::new("PROV001", pk));
    let first = ward_protect::ProtectedTable::new(
        std::sync::Arc::clone(&inner),
        std::sync::Arc::clone(&keys),
        protection(),
    );
    let second = ward_protect::ProtectedTable::new(
        std::sync::Arc::clone(&inner),
        std::sync::Arc::clone(&keys),
        protection(),
    );
    first.expect_writes(vec!["PAT#1".into()]).await;
    // Another writer keys and records the patient between the hint and the write.
    second
        .put(
            item("PAT#1", "A", &[("secret", Value::s("second's"))]),
            Condition::None,
        )
        .await
        .unwrap();
    first
        .put_many_if_absent(vec![item("PAT#1", "B", &[("secret", Value::s("first's"))])])
        .await
        .unwrap();
    first
        .put(
            item("PAT#1", "C", &[("secret", Value::s("first's later"))]),
            Condition::None,
        )
        .await
        .unwrap();
    let key_of = |sk: &'static str| {
        let inner = std::sync::Arc::clone(&inner);
        async move {
            let stored = inner.get(&Key::new("PAT#1", sk)).await.unwrap().unwrap();
            let Value::B(sealed) = &stored[SEALED_ATTRIBUTE] else {
                panic!("not sealed: {stored:?}");
            };
            ward_protect::envelope::key_id(sealed).unwrap()
        }
    };
    assert_ne!(
        key_of("A").await,
        key_of("B").await,
        "B sealed with its own"
    );
    assert_eq!(
        key_of("C").await,
        key_of("A").await,
        "then the recorded key, the first record having won"
    );
    for table in [&first, &second] {
        for (sk, text) in [("A", "second's"), ("B", "first's"), ("C", "first's later")] {
            let read = table.get(&Key::new("PAT#1", sk)).await.unwrap().unwrap();
            assert_eq!(read["secret"], Value::s(text));
        }
    }
}

//! Two writers give one new patient a data key at the same moment (two processes' tables
//! over one store, here two protected tables over one inner table and one key store): the
//! first record wins, what the other sealed stays readable, the other writer seals with
//! the recorded key from then on, and an erasure destroys both keys. Made deterministic by
//! a table that runs the first writer's write inside the second's, after the second chose
//! its key and before it records it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use ward_protect::{DATA_KEY_SK, ProtectedTable, Protection, SEALED_ATTRIBUTE, Scope};
use ward_store::{
    Condition, Item, Key, Page, PutOutcome, Query, SkCondition, StoreError, Table, Value, WriteOp,
};

use super::{item, stores_in};

/// The inner table, with a hook run once before the next `put_many_if_absent`.
struct Interleaved {
    inner: Arc<dyn Table>,
    hook: Mutex<Option<BoxFuture<'static, ()>>>,
}

#[async_trait]
impl Table for Interleaved {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError> {
        self.inner.batch_get(keys).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.inner.transact_write(ops).await
    }
    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError> {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook.await;
        }
        self.inner.put_many_if_absent(items).await
    }
}

fn sealed_key_id(item: &Item) -> u64 {
    match &item[SEALED_ATTRIBUTE] {
        Value::B(sealed) => ward_protect::envelope::key_id(sealed).unwrap(),
        other => panic!("not sealed: {other:?}"),
    }
}

#[tokio::test]
async fn two_writers_keying_one_new_patient_at_once_both_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, keys) = stores_in(dir.path(), &dir.path().join("k").join("master.keys"));
    let protection = || Protection::new(["secret"], |pk| Scope::new("PROV001", pk));
    let first = Arc::new(ProtectedTable::new(
        Arc::clone(&inner),
        Arc::clone(&keys),
        protection(),
    ));
    let interleaved = Arc::new(Interleaved {
        inner: Arc::clone(&inner),
        hook: Mutex::new(None),
    });
    let second = ProtectedTable::new(
        Arc::clone(&interleaved) as Arc<dyn Table>,
        Arc::clone(&keys),
        protection(),
    );
    // The second writer has chosen a fresh key for the new patient when the first one's
    // write (its own fresh key and record) lands.
    let racer = Arc::clone(&first);
    *interleaved.hook.lock().unwrap() = Some(Box::pin(async move {
        let outcomes = racer
            .put_many_if_absent(vec![item("PAT#1", "A", &[("secret", Value::s("first's"))])])
            .await
            .unwrap();
        assert_eq!(outcomes, [PutOutcome::Written]);
    }));
    let outcomes = second
        .put_many_if_absent(vec![item(
            "PAT#1",
            "B",
            &[("secret", Value::s("second's"))],
        )])
        .await
        .unwrap();
    assert_eq!(outcomes, [PutOutcome::Written]);

    let raw = |sk: &'static str| {
        let inner = Arc::clone(&inner);
        async move { inner.get(&Key::new("PAT#1", sk)).await.unwrap().unwrap() }
    };
    let recorded = raw(DATA_KEY_SK).await;
    let recorded_id = u64::from_str_radix(recorded["keyId"].as_s().unwrap(), 16).unwrap();
    let (a, b) = (raw("A").await, raw("B").await);
    assert_eq!(sealed_key_id(&a), recorded_id, "the first record wins");
    assert_ne!(
        sealed_key_id(&b),
        recorded_id,
        "the second sealed with its own key"
    );
    // Both read, through either table.
    for table in [&*first, &second] {
        for (sk, text) in [("A", "first's"), ("B", "second's")] {
            let read = table.get(&Key::new("PAT#1", sk)).await.unwrap().unwrap();
            assert_eq!(read["secret"], Value::s(text));
        }
    }
    // From now on the second writer seals the patient with the recorded key.
    second
        .put(
            item("PAT#1", "C", &[("secret", Value::s("later"))]),
            Condition::None,
        )
        .await
        .unwrap();
    assert_eq!(sealed_key_id(&raw("C").await), recorded_id);
    // An erasure destroys both keys: a copy of either value no longer opens.
    let (a, b) = (raw("A").await, raw("B").await);
    assert_eq!(first.erase_partition("PAT#1").await.unwrap(), 4);
    assert!(
        inner
            .query(Query::partition("PAT#1", SkCondition::Any))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    for copy in [a, b] {
        inner.put(copy.clone(), Condition::None).await.unwrap();
        let sk = copy["SK"].as_s().unwrap().to_owned();
        let error = first
            .get(&Key::new("PAT#1", sk.clone()))
            .await
            .expect_err("an erased value read");
        assert!(
            error
                .to_string()
                .contains("data key the key store does not hold"),
            "{sk}: {error}"
        );
    }
}

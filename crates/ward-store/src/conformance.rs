//! The conformance suite: every [`Table`] adapter runs these cases unchanged.
//!
//! An adapter's test binary invokes [`table_conformance_suite!`](crate::table_conformance_suite)
//! with an async factory returning `(table, guard)`; the guard (a temp dir, a server
//! handle) lives as long as the case. Every case writes under its own random partition
//! prefix, so a suite can share one server (DynamoDB Local with `-sharedDb`). A case
//! panics, with the contract it checks, when an adapter breaks it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{
    Condition, Cursor, EXPIRES_AT, Item, Key, Order, PK, PutOutcome, Query, SK, SkCondition,
    StoreError, Table, VERSION, Value, WriteOp,
};

/// Generates one `#[tokio::test]` per conformance case for an adapter.
///
/// ```ignore
/// ward_store::table_conformance_suite!(async { (MyTable::open(...), guard) });
/// ```
#[macro_export]
macro_rules! table_conformance_suite {
    ($factory:expr) => {
        $crate::table_conformance_suite!(@cases $factory;
            get_absent_is_none,
            put_then_get_round_trips_every_value_kind,
            put_refuses_items_without_keys,
            put_if_not_exists_returns_the_existing_item,
            version_condition_guards_updates,
            delete_honours_conditions,
            query_applies_every_sort_key_condition,
            query_pages_with_cursors_in_both_orders,
            query_refuses_a_cursor_from_another_partition,
            query_stays_inside_its_partition,
            index_is_sparse_ordered_and_follows_updates,
            batch_get_returns_existing_items_only,
            transaction_is_all_or_nothing,
            transaction_enforces_limits,
            put_many_if_absent_reports_each_outcome,
            put_many_if_absent_fills_the_gaps_between_stored_items,
            expired_items_are_absent,
            erase_partition_removes_exactly_one_partition,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (table, _guard) = $factory.await;
                $crate::conformance::$case(&table).await;
            }
        )*
    };
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A partition key no other case uses.
fn fresh_pk(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("TEST#{nanos:x}-{n}#{label}")
}

fn item(pk: &str, sk: &str, attributes: &[(&str, Value)]) -> Item {
    let mut item: Item = attributes
        .iter()
        .map(|(name, value)| ((*name).to_owned().into(), value.clone()))
        .collect();
    item.insert(PK.into(), Value::s(pk));
    item.insert(SK.into(), Value::s(sk));
    item
}

fn sks(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|item| item[SK].as_s().unwrap_or_default().to_owned())
        .collect()
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

async fn query_all(table: &dyn Table, mut query: Query) -> Vec<Item> {
    let mut items = Vec::new();
    loop {
        let page = table.query(query.clone()).await.expect("query");
        assert!(page.items.len() <= query.limit, "a page exceeds its limit");
        items.extend(page.items);
        match page.next {
            Some(cursor) => query.cursor = Some(cursor),
            None => return items,
        }
    }
}

/// `get` of a key never written is `None`.
pub async fn get_absent_is_none(table: &dyn Table) {
    let key = Key::new(fresh_pk("absent"), "X");
    assert_eq!(table.get(&key).await.unwrap(), None);
}

/// Every value kind survives a put and a get unchanged.
pub async fn put_then_get_round_trips_every_value_kind(table: &dyn Table) {
    let pk = fresh_pk("kinds");
    let mut map = BTreeMap::new();
    map.insert(
        "inner".to_owned(),
        Value::L(vec![Value::n(1), Value::s("two")]),
    );
    let written = item(
        &pk,
        "A",
        &[
            ("text", Value::s("héllo, \"world\"\n")),
            ("number", Value::N("-12.5".into())),
            ("bytes", Value::B(vec![0, 255, 7])),
            ("flag", Value::Bool(true)),
            ("nothing", Value::Null),
            ("list", Value::L(vec![Value::Bool(false), Value::s("")])),
            ("map", Value::M(map)),
        ],
    );
    table.put(written.clone(), Condition::None).await.unwrap();
    let read = table.get(&Key::new(&pk, "A")).await.unwrap();
    assert_eq!(read, Some(written), "an item reads back exactly as written");
}

/// A put without string PK and SK is an invalid request, not a write.
pub async fn put_refuses_items_without_keys(table: &dyn Table) {
    let mut no_sk = Item::new();
    no_sk.insert(PK.into(), Value::s(fresh_pk("nokey")));
    let result = table.put(no_sk, Condition::None).await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "{result:?}"
    );
    let mut numeric_pk = item("x", "y", &[]);
    numeric_pk.insert(PK.into(), Value::n(1));
    let result = table.put(numeric_pk, Condition::None).await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "{result:?}"
    );
}

/// `NotExists` writes once; the second put fails and returns the first item unchanged.
pub async fn put_if_not_exists_returns_the_existing_item(table: &dyn Table) {
    let pk = fresh_pk("once");
    let first = item(&pk, "A", &[("v", Value::n(1))]);
    table
        .put(first.clone(), Condition::NotExists)
        .await
        .unwrap();
    let second = item(&pk, "A", &[("v", Value::n(2))]);
    match table.put(second, Condition::NotExists).await {
        Err(StoreError::ConditionFailed { existing }) => {
            assert_eq!(
                existing.as_deref(),
                Some(&first),
                "the existing item comes back"
            );
        }
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    assert_eq!(table.get(&Key::new(&pk, "A")).await.unwrap(), Some(first));
}

/// `VersionIs` writes only over the named version; `Exists` only over an item.
pub async fn version_condition_guards_updates(table: &dyn Table) {
    let pk = fresh_pk("version");
    let v1 = item(&pk, "A", &[(VERSION, Value::n(1))]);
    let result = table.put(v1.clone(), Condition::Exists).await;
    assert!(matches!(
        result,
        Err(StoreError::ConditionFailed { existing: None })
    ));
    let result = table.put(v1.clone(), Condition::VersionIs(0)).await;
    assert!(matches!(
        result,
        Err(StoreError::ConditionFailed { existing: None })
    ));
    table.put(v1, Condition::NotExists).await.unwrap();
    let v2 = item(&pk, "A", &[(VERSION, Value::n(2))]);
    table
        .put(v2.clone(), Condition::VersionIs(1))
        .await
        .unwrap();
    let stale = item(
        &pk,
        "A",
        &[(VERSION, Value::n(2)), ("lost", Value::Bool(true))],
    );
    match table.put(stale, Condition::VersionIs(1)).await {
        Err(StoreError::ConditionFailed { existing }) => assert_eq!(existing.as_deref(), Some(&v2)),
        other => panic!("a stale version must fail, got {other:?}"),
    }
    table.put(v2.clone(), Condition::Exists).await.unwrap();
}

/// Deletes honour conditions; deleting an absent item unconditionally succeeds.
pub async fn delete_honours_conditions(table: &dyn Table) {
    let pk = fresh_pk("delete");
    let key = Key::new(&pk, "A");
    table.delete(&key, Condition::None).await.unwrap();
    let result = table.delete(&key, Condition::Exists).await;
    assert!(matches!(result, Err(StoreError::ConditionFailed { .. })));
    table
        .put(item(&pk, "A", &[(VERSION, Value::n(3))]), Condition::None)
        .await
        .unwrap();
    let result = table.delete(&key, Condition::VersionIs(2)).await;
    assert!(matches!(
        result,
        Err(StoreError::ConditionFailed { existing: Some(_) })
    ));
    table.delete(&key, Condition::VersionIs(3)).await.unwrap();
    assert_eq!(table.get(&key).await.unwrap(), None);
}

/// Each sort-key condition selects exactly the keys it names, in either order.
pub async fn query_applies_every_sort_key_condition(table: &dyn Table) {
    let pk = fresh_pk("conditions");
    for sk in ["A#1", "A#2", "A#3", "B#1", "B#2"] {
        table
            .put(item(&pk, sk, &[]), Condition::None)
            .await
            .unwrap();
    }
    let cases = [
        (SkCondition::Any, vec!["A#1", "A#2", "A#3", "B#1", "B#2"]),
        (SkCondition::Eq("A#2".into()), vec!["A#2"]),
        (
            SkCondition::BeginsWith("A#".into()),
            vec!["A#1", "A#2", "A#3"],
        ),
        (
            SkCondition::Between("A#2".into(), "B#1".into()),
            vec!["A#2", "A#3", "B#1"],
        ),
        (SkCondition::Lt("A#3".into()), vec!["A#1", "A#2"]),
        (SkCondition::Le("A#3".into()), vec!["A#1", "A#2", "A#3"]),
        (SkCondition::Gt("A#3".into()), vec!["B#1", "B#2"]),
        (SkCondition::Ge("A#3".into()), vec!["A#3", "B#1", "B#2"]),
        (SkCondition::BeginsWith("C".into()), vec![]),
    ];
    for (condition, expected) in cases {
        let query = Query::partition(&pk, condition.clone());
        let forward = table.query(query.clone()).await.unwrap();
        assert_eq!(sks(&forward.items), expected, "{condition:?} forward");
        let reverse = table
            .query(Query {
                order: Order::Reverse,
                ..query
            })
            .await
            .unwrap();
        let mut reversed: Vec<&str> = expected.clone();
        reversed.reverse();
        assert_eq!(sks(&reverse.items), reversed, "{condition:?} reverse");
    }
    let result = table
        .query(Query {
            limit: 0,
            ..Query::partition(&pk, SkCondition::Any)
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "limit 0 is refused"
    );
}

/// Paging with cursors returns every item once, in order, in both directions.
pub async fn query_pages_with_cursors_in_both_orders(table: &dyn Table) {
    let pk = fresh_pk("pages");
    let expected: Vec<String> = (0..23).map(|i| format!("S#{i:03}")).collect();
    for sk in &expected {
        table
            .put(item(&pk, sk, &[]), Condition::None)
            .await
            .unwrap();
    }
    let query = Query {
        limit: 5,
        ..Query::partition(&pk, SkCondition::BeginsWith("S#".into()))
    };
    assert_eq!(sks(&query_all(table, query.clone()).await), expected);
    let mut reversed = expected.clone();
    reversed.reverse();
    let reverse = Query {
        order: Order::Reverse,
        ..query.clone()
    };
    assert_eq!(sks(&query_all(table, reverse).await), reversed);
    let exact = Query { limit: 23, ..query };
    let page = table.query(exact.clone()).await.unwrap();
    assert_eq!(page.items.len(), 23);
    if let Some(cursor) = page.next {
        let rest = table
            .query(Query {
                cursor: Some(cursor),
                ..exact
            })
            .await
            .unwrap();
        assert!(rest.items.is_empty() && rest.next.is_none());
    }
}

/// A cursor minted for one partition cannot read another.
pub async fn query_refuses_a_cursor_from_another_partition(table: &dyn Table) {
    let mine = fresh_pk("mine");
    let theirs = fresh_pk("theirs");
    for pk in [&mine, &theirs] {
        for sk in ["A", "B", "C"] {
            table.put(item(pk, sk, &[]), Condition::None).await.unwrap();
        }
    }
    let page = table
        .query(Query {
            limit: 1,
            ..Query::partition(&theirs, SkCondition::Any)
        })
        .await
        .unwrap();
    let cursor = page.next.expect("more items follow");
    let result = table
        .query(Query {
            cursor: Some(cursor),
            ..Query::partition(&mine, SkCondition::Any)
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "{result:?}"
    );
    let forged = Cursor::decode("bm90IGEgY3Vyc29y");
    assert!(forged.is_err(), "garbage is not a cursor");
}

/// A partition whose key is a prefix of another's sees none of the other's items.
pub async fn query_stays_inside_its_partition(table: &dyn Table) {
    let pk = fresh_pk("P#1");
    let longer = format!("{pk}0");
    table
        .put(item(&pk, "A", &[]), Condition::None)
        .await
        .unwrap();
    table
        .put(item(&longer, "A", &[]), Condition::None)
        .await
        .unwrap();
    table
        .put(item(&longer, "B", &[]), Condition::None)
        .await
        .unwrap();
    let items = query_all(table, Query::partition(&pk, SkCondition::Any)).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0][PK].as_s(), Some(pk.as_str()));
}

/// Erasing a partition removes every one of its items (more than a page of them) and
/// nothing of a partition whose key it prefixes; erasing it again finds nothing.
pub async fn erase_partition_removes_exactly_one_partition(table: &dyn Table) {
    let pk = fresh_pk("P#1");
    let longer = format!("{pk}0");
    let items: Vec<Item> = (0..230)
        .map(|n| item(&pk, &format!("S#{n:04}"), &[("n", Value::n(n))]))
        .collect();
    table.put_many_if_absent(items).await.unwrap();
    table
        .put(item(&longer, "A", &[]), Condition::None)
        .await
        .unwrap();
    assert_eq!(table.erase_partition(&pk).await.unwrap(), 230);
    assert!(
        query_all(table, Query::partition(&pk, SkCondition::Any))
            .await
            .is_empty()
    );
    assert_eq!(
        query_all(table, Query::partition(&longer, SkCondition::Any))
            .await
            .len(),
        1
    );
    assert_eq!(table.erase_partition(&pk).await.unwrap(), 0);
}

/// Index queries see only items with both index attributes, ordered by the index sort
/// key, follow updates and deletes, and page with cursors.
pub async fn index_is_sparse_ordered_and_follows_updates(table: &dyn Table) {
    let pk = fresh_pk("base");
    let index_pk = fresh_pk("index");
    for (sk, index_sk) in [
        ("A", Some("3")),
        ("B", Some("1")),
        ("C", None),
        ("D", Some("2")),
    ] {
        let mut attributes = vec![("GSI1PK", Value::s(&index_pk))];
        if let Some(index_sk) = index_sk {
            attributes.push(("GSI1SK", Value::s(index_sk)));
        }
        table
            .put(item(&pk, sk, &attributes), Condition::None)
            .await
            .unwrap();
    }
    let query = Query {
        index: Some("GSI1"),
        limit: 1,
        ..Query::partition(&index_pk, SkCondition::Any)
    };
    let items = query_all(table, query.clone()).await;
    assert_eq!(
        sks(&items),
        vec!["B", "D", "A"],
        "index sort-key order, sparse"
    );
    // Moving an item within the index and deleting another.
    let moved = item(
        &pk,
        "B",
        &[("GSI1PK", Value::s(&index_pk)), ("GSI1SK", Value::s("9"))],
    );
    table.put(moved, Condition::None).await.unwrap();
    table
        .delete(&Key::new(&pk, "D"), Condition::None)
        .await
        .unwrap();
    let items = query_all(table, query.clone()).await;
    assert_eq!(sks(&items), vec!["A", "B"]);
    let between = Query {
        sk: SkCondition::Between("0".into(), "5".into()),
        ..query.clone()
    };
    assert_eq!(sks(&query_all(table, between).await), vec!["A"]);
    let result = table
        .query(Query {
            index: Some("NOPE"),
            ..query
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "unknown index"
    );
}

/// Batch get returns the items that exist and refuses more than 100 keys.
pub async fn batch_get_returns_existing_items_only(table: &dyn Table) {
    let pk = fresh_pk("batch");
    for sk in ["A", "B"] {
        table
            .put(item(&pk, sk, &[]), Condition::None)
            .await
            .unwrap();
    }
    let keys = vec![Key::new(&pk, "A"), Key::new(&pk, "B"), Key::new(&pk, "Z")];
    let mut found = sks(&table.batch_get(keys).await.unwrap());
    found.sort();
    assert_eq!(found, vec!["A", "B"]);
    let too_many: Vec<Key> = (0..101).map(|i| Key::new(&pk, format!("{i}"))).collect();
    let result = table.batch_get(too_many).await;
    assert!(matches!(result, Err(StoreError::InvalidRequest(_))));
}

/// A transaction whose condition fails writes nothing and names the failing operation.
pub async fn transaction_is_all_or_nothing(table: &dyn Table) {
    let pk = fresh_pk("tx");
    table
        .put(
            item(&pk, "TAKEN", &[(VERSION, Value::n(1))]),
            Condition::None,
        )
        .await
        .unwrap();
    let ops = vec![
        WriteOp::Put {
            item: item(&pk, "NEW", &[]),
            condition: Condition::NotExists,
        },
        WriteOp::Check {
            key: Key::new(&pk, "TAKEN"),
            condition: Condition::VersionIs(1),
        },
        WriteOp::Put {
            item: item(&pk, "TAKEN2", &[]),
            condition: Condition::Exists,
        },
    ];
    match table.transact_write(ops).await {
        Err(StoreError::TransactionCanceled { index }) => assert_eq!(index, 2),
        other => panic!("expected TransactionCanceled, got {other:?}"),
    }
    assert_eq!(
        table.get(&Key::new(&pk, "NEW")).await.unwrap(),
        None,
        "nothing written"
    );
    let ops = vec![
        WriteOp::Put {
            item: item(&pk, "NEW", &[]),
            condition: Condition::NotExists,
        },
        WriteOp::Delete {
            key: Key::new(&pk, "TAKEN"),
            condition: Condition::VersionIs(1),
        },
    ];
    table.transact_write(ops).await.unwrap();
    assert!(table.get(&Key::new(&pk, "NEW")).await.unwrap().is_some());
    assert_eq!(table.get(&Key::new(&pk, "TAKEN")).await.unwrap(), None);
}

/// Transactions refuse more than 100 operations and the same key twice.
pub async fn transaction_enforces_limits(table: &dyn Table) {
    let pk = fresh_pk("txlimits");
    let too_many: Vec<WriteOp> = (0..101)
        .map(|i| WriteOp::Put {
            item: item(&pk, &format!("{i}"), &[]),
            condition: Condition::None,
        })
        .collect();
    let result = table.transact_write(too_many).await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "{result:?}"
    );
    let twice = vec![
        WriteOp::Put {
            item: item(&pk, "A", &[]),
            condition: Condition::None,
        },
        WriteOp::Delete {
            key: Key::new(&pk, "A"),
            condition: Condition::None,
        },
    ];
    let result = table.transact_write(twice).await;
    assert!(
        matches!(result, Err(StoreError::InvalidRequest(_))),
        "{result:?}"
    );
    assert_eq!(table.get(&Key::new(&pk, "A")).await.unwrap(), None);
}

/// Each item is written once; existing ones come back unchanged, in the order given,
/// including a key repeated inside the same call.
pub async fn put_many_if_absent_reports_each_outcome(table: &dyn Table) {
    let pk = fresh_pk("many");
    let existing = item(&pk, "OLD", &[("v", Value::n(0))]);
    table.put(existing.clone(), Condition::None).await.unwrap();
    let first_new = item(&pk, "NEW", &[("v", Value::n(1))]);
    let items = vec![
        first_new.clone(),
        item(&pk, "OLD", &[("v", Value::n(2))]),
        item(&pk, "NEW", &[("v", Value::n(3))]),
        item(&pk, "OTHER", &[("v", Value::n(4))]),
    ];
    let outcomes = table.put_many_if_absent(items.clone()).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            PutOutcome::Written,
            PutOutcome::Exists(existing.clone()),
            PutOutcome::Exists(first_new.clone()),
            PutOutcome::Written,
        ]
    );
    let again = table.put_many_if_absent(items).await.unwrap();
    assert!(
        again.iter().all(|o| matches!(o, PutOutcome::Exists(_))),
        "re-sending writes nothing"
    );
    assert_eq!(
        table.get(&Key::new(&pk, "NEW")).await.unwrap(),
        Some(first_new)
    );
    assert!(
        table
            .put_many_if_absent(Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
}

/// New items land between stored ones (before, between and after them, in a long run
/// and one at a time), with their index entries; a stored item is kept, an expired one is
/// replaced (its index entry too), and neighbouring partitions are untouched.
pub async fn put_many_if_absent_fills_the_gaps_between_stored_items(table: &dyn Table) {
    let pk = fresh_pk("gaps");
    let neighbour = format!("{pk}0");
    let index_pk = fresh_pk("gaps-index");
    let indexed = |pk: &str, sk: &str, index_sk: &str, extra: &[(&str, Value)]| {
        let mut attributes = vec![
            ("GSI1PK", Value::s(&index_pk)),
            ("GSI1SK", Value::s(index_sk)),
        ];
        attributes.extend_from_slice(extra);
        item(pk, sk, &attributes)
    };
    let padding = Value::s("p".repeat(300));
    let mut stored = Vec::new();
    for sk in ["B", "D", "M050x", "Z"] {
        stored.push(indexed(&pk, sk, sk, &[("v", Value::s("old"))]));
    }
    stored.push(indexed(&neighbour, "A", "N", &[]));
    for old in &stored {
        table.put(old.clone(), Condition::None).await.unwrap();
    }
    let expired = indexed(
        &pk,
        "E",
        "E-old",
        &[(EXPIRES_AT, Value::n(now_seconds() - 10))],
    );
    table.put(expired, Condition::None).await.unwrap();

    let mut batch = vec![
        indexed(&pk, "G", "G", &[]),
        indexed(&pk, "A", "A", &[]),
        indexed(&pk, "C", "C", &[]),
        indexed(&pk, "D", "D", &[("v", Value::s("new"))]),
        indexed(&pk, "E", "E-new", &[]),
        indexed(&pk, "C", "C", &[("v", Value::s("again"))]),
    ];
    let run: Vec<String> = (0..120).map(|n| format!("M{n:03}")).collect();
    for sk in &run {
        batch.push(indexed(&pk, sk, sk, &[("pad", padding.clone())]));
    }
    let outcomes = table.put_many_if_absent(batch.clone()).await.unwrap();
    assert_eq!(outcomes.len(), batch.len());
    for (position, outcome) in outcomes.iter().enumerate() {
        let expected = match position {
            3 => PutOutcome::Exists(stored[1].clone()),
            5 => PutOutcome::Exists(batch[2].clone()),
            _ => PutOutcome::Written,
        };
        assert_eq!(*outcome, expected, "outcome of item {position}");
    }

    let mut expected_sks: Vec<String> = ["A", "B", "C", "D", "E", "G", "M050x", "Z"]
        .iter()
        .map(|sk| (*sk).to_owned())
        .chain(run.iter().cloned())
        .collect();
    expected_sks.sort();
    let items = query_all(table, Query::partition(&pk, SkCondition::Any)).await;
    assert_eq!(sks(&items), expected_sks, "the partition, in order");
    let by_sk = |sk: &str| {
        items
            .iter()
            .find(|item| item[SK].as_s() == Some(sk))
            .cloned()
    };
    assert_eq!(by_sk("D"), Some(stored[1].clone()), "a stored item is kept");
    assert_eq!(
        by_sk("C"),
        Some(batch[2].clone()),
        "the first of a repeated key"
    );
    assert_eq!(by_sk("M077"), Some(batch[6 + 77].clone()));
    let index_query = Query {
        index: Some("GSI1"),
        ..Query::partition(&index_pk, SkCondition::Any)
    };
    let in_index = query_all(table, index_query).await;
    let index_sks: Vec<&str> = in_index
        .iter()
        .map(|item| item["GSI1SK"].as_s().unwrap_or_default())
        .collect();
    let mut expected_index: Vec<String> = expected_sks
        .iter()
        .map(|sk| {
            if sk == "E" {
                "E-new".to_owned()
            } else {
                sk.clone()
            }
        })
        .chain(["N".to_owned()])
        .collect();
    expected_index.sort();
    assert_eq!(
        index_sks, expected_index,
        "one index entry per item, the expired item's old entry gone"
    );
    let neighbours = query_all(table, Query::partition(&neighbour, SkCondition::Any)).await;
    assert_eq!(
        neighbours,
        vec![stored[4].clone()],
        "the next partition is untouched"
    );
}

/// An expired item is absent for get, query, batch get and conditions.
pub async fn expired_items_are_absent(table: &dyn Table) {
    let pk = fresh_pk("ttl");
    let past = now_seconds() - 10;
    let future = now_seconds() + 3600;
    table
        .put(
            item(&pk, "OLD", &[(EXPIRES_AT, Value::n(past))]),
            Condition::None,
        )
        .await
        .unwrap();
    table
        .put(
            item(&pk, "LIVE", &[(EXPIRES_AT, Value::n(future))]),
            Condition::None,
        )
        .await
        .unwrap();
    assert_eq!(table.get(&Key::new(&pk, "OLD")).await.unwrap(), None);
    assert!(table.get(&Key::new(&pk, "LIVE")).await.unwrap().is_some());
    let items = query_all(table, Query::partition(&pk, SkCondition::Any)).await;
    assert_eq!(sks(&items), vec!["LIVE"]);
    let found = table
        .batch_get(vec![Key::new(&pk, "OLD"), Key::new(&pk, "LIVE")])
        .await
        .unwrap();
    assert_eq!(sks(&found), vec!["LIVE"]);
    table
        .put(
            item(&pk, "OLD", &[("v", Value::n(1))]),
            Condition::NotExists,
        )
        .await
        .expect("an expired item does not block a create");
}

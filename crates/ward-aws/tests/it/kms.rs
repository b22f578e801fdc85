//! AWS KMS as the key source: each provider's key-encryption key is a KMS data key whose
//! blob sits in the key store (DynamoDB Local here), made once, decrypted again only when
//! its cached copy expires, bound by its encryption context to its provider and version.

use std::sync::Arc;
use std::time::Duration;

use ward_aws::{AwsConnection, KmsKeys};
use ward_protect::{KeyEncryptionKeys, ProtectError};
use ward_store::{Condition, Key, Table, Value};
use ward_store_dynamodb::DynamoTable;

use crate::{moto_endpoint, unique};

struct Fixture {
    client: ward_aws::aws_sdk_kms::Client,
    key_id: String,
    store: Arc<dyn Table>,
}

async fn fixture() -> Fixture {
    let client = AwsConnection::local(&moto_endpoint()).kms().await;
    let key_id = client
        .create_key()
        .send()
        .await
        .expect("create a KMS key")
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    let endpoint = std::env::var("WARD_DYNAMODB_ENDPOINT")
        .expect("WARD_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts DynamoDB Local)");
    let store = DynamoTable::local(&endpoint, unique("ward-keys"));
    store.create_table_if_missing().await.unwrap();
    Fixture {
        client,
        key_id,
        store: Arc::new(store),
    }
}

impl Fixture {
    async fn open(&self, cache_for: Duration) -> KmsKeys {
        KmsKeys::open(
            self.client.clone(),
            &self.key_id,
            Arc::clone(&self.store),
            cache_for,
            true,
        )
        .await
        .expect("open the KMS key source")
    }
}

const AAD: &[u8] = b"ward/dek/v2|DEK#PROV001|KEY#1";

#[tokio::test]
async fn a_data_key_wrapped_under_kms_unwraps_after_a_restart_and_only_for_its_provider() {
    let fixture = fixture().await;
    let keys = fixture.open(Duration::from_secs(300)).await;
    let data_key = [7u8; 32];
    let (version, wrapped) = keys.wrap("PROV001", &data_key, AAD).await.unwrap();
    assert_eq!(version, 1);
    assert!(
        !wrapped.windows(32).any(|window| window == data_key),
        "the data key is stored wrapped"
    );

    // Another process (a new instance over the same key store and KMS key).
    let restarted = fixture.open(Duration::from_secs(300)).await;
    assert_eq!(
        restarted.unwrap("PROV001", 1, &wrapped, AAD).await.unwrap(),
        data_key
    );
    assert_eq!(
        restarted.pseudonym("PROV001", "MRN-1"),
        keys.pseudonym("PROV001", "MRN-1"),
        "pseudonyms are the same in every process"
    );
    assert_ne!(
        keys.pseudonym("PROV001", "MRN-1"),
        keys.pseudonym("PROV002", "MRN-1")
    );
    assert_eq!(keys.pseudonym_secret(), restarted.pseudonym_secret());

    // Another provider's key-encryption key does not open it (made for PROV002 first).
    keys.wrap("PROV002", &[1; 32], AAD).await.unwrap();
    let other = restarted.unwrap("PROV002", 1, &wrapped, AAD).await;
    assert!(
        matches!(other, Err(ProtectError::Integrity(_))),
        "{other:?}"
    );
    // Nor does it open bound to another item.
    let moved = restarted.unwrap("PROV001", 1, &wrapped, b"elsewhere").await;
    assert!(
        matches!(moved, Err(ProtectError::Integrity(_))),
        "{moved:?}"
    );
    // A version that was never made is named.
    let unknown = restarted.unwrap("PROV001", 9, &wrapped, AAD).await;
    assert!(
        matches!(unknown, Err(ProtectError::UnknownKeyVersion(9))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn kms_is_called_once_per_provider_and_cache_period_not_once_per_data_key() {
    let fixture = fixture().await;
    let keys = fixture.open(Duration::from_millis(1500)).await;
    let at_open = keys.kms_calls();
    assert_eq!(at_open, 1, "one GenerateDataKey for the pseudonym root");
    let mut wrapped = Vec::new();
    for n in 0..500u32 {
        let mut data_key = [0u8; 32];
        data_key[..4].copy_from_slice(&n.to_be_bytes());
        wrapped.push(keys.wrap("PROV001", &data_key, AAD).await.unwrap());
    }
    for (_, blob) in &wrapped {
        keys.unwrap("PROV001", 1, blob, AAD).await.unwrap();
    }
    assert_eq!(
        keys.kms_calls() - at_open,
        1,
        "500 wraps and 500 unwraps of one provider: one GenerateDataKey"
    );
    keys.wrap("PROV002", &[2; 32], AAD).await.unwrap();
    assert_eq!(keys.kms_calls() - at_open, 2, "a second provider: one more");

    // Once the cached key expires it is decrypted again (one Decrypt), not kept forever.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    keys.unwrap("PROV001", 1, &wrapped[0].1, AAD).await.unwrap();
    keys.unwrap("PROV001", 1, &wrapped[1].1, AAD).await.unwrap();
    assert_eq!(keys.kms_calls() - at_open, 3);
}

#[tokio::test]
async fn a_rotation_wraps_new_keys_under_the_next_version_everywhere_and_old_ones_still_unwrap() {
    let fixture = fixture().await;
    let keys = fixture.open(Duration::from_millis(1000)).await;
    let elsewhere = fixture.open(Duration::from_millis(1000)).await;
    let (old_version, old) = keys.wrap("PROV001", &[3; 32], AAD).await.unwrap();
    assert_eq!(old_version, 1);
    assert_eq!(keys.rotate().await.unwrap(), 2);
    assert_eq!(keys.current_version(), 2);
    let (version, new) = keys.wrap("PROV001", &[4; 32], AAD).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(keys.unwrap("PROV001", 1, &old, AAD).await.unwrap(), [3; 32]);
    assert_eq!(keys.unwrap("PROV001", 2, &new, AAD).await.unwrap(), [4; 32]);
    let wrong_version = keys.unwrap("PROV001", 1, &new, AAD).await;
    assert!(
        matches!(wrong_version, Err(ProtectError::Integrity(_))),
        "{wrong_version:?}"
    );

    // Another process takes the new version once its cache period has passed.
    assert_eq!(
        elsewhere.unwrap("PROV001", 2, &new, AAD).await.unwrap(),
        [4; 32]
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (seen, _) = elsewhere.wrap("PROV001", &[5; 32], AAD).await.unwrap();
    assert_eq!(seen, 2);
    // Two rotations at once both count.
    let (a, b) = tokio::join!(keys.rotate(), elsewhere.rotate());
    let mut made = [a.unwrap(), b.unwrap()];
    made.sort_unstable();
    assert_eq!(made, [3, 4]);
}

#[tokio::test]
async fn a_key_blob_changed_or_moved_to_another_provider_is_refused_by_kms() {
    let fixture = fixture().await;
    let keys = fixture.open(Duration::from_secs(300)).await;
    keys.wrap("PROV001", &[1; 32], AAD).await.unwrap();
    let blob_key = Key::new("KEK#PROV001", "V#00000001");
    let mut blob = fixture.store.get(&blob_key).await.unwrap().unwrap();
    // PROV001's blob put where PROV002's would be: its encryption context differs.
    blob.insert("PK".into(), Value::s("KEK#PROV002"));
    fixture
        .store
        .put(blob.clone(), Condition::None)
        .await
        .unwrap();
    let fresh = fixture.open(Duration::from_secs(300)).await;
    let moved = fresh.wrap("PROV002", &[2; 32], AAD).await;
    let Err(ProtectError::Integrity(message)) = moved else {
        panic!("expected an integrity error, got {moved:?}");
    };
    assert!(message.contains("AWS KMS refused"), "{message}");

    // One byte of PROV001's own blob flipped.
    let Some(Value::B(bytes)) = blob.get_mut("blob") else {
        panic!("no blob")
    };
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    blob.insert("PK".into(), Value::s("KEK#PROV001"));
    fixture.store.put(blob, Condition::None).await.unwrap();
    let flipped = fixture.open(Duration::from_secs(300)).await;
    let opened = flipped.unwrap("PROV001", 1, &[0; 60], AAD).await;
    let Err(ProtectError::Integrity(message)) = opened else {
        panic!("expected an integrity error, got {opened:?}");
    };
    assert!(message.contains("AWS KMS refused"), "{message}");
}

#[tokio::test]
async fn an_empty_key_store_is_refused_unless_the_deployment_is_new() {
    let fixture = fixture().await;
    let refused = KmsKeys::open(
        fixture.client.clone(),
        &fixture.key_id,
        Arc::clone(&fixture.store),
        Duration::from_secs(300),
        false,
    )
    .await;
    let Err(error) = refused else {
        panic!("an empty key store was accepted")
    };
    assert!(
        error.to_string().contains("the key store is empty"),
        "{error}"
    );
    assert!(
        fixture
            .store
            .get(&Key::new("KMS", "PSEUDONYM"))
            .await
            .unwrap()
            .is_none(),
        "nothing was made in it"
    );

    // A KMS key that does not exist: KMS's own answer, named.
    let missing = KmsKeys::open(
        fixture.client.clone(),
        "00000000-0000-0000-0000-000000000000",
        Arc::clone(&fixture.store),
        Duration::from_secs(300),
        true,
    )
    .await;
    let Err(error) = missing else {
        panic!("a missing KMS key was accepted")
    };
    assert!(error.to_string().contains("GenerateDataKey"), "{error}");
}

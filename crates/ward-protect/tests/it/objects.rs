//! Sealed objects: every size and range reads back exactly, no plaintext reaches the
//! disk, and a changed, cut, swapped or moved object is refused, never read as data.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use ward_protect::objects::{SEGMENT, plain_len, sealed_len};
use ward_protect::{DataKeys, MasterKeys, SealedObjects};
use ward_store::Table;
use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

struct Store {
    sealed: SealedObjects,
    root: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    std::fs::create_dir_all(&root).unwrap();
    let key_store: Arc<dyn Table> = Arc::new(
        EmbeddedTable::open(&dir.path().join("keys.redb"), &EmbeddedOptions::default()).unwrap(),
    );
    let master = MasterKeys::open(&dir.path().join("keys").join("master.keys"), true).unwrap();
    let keys = Arc::new(DataKeys::new(key_store, Arc::new(master)));
    let inner = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    Store {
        sealed: SealedObjects::new(inner, keys)
            .shredding(|path| path.parts().any(|part| part.as_ref() == "documents")),
        root,
        _dir: dir,
    }
}

/// Text that says where each of its bytes is, so a wrong range shows.
fn text(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"Patient Annabel Quist, note "[i % 28])
        .collect()
}

fn on_disk(store: &Store, path: &str) -> Vec<u8> {
    std::fs::read(store.root.join(path)).unwrap()
}

#[tokio::test]
async fn every_size_reads_back_whole_and_in_ranges_and_never_lies_about_its_size() {
    let store = store();
    // Past 16 segments a whole read takes more than one read of the file.
    let sizes = [0, 1, 27, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5];
    for len in sizes
        .into_iter()
        .chain([16 * SEGMENT - 9, 16 * SEGMENT, 40 * SEGMENT + 7])
    {
        let path = Path::from(format!("PROV001/completed/{len}.csv"));
        let plain = text(len);
        store
            .sealed
            .put(&path, PutPayload::from(plain.clone()))
            .await
            .unwrap();
        let sealed = on_disk(&store, path.as_ref());
        assert_eq!(sealed.len() as u64, sealed_len(len as u64), "{len}");
        assert_eq!(plain_len(sealed.len() as u64), Ok(len as u64));
        let back = store.sealed.get(&path).await.unwrap();
        assert_eq!(back.meta.size, len as u64);
        assert_eq!(back.bytes().await.unwrap().to_vec(), plain, "{len}");
        assert_eq!(store.sealed.head(&path).await.unwrap().size, len as u64);
        if len == 0 {
            continue;
        }
        let ranges = [0..1, 0..len as u64, (len as u64 / 2)..len as u64 + 100];
        for range in ranges.iter().cloned() {
            let got = store.sealed.get_range(&path, range.clone()).await.unwrap();
            let end = (range.end as usize).min(len);
            assert_eq!(
                got.to_vec(),
                plain[range.start as usize..end],
                "{len} {range:?}"
            );
        }
        let many = store
            .sealed
            .get_ranges(&path, &[0..1, (len as u64 - 1)..len as u64])
            .await
            .unwrap();
        assert_eq!(many[0].to_vec(), plain[..1]);
        assert_eq!(many[1].to_vec(), plain[len - 1..]);
    }
    // Listing shows the sizes the caller wrote.
    use futures::TryStreamExt as _;
    let listed: Vec<_> = store
        .sealed
        .list(Some(&Path::from("PROV001")))
        .try_collect()
        .await
        .unwrap();
    for meta in listed {
        let name = meta.location.filename().unwrap().trim_end_matches(".csv");
        assert_eq!(meta.size.to_string(), name);
    }
}

#[tokio::test]
async fn a_multipart_upload_in_odd_parts_is_the_same_object_and_no_plaintext_is_stored() {
    let store = store();
    let path = Path::from("PROV001/uploaded/big.csv");
    let plain = text(5 * SEGMENT + 123);
    let upload = store.sealed.put_multipart(&path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 7_777);
    for piece in plain.chunks(10_001) {
        writer.write(piece);
    }
    writer.finish().await.unwrap();
    let back = store
        .sealed
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(back.to_vec(), plain);
    let sealed = on_disk(&store, path.as_ref());
    assert!(
        !sealed.windows(7).any(|w| w == b"Annabel"),
        "plaintext on disk"
    );
    // Renamed to its next stage (same name), it still reads.
    let moved = Path::from("PROV001/processing/big.csv");
    store.sealed.rename(&path, &moved).await.unwrap();
    let back = store
        .sealed
        .get(&moved)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(back.to_vec(), plain);
    // Copied or renamed under another name, it is sealed again for that name, and
    // `copy_if_not_exists` keeps its promise.
    let read = |path: Path| {
        let sealed = &store.sealed;
        async move {
            sealed
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let copied = Path::from("PROV001/completed/copy.errors.csv");
    store.sealed.copy(&moved, &copied).await.unwrap();
    assert_eq!(read(copied.clone()).await, plain);
    assert!(matches!(
        store.sealed.copy_if_not_exists(&moved, &copied).await,
        Err(object_store::Error::AlreadyExists { .. })
    ));
    let renamed = Path::from("PROV001/completed/renamed.csv");
    store.sealed.rename(&copied, &renamed).await.unwrap();
    assert!(matches!(
        store.sealed.head(&copied).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(read(renamed).await, plain);
    // Nothing staged is left behind.
    let names: Vec<String> = std::fs::read_dir(store.root.join("PROV001/completed"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|name| !name.contains("reseal")),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_changed_cut_or_moved_object_is_refused_with_an_integrity_error() {
    let store = store();
    let path = Path::from("PROV001/completed/a.csv");
    let plain = text(2 * SEGMENT + 10);
    store
        .sealed
        .put(&path, PutPayload::from(plain.clone()))
        .await
        .unwrap();
    let good = on_disk(&store, path.as_ref());
    let refused = |result: object_store::Result<bytes::Bytes>, what: &str| {
        let error = result.expect_err(what).to_string();
        assert!(
            error.contains("integrity check failed") || error.contains("not a sealed object"),
            "{what}: {error}"
        );
    };
    let read = |path: Path| {
        let sealed = &store.sealed;
        async move { sealed.get(&path).await?.bytes().await }
    };
    // One byte changed anywhere: in the header, a middle segment, the last tag.
    for at in [0, 5, 13, 30, SEGMENT + 40, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        std::fs::write(store.root.join(path.as_ref()), &bad).unwrap();
        refused(read(path.clone()).await, &format!("byte {at}"));
    }
    // Cut at a segment boundary: the last segment it has is not marked last.
    let boundary = 20 + 2 * (SEGMENT + 16);
    std::fs::write(store.root.join(path.as_ref()), &good[..boundary]).unwrap();
    refused(read(path.clone()).await, "cut");
    // Moved under another name, or to another provider.
    std::fs::write(store.root.join(path.as_ref()), &good).unwrap();
    for other in ["PROV001/completed/b.csv", "PROV002/completed/a.csv"] {
        let other_path = store.root.join(other);
        std::fs::create_dir_all(other_path.parent().unwrap()).unwrap();
        std::fs::write(&other_path, &good).unwrap();
        refused(read(Path::from(other)).await, other);
    }
    // A file written without sealing.
    std::fs::write(store.root.join(path.as_ref()), &plain).unwrap();
    refused(read(path.clone()).await, "plaintext");
    // Restored, it reads again.
    std::fs::write(store.root.join(path.as_ref()), &good).unwrap();
    assert_eq!(read(path).await.unwrap().to_vec(), plain);
}

#[tokio::test]
async fn a_deleted_document_takes_its_key_and_a_restored_copy_does_not_open() {
    let store = store();
    let document = Path::from("PROV001/documents/p1/d1");
    let upload = Path::from("PROV001/uploaded/u1.csv");
    for path in [&document, &upload] {
        store
            .sealed
            .put(path, PutPayload::from(text(1000)))
            .await
            .unwrap();
    }
    // The backup: both objects as stored.
    let on_disk = |path: &Path| store.root.join(path.as_ref());
    let saved: Vec<(Path, Vec<u8>)> = [&document, &upload]
        .into_iter()
        .map(|path| (path.clone(), std::fs::read(on_disk(path)).unwrap()))
        .collect();
    for path in [&document, &upload] {
        store.sealed.delete(path).await.unwrap();
        assert!(!on_disk(path).exists());
    }
    // Deleting again (an interrupted erasure) is what the store says of a missing object.
    assert!(matches!(
        store.sealed.delete(&document).await,
        Ok(()) | Err(object_store::Error::NotFound { .. })
    ));
    for (path, bytes) in &saved {
        std::fs::create_dir_all(on_disk(path).parent().unwrap()).unwrap();
        std::fs::write(on_disk(path), bytes).unwrap();
    }
    // The document's key is gone: an integrity error, never its bytes.
    let error = match store.sealed.get(&document).await {
        Ok(got) => got
            .bytes()
            .await
            .map(|_| ())
            .expect_err("a shredded document read"),
        Err(error) => error,
    };
    assert!(
        error
            .to_string()
            .contains("data key the key store does not hold"),
        "{error}"
    );
    // An upload (copied between stages under its name) keeps its key: it reads back.
    let read = store
        .sealed
        .get(&upload)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&read[..], &text(1000)[..]);
}

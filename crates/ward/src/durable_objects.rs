//! The embedded object store: `object_store`'s local file system, made durable.
//!
//! `LocalFileSystem` writes a file and renames it into place but never calls `fsync`, while
//! the redb commit that acknowledges the object (an upload `received`, a document
//! `AVAILABLE`) is durable. After a power loss the acknowledgement could outlive the bytes.
//! This decorator syncs every file it writes, and each folder from the file's own up to the
//! store's root (a new folder's entry lives in its parent), before the write returns: so
//! whatever is acknowledged after a write returned is on disk.
//!
//! Owns: durability of writes (put, multipart completion, copy, rename). Deliberately does
//! not: change what is written, or sync reads and deletes (a lost delete is repeated by
//! the sweep or the next attempt).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// A `LocalFileSystem` whose writes are synced before they return.
#[derive(Debug, Clone)]
pub struct DurableLocalFileSystem {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
    synced: Option<Arc<Mutex<Vec<PathBuf>>>>,
}

impl DurableLocalFileSystem {
    /// The store over `root` (which must exist).
    pub fn new(root: impl AsRef<FsPath>) -> Result<Self> {
        let root = std::fs::canonicalize(root.as_ref()).map_err(|source| {
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            }
        })?;
        Ok(Self {
            inner: Arc::new(LocalFileSystem::new_with_prefix(&root)?),
            root,
            synced: None,
        })
    }

    /// The same store, recording every path it synced (for tests of the guarantee).
    pub fn recording_syncs(mut self) -> (Self, Arc<Mutex<Vec<PathBuf>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        self.synced = Some(Arc::clone(&log));
        (self, log)
    }

    async fn sync(&self, location: &Path) -> Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        let log = self.synced.clone();
        tokio::task::spawn_blocking(move || sync_file_and_folders(&file, &root, log.as_deref()))
            .await
            .map_err(|error| generic(std::io::Error::other(error)))?
            .map_err(generic)
    }
}

/// Syncs `file`, then every folder from its own up to `root` (inclusive).
fn sync_file_and_folders(
    file: &FsPath,
    root: &FsPath,
    log: Option<&Mutex<Vec<PathBuf>>>,
) -> std::io::Result<()> {
    let record = |path: &FsPath| {
        if let Some(log) = log {
            log.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(path.to_owned());
        }
    };
    std::fs::File::open(file)?.sync_all()?;
    record(file);
    let mut folder = file.parent();
    while let Some(dir) = folder {
        std::fs::File::open(dir)?.sync_all()?;
        record(dir);
        if dir == root {
            break;
        }
        folder = dir.parent();
    }
    Ok(())
}

fn generic(source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(source),
    }
}

impl fmt::Display for DurableLocalFileSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DurableLocalFileSystem {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            upload,
            store: self.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

/// A multipart upload whose completion is synced.
#[derive(Debug)]
struct DurableUpload {
    upload: Box<dyn MultipartUpload>,
    store: DurableLocalFileSystem,
    location: Path,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.upload.complete().await?;
        self.store.sync(&self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn every_write_syncs_the_file_and_its_folders_up_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = DurableLocalFileSystem::new(dir.path())
            .unwrap()
            .recording_syncs();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let expect = |file: &str| {
            vec![
                root.join(file),
                root.join(file).parent().unwrap().to_owned(),
                root.join("P"),
                root.clone(),
            ]
        };
        let take = || std::mem::take(&mut *log.lock().unwrap());

        store
            .put(&Path::from("P/uploaded/a.csv"), b"x".to_vec().into())
            .await
            .unwrap();
        assert_eq!(take(), expect("P/uploaded/a.csv"));

        let mut upload = store
            .put_multipart(&Path::from("P/uploaded/b.csv"))
            .await
            .unwrap();
        upload.put_part(b"part".to_vec().into()).await.unwrap();
        assert!(
            take().is_empty(),
            "nothing is acknowledged before completion"
        );
        upload.complete().await.unwrap();
        assert_eq!(take(), expect("P/uploaded/b.csv"));

        store
            .copy(
                &Path::from("P/uploaded/a.csv"),
                &Path::from("P/processing/a.csv"),
            )
            .await
            .unwrap();
        assert_eq!(take(), expect("P/processing/a.csv"));
        store
            .rename(
                &Path::from("P/processing/a.csv"),
                &Path::from("P/completed/a.csv"),
            )
            .await
            .unwrap();
        assert_eq!(take(), expect("P/completed/a.csv"));
        let bytes = store
            .get(&Path::from("P/completed/a.csv"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"x");
        assert!(take().is_empty(), "reads sync nothing");
    }
}

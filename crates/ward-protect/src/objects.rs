//! Sealed objects: a decorator of the object store port that seals every object it writes
//! and opens every object it reads, in segments, so a range read opens only the segments
//! it needs and a 1 GiB file streams through in bounded memory.
//!
//! Form (`WOB` 1): a header of 20 bytes, `b"WOB" 0x01`, the data key's id (8 bytes, big
//! endian), a random nonce prefix (8 bytes); then the plaintext in segments of 64 KiB, the
//! last one shorter (or empty, for an empty object), each sealed with AES-256-GCM under a
//! data key of the object's own (taken from its provider's pool, named in the header).
//! A segment's nonce is the prefix, its index and a last-segment flag, so segments cannot
//! be reordered, dropped or cut at a boundary; its associated data binds the provider and
//! the object's file name (the last part of its path) and the header. The name, not the
//! whole path, because Ward moves an upload from stage to stage (`uploaded/` to
//! `processing/` to `completed/`) by renaming it under the same name; a copy or rename
//! under another name (an identical upload's error list, copied from the first one's)
//! is opened and sealed again for its new name.
//!
//! Owns: the sealed form of objects, sizes as the caller sees them (plaintext), ranges.
//! Deliberately does not: keep part sizes an S3 multipart upload needs (it is the embedded
//! store's decorator; the AWS shape keeps SSE-KMS), or decide which objects are sealed
//! (all of them are).

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt as _, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, RenameTargetMode, Result, UploadPart,
};
use rand::RngCore as _;
use ring::aead::{Aad, Nonce};

use crate::{DataKey, DataKeys, ProtectError};

const MAGIC: [u8; 4] = *b"WOB\x01";
/// Bytes of the header.
pub const HEADER_LEN: usize = 20;
/// Plaintext bytes of a full segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const SEALED_SEGMENT: usize = SEGMENT + TAG;
const STORE: &str = "SealedObjects";

/// Which objects take their data key with them when deleted.
type Shredded = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// The object store `inner`, every object sealed with keys of `keys`.
pub struct SealedObjects {
    inner: Arc<dyn ObjectStore>,
    keys: Arc<DataKeys>,
    shredded: Option<Shredded>,
}

impl std::fmt::Debug for SealedObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedObjects")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl SealedObjects {
    /// The decorator.
    pub fn new(inner: Arc<dyn ObjectStore>, keys: Arc<DataKeys>) -> Self {
        Self {
            inner,
            keys,
            shredded: None,
        }
    }

    /// Deleting an object that `shredded` names destroys its data key first, so no copy
    /// of it (a backup) can be opened again. Only for objects that are never copied under
    /// the same name: a same-name copy shares its original's key.
    pub fn shredding(mut self, shredded: impl Fn(&Path) -> bool + Send + Sync + 'static) -> Self {
        self.shredded = Some(Arc::new(shredded));
        self
    }

    async fn sealer(&self, location: &Path) -> Result<Sealer> {
        let (provider, name) = owner(location);
        let key = self
            .keys
            .fresh(&provider, 1)
            .await
            .map_err(error)?
            .pop()
            .ok_or_else(|| error(ProtectError::Crypto("no data key was made")))?;
        let mut prefix = [0u8; 8];
        rand::rng().fill_bytes(&mut prefix);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&MAGIC);
        header[4..12].copy_from_slice(&key.id.to_be_bytes());
        header[12..].copy_from_slice(&prefix);
        Ok(Sealer {
            segments: Segments::new(key, &provider, &name, header),
            pending: Vec::with_capacity(SEGMENT + 1),
            index: 0,
            wrote_header: false,
        })
    }

    /// The segments' key and associated data of the object whose header is `header`.
    async fn opener(&self, location: &Path, header: &[u8]) -> Result<Segments> {
        let (provider, name) = owner(location);
        if header.len() != HEADER_LEN || header[..4] != MAGIC {
            return Err(error(ProtectError::Integrity(format!(
                "object {location} is not a sealed object (it was written without encryption, or changed)"
            ))));
        }
        let id = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes"));
        let key = self
            .keys
            .by_id(&provider, id)
            .await
            .map_err(|e| match e {
                ProtectError::NoDataKey(_) => error(ProtectError::Integrity(format!(
                    "object {location} names a data key the key store does not hold (erased, or the object was changed)"
                ))),
                e => error(e),
            })?;
        let header: [u8; HEADER_LEN] = header.try_into().expect("checked length");
        Ok(Segments::new(key, &provider, &name, header))
    }

    /// The plaintext bytes `range` (already within the object) of the object at
    /// `location`, whose sealed size is `sealed_size`.
    async fn read_range(
        &self,
        location: &Path,
        range: Range<u64>,
        sealed_size: u64,
    ) -> Result<Bytes> {
        let plain = plain_len(sealed_size).map_err(|e| integrity(location, e))?;
        let first = range.start / SEGMENT as u64;
        let last = (range.end.max(range.start + 1) - 1) / SEGMENT as u64;
        let last_index = last_segment(plain);
        let start = HEADER_LEN as u64 + first * SEALED_SEGMENT as u64;
        let end = (HEADER_LEN as u64 + (last + 1) * SEALED_SEGMENT as u64).min(sealed_size);
        let parts = self
            .inner
            .get_ranges(location, &[0..HEADER_LEN as u64, start..end])
            .await?;
        let segments = self.opener(location, &parts[0]).await?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (n, chunk) in parts[1].chunks(SEALED_SEGMENT).enumerate() {
            let index = first + n as u64;
            let opened = segments.open(index, index == last_index, chunk, location)?;
            let from = if index == first {
                (range.start - first * SEGMENT as u64) as usize
            } else {
                0
            };
            let to = if index == last {
                (range.end - last * SEGMENT as u64) as usize
            } else {
                opened.len()
            };
            out.extend_from_slice(&opened[from.min(opened.len())..to.min(opened.len())]);
        }
        Ok(out.freeze())
    }

    /// Copies `from` to `to` under another name or provider: opened and sealed again for
    /// `to` (the associated data names them), written beside it and then copied into
    /// place with `mode`, so `to` never holds a partial object.
    async fn resealed_copy(&self, from: &Path, to: &Path, mode: CopyMode) -> Result<()> {
        let mut body = self
            .get_opts(from, GetOptions::default())
            .await?
            .into_stream();
        let mut sealer = self.sealer(to).await?;
        let staging = Path::from(format!("{to}.reseal-{:016x}", rand::random::<u64>()));
        let mut upload = self
            .inner
            .put_multipart_opts(&staging, PutMultipartOptions::default())
            .await?;
        let written = async {
            while let Some(chunk) = body.next().await {
                let mut out = Vec::new();
                sealer.push(&chunk?, &mut out)?;
                if !out.is_empty() {
                    upload.put_part(out.into()).await?;
                }
            }
            let mut out = Vec::new();
            sealer.finish(&mut out)?;
            upload.put_part(out.into()).await?;
            upload.complete().await
        }
        .await;
        if let Err(error) = written {
            let _ = upload.abort().await;
            return Err(error);
        }
        let copied = self
            .inner
            .copy_opts(
                &staging,
                to,
                CopyOptions {
                    mode,
                    ..CopyOptions::default()
                },
            )
            .await;
        let _ = self.inner.delete(&staging).await;
        copied
    }

    async fn sealed_meta(&self, location: &Path) -> Result<ObjectMeta> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        Ok(self.inner.get_opts(location, options).await?.meta)
    }
}

impl std::fmt::Display for SealedObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedObjects({})", self.inner)
    }
}

/// The provider (the path's first part) and the file name (its last).
fn owner(location: &Path) -> (String, String) {
    let parts: Vec<_> = location.parts().collect();
    let provider = if parts.len() > 1 {
        parts[0].as_ref().to_owned()
    } else {
        String::new()
    };
    let name = parts
        .last()
        .map(|p| p.as_ref().to_owned())
        .unwrap_or_default();
    (provider, name)
}

/// Destroys the data key of the object at `location` (none: nothing to do).
async fn shred(inner: &dyn ObjectStore, keys: &DataKeys, location: &Path) -> Result<()> {
    let header = match inner.get_range(location, 0..HEADER_LEN as u64).await {
        Ok(header) => header,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if header.len() == HEADER_LEN && header[..4] == MAGIC {
        let id = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes"));
        keys.destroy(&owner(location).0, id).await.map_err(error)?;
    }
    Ok(())
}

fn error(source: ProtectError) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(source),
    }
}

fn integrity(location: &Path, reason: String) -> object_store::Error {
    error(ProtectError::Integrity(format!(
        "object {location} {reason}"
    )))
}

/// The sealed size of `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    let segments = plain.div_ceil(SEGMENT as u64).max(1);
    HEADER_LEN as u64 + segments * TAG as u64 + plain
}

/// The plaintext size of a sealed object of `sealed` bytes, if that is a size one can have.
pub fn plain_len(sealed: u64) -> Result<u64, String> {
    let body = sealed
        .checked_sub(HEADER_LEN as u64)
        .filter(|body| *body >= TAG as u64)
        .ok_or("is shorter than a sealed object")?;
    let segments = body.div_ceil(SEALED_SEGMENT as u64);
    let last = body - (segments - 1) * SEALED_SEGMENT as u64;
    if last < TAG as u64 || (last == TAG as u64 && segments > 1) {
        return Err("has a size no sealed object has (cut short?)".into());
    }
    Ok(body - segments * TAG as u64)
}

/// The index of the last segment of `plain` bytes.
fn last_segment(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT as u64).max(1) - 1
}

/// One object's key, header and associated data.
struct Segments {
    key: Arc<DataKey>,
    header: [u8; HEADER_LEN],
    aad: Vec<u8>,
}

impl Segments {
    fn new(key: Arc<DataKey>, provider: &str, name: &str, header: [u8; HEADER_LEN]) -> Self {
        let mut aad = b"ward/object/v1".to_vec();
        for part in [provider.as_bytes(), name.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&header);
        Self { key, header, aad }
    }

    fn nonce(&self, index: u64, last: bool) -> Option<Nonce> {
        let index = u32::try_from(index).ok().filter(|i| *i < 1 << 31)?;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.header[12..]);
        nonce[8..].copy_from_slice(&(index | (u32::from(last) << 31)).to_be_bytes());
        Some(Nonce::assume_unique_for_key(nonce))
    }

    fn seal(&self, index: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let nonce = self
            .nonce(index, last)
            .ok_or_else(|| error(ProtectError::Crypto("an object over 128 TiB")))?;
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&self.aad), &mut out[start..])
            .map_err(|_| error(ProtectError::Crypto("seal")))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    fn open(&self, index: u64, last: bool, sealed: &[u8], location: &Path) -> Result<Vec<u8>> {
        let refused = || {
            integrity(
                location,
                format!("failed its integrity check at segment {index} (changed, cut, or moved)"),
            )
        };
        let nonce = self.nonce(index, last).ok_or_else(refused)?;
        let mut buffer = sealed.to_vec();
        let plain_len = self
            .key
            .key
            .open_in_place(nonce, Aad::from(&self.aad), &mut buffer)
            .map_err(|_| refused())?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}

/// Seals an object as it is written, one segment at a time.
struct Sealer {
    segments: Segments,
    pending: Vec<u8>,
    index: u64,
    wrote_header: bool,
}

impl Sealer {
    /// Takes `data`; puts what can be sealed so far (every full segment followed by more
    /// data) in `out`.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.header(out);
        while !data.is_empty() {
            if self.pending.len() == SEGMENT {
                // More data follows: this segment is not the last.
                self.segments.seal(self.index, false, &self.pending, out)?;
                self.index += 1;
                self.pending.clear();
            }
            let take = (SEGMENT - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the last segment into `out`.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.header(out);
        self.segments.seal(self.index, true, &self.pending, out)?;
        self.pending.clear();
        Ok(())
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.wrote_header {
            out.extend_from_slice(&self.segments.header);
            self.wrote_header = true;
        }
    }
}

/// A multipart upload sealing its parts.
struct SealedUpload {
    inner: Box<dyn MultipartUpload>,
    sealer: Sealer,
}

impl std::fmt::Debug for SealedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedUpload").finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for SealedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let mut out = Vec::new();
        for chunk in data.iter() {
            if let Err(e) = self.sealer.push(chunk, &mut out) {
                return Box::pin(async move { Err(e) });
            }
        }
        if out.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.inner.put_part(out.into())
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let mut out = Vec::new();
        self.sealer.finish(&mut out)?;
        self.inner.put_part(out.into()).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// Sealed bytes read from a local file at once (16 segments): a blocking task each.
const FILE_READ: usize = 16 * SEALED_SEGMENT;

/// The bytes of `result`: a local file's in reads of [`FILE_READ`] bytes (its store's own
/// stream takes a blocking task for every 8 KiB, which made the parse of a sealed upload
/// a third slower), any other store's as it streams them.
fn body_stream(result: GetResult) -> BoxStream<'static, Result<Bytes>> {
    let range = result.range.clone();
    let GetResultPayload::File(file, path) = result.payload else {
        return result.into_stream();
    };
    let failed = move |source: std::io::Error| object_store::Error::Generic {
        store: STORE,
        source: format!("cannot read {}: {source}", path.display()).into(),
    };
    stream::try_unfold((file, range), move |(mut file, range)| {
        let failed = failed.clone();
        async move {
            if range.start >= range.end {
                return Ok(None);
            }
            let len = (range.end - range.start).min(FILE_READ as u64) as usize;
            let at = range.start;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::{Read as _, Seek as _};
                let mut chunk = vec![0; len];
                file.seek(std::io::SeekFrom::Start(at))?;
                file.read_exact(&mut chunk)?;
                Ok((file, chunk))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|read| read)
            .map_err(failed)?;
            let (file, chunk) = read;
            Ok(Some((
                Bytes::from(chunk),
                (file, at + len as u64..range.end),
            )))
        }
    })
    .boxed()
}

/// The plaintext of a whole sealed object, from its sealed bytes after the header.
fn opened_stream(
    segments: Segments,
    body: BoxStream<'static, Result<Bytes>>,
    location: Path,
) -> BoxStream<'static, Result<Bytes>> {
    struct State {
        segments: Segments,
        body: BoxStream<'static, Result<Bytes>>,
        buffer: BytesMut,
        index: u64,
        ended: bool,
        done: bool,
        location: Path,
    }
    let state = State {
        segments,
        body,
        buffer: BytesMut::new(),
        index: 0,
        ended: false,
        done: false,
        location,
    };
    stream::try_unfold(state, |mut state| async move {
        if state.done {
            return Ok(None);
        }
        // A segment is the last one when nothing follows it.
        while !state.ended && state.buffer.len() <= SEALED_SEGMENT {
            match state.body.next().await {
                Some(chunk) => state.buffer.extend_from_slice(&chunk?),
                None => state.ended = true,
            }
        }
        let last = state.buffer.len() <= SEALED_SEGMENT;
        let take = if last {
            state.buffer.len()
        } else {
            SEALED_SEGMENT
        };
        let sealed = state.buffer.split_to(take);
        let opened = state
            .segments
            .open(state.index, last, &sealed, &state.location)?;
        state.index += 1;
        state.done = last;
        Ok(Some((Bytes::from(opened), state)))
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for SealedObjects {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let mut sealer = self.sealer(location).await?;
        let mut out = Vec::with_capacity(sealed_len(payload.content_length() as u64) as usize);
        for chunk in payload.iter() {
            sealer.push(chunk, &mut out)?;
        }
        sealer.finish(&mut out)?;
        self.inner.put_opts(location, out.into(), opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let sealer = self.sealer(location).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SealedUpload { inner, sealer }))
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
        let range = options.range.take();
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        let mut meta = result.meta.clone();
        let sealed_size = meta.size;
        meta.size = plain_len(sealed_size).map_err(|e| integrity(location, e))?;
        let attributes = result.attributes.clone();
        if head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes,
            });
        }
        let range = match range {
            None => {
                let mut body = body_stream(result);
                let mut header = BytesMut::new();
                let mut rest = Bytes::new();
                while header.len() < HEADER_LEN {
                    let Some(chunk) = body.next().await else {
                        return Err(integrity(
                            location,
                            "is shorter than a sealed object".into(),
                        ));
                    };
                    let chunk = chunk?;
                    let need = HEADER_LEN - header.len();
                    header.extend_from_slice(&chunk[..need.min(chunk.len())]);
                    rest = chunk.slice(need.min(chunk.len())..);
                }
                let segments = self.opener(location, &header).await?;
                let body = stream::once(async move { Ok(rest) }).chain(body).boxed();
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(opened_stream(
                        segments,
                        body,
                        location.clone(),
                    )),
                    range: 0..meta.size,
                    meta,
                    attributes,
                });
            }
            Some(range) => {
                resolve(&range, meta.size).map_err(|reason| object_store::Error::Generic {
                    store: STORE,
                    source: reason.into(),
                })?
            }
        };
        drop(result);
        let bytes = self
            .read_range(location, range.clone(), sealed_size)
            .await?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(bytes) }).boxed()),
            range,
            meta,
            attributes,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let sealed_size = self.sealed_meta(location).await?.size;
        let plain = plain_len(sealed_size).map_err(|e| integrity(location, e))?;
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let range = resolve(&GetRange::Bounded(range.clone()), plain).map_err(|reason| {
                object_store::Error::Generic {
                    store: STORE,
                    source: reason.into(),
                }
            })?;
            out.push(self.read_range(location, range, sealed_size).await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let Some(shredded) = self.shredded.clone() else {
            return self.inner.delete_stream(locations);
        };
        let inner = Arc::clone(&self.inner);
        let keys = Arc::clone(&self.keys);
        locations
            .then(move |location| {
                let (inner, keys, shredded) =
                    (Arc::clone(&inner), Arc::clone(&keys), Arc::clone(&shredded));
                async move {
                    let location = location?;
                    if shredded(&location) {
                        shred(&*inner, &keys, &location).await?;
                    }
                    inner.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix).map(plain_meta).boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner
            .list_with_offset(prefix, offset)
            .map(plain_meta)
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects = listed
            .objects
            .into_iter()
            .map(|meta| plain_meta(Ok(meta)))
            .collect::<Result<_>>()?;
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if owner(from) == owner(to) {
            return self.inner.copy_opts(from, to, options).await;
        }
        self.resealed_copy(from, to, options.mode).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        if owner(from) == owner(to) {
            return self.inner.rename_opts(from, to, options).await;
        }
        let mode = match options.target_mode {
            RenameTargetMode::Overwrite => CopyMode::Overwrite,
            RenameTargetMode::Create => CopyMode::Create,
        };
        self.resealed_copy(from, to, mode).await?;
        self.inner.delete(from).await
    }
}

fn plain_meta(meta: Result<ObjectMeta>) -> Result<ObjectMeta> {
    let mut meta = meta?;
    meta.size = plain_len(meta.size).map_err(|e| integrity(&meta.location, e))?;
    Ok(meta)
}

/// `range` within an object of `size` bytes, as `object_store` reads it: an empty range
/// or one starting past the end is an error; one ending past the end is cut there.
fn resolve(range: &GetRange, size: u64) -> Result<Range<u64>, String> {
    let (start, end) = match range {
        GetRange::Bounded(r) => (r.start, r.end.min(size)),
        GetRange::Offset(start) => (*start, size),
        GetRange::Suffix(n) => (size.saturating_sub(*n), size),
    };
    if start >= end && !(start == 0 && size == 0 && !matches!(range, GetRange::Bounded(_))) {
        return Err(format!(
            "the range {start}..{end} is not within the object's {size} bytes"
        ));
    }
    Ok(start..end)
}

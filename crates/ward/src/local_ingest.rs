//! `ward ingest`: a file straight into a data folder, through the same pipeline as an
//! upload (object storage, upload item, worker code), without HTTP.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ward_domain::key_layout::{self, ObjectStage};
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ingest::process_upload;
use ward_ports::{Upload, UploadStatus};
use ward_store::Key;

use ward_ingest::IngestContext;

/// Makes sure the provider exists; returns whether it was created.
pub async fn ensure_provider(ctx: &IngestContext, provider: &ProviderId) -> anyhow::Result<bool> {
    let key = Key::new(key_layout::provider_pk(provider), key_layout::PROVIDER_SK);
    if ctx.table.get(&key).await?.is_some() {
        return Ok(false);
    }
    ward_ports::Tenants::new(ctx.table.clone())
        .create(provider, None)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create provider {provider}: {e}"))?;
    Ok(true)
}

/// Stores the file as a new upload and processes it.
pub async fn ingest_file(
    ctx: &IngestContext,
    provider: &ProviderId,
    file: &Path,
    show_progress: bool,
) -> anyhow::Result<(Upload, Duration)> {
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let now = UtcInstant::now();
    let id = UploadId::new(now, rand::random());
    let mut upload = Upload::pending(provider.clone(), id.clone(), now, 0);
    upload.file_name = file
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| ward_domain::SourceFileName::parse(name).ok());
    ctx.uploads.create(&upload).await?;
    let path = ObjectPath::from(key_layout::upload_object_key(
        provider,
        ObjectStage::Uploaded,
        &id,
        upload.kind,
    ));
    // Two 10 MiB parts in flight at most (the default, 8, holds up to 90 MiB).
    let mut writer =
        object_store::buffered::BufWriter::new(ctx.objects.clone(), path).with_max_concurrency(2);
    let mut input = tokio::fs::File::open(file).await?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        writer.write_all(&buffer[..n]).await?;
    }
    writer.shutdown().await?;
    upload = ctx.uploads.mark_received(&upload, size).await?;
    run_with_progress(ctx, &upload.provider, &upload.id, size, show_progress).await
}

/// Finishes uploads an interrupted `ward ingest` left in `received`/`processing`.
pub async fn resume_unfinished(
    ctx: &IngestContext,
    provider: &ProviderId,
    show_progress: bool,
) -> anyhow::Result<Vec<(Upload, Duration)>> {
    let (uploads, _) = ctx.uploads.list(provider, 1000, None).await?;
    let mut finished = Vec::new();
    for upload in uploads {
        if matches!(
            upload.status,
            UploadStatus::Received | UploadStatus::Processing | UploadStatus::Interrupted
        ) {
            let size = upload.bytes.unwrap_or(0);
            finished.push(
                run_with_progress(ctx, &upload.provider, &upload.id, size, show_progress).await?,
            );
        }
    }
    Ok(finished)
}

async fn run_with_progress(
    ctx: &IngestContext,
    provider: &ProviderId,
    id: &UploadId,
    size: u64,
    show_progress: bool,
) -> anyhow::Result<(Upload, Duration)> {
    let progress = if show_progress {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    let bar_style = |template: &str| {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    };
    let started = Instant::now();
    let mut attempt = 1;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let result = loop {
        progress.set_style(bar_style(
            "ingesting [{bar:30}] {bytes}/{total_bytes} {msg}",
        ));
        progress.set_length(size);
        let baseline = Counters::now(ctx);
        let mut writing = false;
        let work = process_upload(ctx, provider, id, attempt);
        tokio::pin!(work);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = ticker.tick() => {
                    let done = Counters::now(ctx).since(&baseline);
                    if !ctx.key_order() {
                        progress.set_position(done.bytes);
                        progress.set_message(format!("{} rows", done.rows));
                    } else if done.bytes < size || done.sorted == 0 {
                        // Key order: the whole file is read and sorted first...
                        progress.set_position(done.bytes);
                        progress.set_message(format!("{} rows read and sorted", done.sorted));
                    } else {
                        // ...then its valid rows are written.
                        if !writing {
                            writing = true;
                            progress.set_style(bar_style("writing   [{bar:30}] {pos}/{len} rows"));
                            progress.set_length(done.sorted);
                        }
                        progress.set_position(done.valid.min(done.sorted));
                    }
                }
            }
        };
        match outcome {
            Ok(upload) => break Ok(upload),
            Err(error) if attempt < ctx.settings.max_attempts => {
                tracing::warn!(error = %error, attempt, "ingest attempt failed; retrying");
                tokio::time::sleep(ctx.settings.retry_base * 4u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            Err(error) => {
                break Err(anyhow::anyhow!(
                    "ingest failed after {attempt} attempts: {error}"
                ));
            }
        }
    };
    progress.finish_and_clear();
    Ok((result?, started.elapsed()))
}

/// The pipeline's progress counters at one moment.
struct Counters {
    bytes: u64,
    rows: u64,
    sorted: u64,
    valid: u64,
}

impl Counters {
    fn now(ctx: &IngestContext) -> Self {
        Self {
            bytes: ctx.progress_bytes.load(Ordering::Relaxed),
            rows: ctx.progress_rows.load(Ordering::Relaxed),
            sorted: ctx.progress_sorted_rows.load(Ordering::Relaxed),
            valid: ctx.progress_valid_rows.load(Ordering::Relaxed),
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            bytes: self.bytes - earlier.bytes,
            rows: self.rows - earlier.rows,
            sorted: self.sorted - earlier.sorted,
            valid: self.valid - earlier.valid,
        }
    }
}

//! Object retention for shapes without storage lifecycle rules (the embedded shape; on AWS
//! the bucket's lifecycle rules do this): processed files, reports and error lists expire
//! after the retention period, stale `uploaded/` objects after a few hours.
//!
//! Never deleted: the file of an upload that is not terminal (it is still owed work, for
//! example after an outage longer than the stale period). The server's first sweep comes
//! one period after start-up, so start-up recovery has requeued that work before.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{info, warn};
use ward_domain::key_layout;

use ward_ports::UploadRepository;

/// How long objects are kept.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// `completed/` and `failed/` objects older than this are deleted.
    pub completed: Duration,
    /// `uploaded/` objects older than this are deleted (a file waits there only seconds
    /// when the pipeline is healthy).
    pub stale_uploaded: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            completed: Duration::from_secs(2557 * 24 * 3600),
            stale_uploaded: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects looked at.
    pub n_seen: u64,
    /// Objects deleted.
    pub n_deleted: u64,
    /// Expired `uploaded/` objects kept because their upload is still owed work.
    pub n_owed: u64,
}

/// The schedule of a server's sweeps: every `period`, the first one `period` after now
/// (never at start-up, before recovery has requeued unfinished uploads).
pub fn schedule(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// Deletes the objects the policy says have expired at `now`, except the file of an upload
/// that is not terminal (`uploads` says which). Lists the whole object store: a
/// background job, never a request path.
pub async fn sweep(
    objects: &dyn ObjectStore,
    uploads: &UploadRepository,
    policy: RetentionPolicy,
    now: std::time::SystemTime,
) -> Result<SweepReport, object_store::Error> {
    let mut report = SweepReport::default();
    let mut expired: Vec<ObjectPath> = Vec::new();
    let mut listing = objects.list(None);
    while let Some(meta) = listing.try_next().await? {
        report.n_seen += 1;
        let stage = meta
            .location
            .parts()
            .nth(1)
            .map(|part| part.as_ref().to_owned());
        let keep_for = match stage.as_deref() {
            Some("completed" | "failed") => policy.completed,
            Some("uploaded") => policy.stale_uploaded,
            _ => continue,
        };
        let modified: std::time::SystemTime = meta.last_modified.into();
        if now.duration_since(modified).unwrap_or_default() <= keep_for {
            continue;
        }
        if stage.as_deref() == Some("uploaded") && is_owed_work(uploads, &meta.location).await {
            report.n_owed += 1;
            continue;
        }
        expired.push(meta.location);
    }
    for location in expired {
        match objects.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => report.n_deleted += 1,
            Err(error) => return Err(error),
        }
    }
    info!(
        n_seen = report.n_seen,
        n_deleted = report.n_deleted,
        n_owed = report.n_owed,
        "retention sweep"
    );
    Ok(report)
}

/// Whether an `uploaded/` object is the file of an upload that is not terminal. When the
/// upload cannot be read, the file is kept: a sweep never guesses towards deleting.
async fn is_owed_work(uploads: &UploadRepository, location: &ObjectPath) -> bool {
    let Some((provider, upload_id, _)) = key_layout::parse_uploaded_object_key(location.as_ref())
    else {
        return false;
    };
    match uploads.get(&provider, &upload_id).await {
        Ok(Some(upload)) => !upload.status.is_final(),
        Ok(None) => false,
        Err(error) => {
            warn!(error = %error, provider_id = %provider, upload_id = %upload_id, "retention sweep could not read an upload; its file is kept");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_sweep_comes_one_period_after_start_up() {
        let period = Duration::from_secs(3600);
        let started = tokio::time::Instant::now();
        let mut interval = schedule(period);
        interval.tick().await;
        assert_eq!(started.elapsed(), period, "no sweep at start-up");
        interval.tick().await;
        assert_eq!(started.elapsed(), 2 * period);
    }
}

//! Object retention for shapes without storage lifecycle rules (the embedded shape; on AWS
//! the bucket's lifecycle rules do this): processed files, reports and error lists expire
//! after the retention period, stale `uploaded/` objects after a few hours.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::info;

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
}

/// Deletes the objects the policy says have expired at `now`. Lists the whole object
/// store: a background job, never a request path.
pub async fn sweep(
    objects: &dyn ObjectStore,
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
        if now.duration_since(modified).unwrap_or_default() > keep_for {
            expired.push(meta.location);
        }
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
        "retention sweep"
    );
    Ok(report)
}

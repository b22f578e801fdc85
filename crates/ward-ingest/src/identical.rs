//! Byte-identical re-uploads, answered from the first upload's outcomes.
//!
//! Visit records are immutable and deleted only by a patient's erasure. So when a provider uploads a visit file
//! whose bytes are those of a file it uploaded before, and that earlier upload completed
//! under the same rules, every row ends as the per-row path would end it now: a row that
//! was inserted or a duplicate then is a duplicate now (the record it wrote or matched is
//! still there, unchanged), a conflict is the same conflict with the same stored record,
//! and a rejection is the same rejection. The one rule whose answer changes with time (a
//! visit at most a day ahead of processing) is why an upload that rejected a row under it
//! never serves as a reference. Such a re-upload copies the earlier upload's error list
//! and derives its report, without reading a row. An upload one of whose attempts has
//! started reading rows (`Upload::rows_read`) may have written records of its own, so it
//! is always read to the end instead. Nor does an upload that finished before the
//! provider's latest erasure (its records may be gone).
//!
//! The reference is one item per distinct file in the provider's `FILES` partition (see
//! `docs/data-model.md`), written when a per-row run completes.

use std::io::Read;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use sha2::{Digest, Sha256};
use ward_domain::{ProviderId, UploadId, VisitRules, key_layout};
use ward_store::{Condition, Item, Key, PK, SK, Value};

use ward_ports::{OutcomeCounts, ProcessError, UploadReport, UploadStatus};

use crate::context::IngestContext;
use crate::parse::object_reader;

/// Raise when a change to validation could end a row differently, so that references
/// made under the old rules are not used.
const RULES_VERSION: u32 = 1;

/// The hex SHA-256 of an object's bytes.
pub(crate) async fn file_digest(
    objects: &dyn ObjectStore,
    path: &ObjectPath,
) -> Result<String, ProcessError> {
    let mut reader = object_reader(objects, path, None).await?;
    let digest = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                return Ok::<_, std::io::Error>(hex::encode(hasher.finalize()));
            }
            hasher.update(&buffer[..n]);
        }
    })
    .await
    .map_err(|e| ProcessError::Internal(format!("digest task: {e}")))?;
    digest.map_err(|e| ProcessError::Read(e.to_string()))
}

/// What, besides the bytes, decides how the rows of a file end: the rules' version and
/// the provider's settings they read.
pub(crate) fn rules_fingerprint(rules: &VisitRules) -> String {
    format!(
        "rules {RULES_VERSION}; zone {}; notes {}",
        rules.zone.as_ref().map_or("-", |zone| zone.name()),
        rules.max_notes_chars
    )
}

/// A completed upload of the same bytes under the same rules.
pub(crate) struct Reference {
    /// The earlier upload.
    pub id: UploadId,
    /// Its report.
    pub report: UploadReport,
}

fn key(provider: &ProviderId, digest: &str) -> Key {
    Key::new(key_layout::files_pk(provider), key_layout::file_sk(digest))
}

/// The upload this file's outcomes can be taken from, if there is one.
pub(crate) async fn find_reference(
    ctx: &IngestContext,
    provider: &ProviderId,
    digest: &str,
    rules: &str,
) -> Result<Option<Reference>, ProcessError> {
    let Some(item) = ctx.table.get(&key(provider, digest)).await? else {
        return Ok(None);
    };
    if item.get("rules").and_then(Value::as_s) != Some(rules) {
        return Ok(None);
    }
    let Some(id) = item
        .get("uploadId")
        .and_then(Value::as_s)
        .and_then(|text| UploadId::parse(text).ok())
    else {
        return Ok(None);
    };
    let Some(upload) = ctx.uploads.get(provider, &id).await? else {
        return Ok(None);
    };
    // An erasure since may have removed records the earlier upload wrote or matched.
    let latest_erasure = ctx
        .table
        .get(&Key::new(
            key_layout::erased_pk(provider),
            key_layout::LATEST_ERASURE_SK,
        ))
        .await?
        .and_then(|item| item.get("erasedAtSeconds").and_then(Value::as_i64));
    let after_erasures = |finished: Option<ward_domain::UtcInstant>| match latest_erasure {
        None => true,
        Some(erased) => finished.is_some_and(|at| at.unix_seconds() > erased),
    };
    Ok(match (upload.status, upload.report) {
        (UploadStatus::Completed, Some(report))
            if report.failure.is_none() && after_erasures(upload.finished_at) =>
        {
            Some(Reference { id, report })
        }
        _ => None,
    })
}

/// Records that `upload`, a completed per-row run, may answer later uploads of `digest`.
pub(crate) async fn remember(
    ctx: &IngestContext,
    provider: &ProviderId,
    digest: &str,
    rules: &str,
    upload: &UploadId,
) -> Result<(), ProcessError> {
    let key = key(provider, digest);
    let mut item = Item::new();
    item.insert(PK.into(), Value::S(key.pk));
    item.insert(SK.into(), Value::S(key.sk));
    item.insert("entity".into(), Value::s("FILE"));
    item.insert("providerId".into(), Value::s(provider.as_str()));
    item.insert("uploadId".into(), Value::s(upload.as_str()));
    item.insert("rules".into(), Value::s(rules));
    ctx.table.put(item, Condition::None).await?;
    Ok(())
}

/// The report a per-row run of the same bytes would write now.
pub(crate) fn derived_report(reference: &Reference) -> UploadReport {
    let counts = &reference.report.counts;
    UploadReport {
        counts: OutcomeCounts {
            rows: counts.rows,
            inserted: 0,
            duplicate: counts.inserted + counts.duplicate,
            conflict: counts.conflict,
            rejected: counts.rejected,
        },
        unknown_columns: reference.report.unknown_columns.clone(),
        unknown_column_count: reference.report.unknown_column_count,
        first_problems: reference.report.first_problems.clone(),
        identical_to: Some(reference.id.to_string()),
        ..UploadReport::default()
    }
}

//! Moving an upload's file between its stages (`uploaded/`, `processing/`, `completed/`,
//! `failed/`), safely repeated after a crash.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use ward_domain::key_layout::{self, ObjectStage, UploadKind};
use ward_domain::{ProviderId, UploadId};
use ward_ports::ProcessError;

use crate::context::path;

/// Puts the file in `processing/`: from `uploaded/` on a first attempt, or, when an earlier
/// attempt died after moving it on but before recording the upload's final status, back
/// from `completed/` or `failed/`. `false` if the file is nowhere.
pub(crate) async fn claim_file(
    objects: &dyn ObjectStore,
    provider: &ProviderId,
    upload_id: &UploadId,
    kind: UploadKind,
    uploaded: &ObjectPath,
    processing: &ObjectPath,
) -> Result<bool, ProcessError> {
    if move_object(objects, uploaded, processing).await? {
        return Ok(true);
    }
    for stage in [ObjectStage::Completed, ObjectStage::Failed] {
        let moved_on = path(key_layout::upload_object_key(
            provider, stage, upload_id, kind,
        ));
        if move_object(objects, &moved_on, processing).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves an object (copy, then delete). Returns `false` if neither the source nor the
/// destination exists. A crash between copy and delete is harmless: the next attempt
/// finds the destination and finishes the delete.
pub async fn move_object(
    objects: &dyn ObjectStore,
    from: &ObjectPath,
    to: &ObjectPath,
) -> Result<bool, ProcessError> {
    match objects.copy(from, to).await {
        Ok(()) => {}
        Err(object_store::Error::NotFound { .. }) => {
            return match objects.head(to).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(error) => Err(error.into()),
            };
        }
        Err(error) => return Err(error.into()),
    }
    match objects.delete(from).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

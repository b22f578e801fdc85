//! A document's metadata (its bytes are in object storage).

use super::entity_id;
use crate::fields::{Check, Obj, integer, one_of, sha256_hex, text};
use serde::Serialize;

/// Document types (the documents-by-type index).
pub const DOCUMENT_TYPES: &[&str] = &[
    "LAB_REPORT",
    "IMAGING",
    "ECG_REPORT",
    "PRESCRIPTION",
    "REFERRAL",
    "CONSENT",
    "DISCHARGE_SUMMARY",
    "OTHER",
];
/// Media types a document may have.
pub const DOCUMENT_MEDIA_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/tiff",
    "application/dicom",
    "text/plain",
];
/// The largest document, in bytes.
pub const MAX_DOCUMENT_BYTES: i64 = 100 * 1024 * 1024;

/// A document's metadata; its bytes live in object storage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentInfo {
    /// The document type (the documents-by-type index).
    #[serde(rename = "type")]
    pub document_type: &'static str,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    file_name: String,
    /// The media type the upload must carry.
    pub media_type: &'static str,
    /// The size the upload must have.
    pub size_bytes: i64,
    /// The SHA-256 the upload must have.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_id: Option<String>,
}

/// Reads a document's metadata.
pub fn document(check: &mut Check, obj: &Obj<'_>) -> Option<DocumentInfo> {
    check.only(
        obj,
        &[
            "type",
            "title",
            "description",
            "fileName",
            "mediaType",
            "sizeBytes",
            "sha256",
            "recordId",
        ],
    );
    let document_type = check.field(obj, "type", true, one_of(DOCUMENT_TYPES));
    let title = check.field(obj, "title", true, text(200));
    let description = check.field(obj, "description", false, text(2000));
    let file_name = check.field(obj, "fileName", true, |check, path, value| {
        let name = text(200)(check, path, value)?;
        if name.contains(['/', '\\', '"']) || name.starts_with('.') {
            return Err("must be a plain file name (no path, no quotes)".into());
        }
        Ok(name)
    });
    let media_type = check.field(obj, "mediaType", true, one_of(DOCUMENT_MEDIA_TYPES));
    let size_bytes = check.field(obj, "sizeBytes", true, integer(1, MAX_DOCUMENT_BYTES));
    let sha256 = check.field(obj, "sha256", true, sha256_hex());
    let record_id = check.field(obj, "recordId", false, entity_id());
    Some(DocumentInfo {
        document_type: document_type?,
        title: title?,
        description,
        file_name: file_name?,
        media_type: media_type?,
        size_bytes: size_bytes?,
        sha256: sha256?,
        record_id,
    })
}

//! A document's metadata (its bytes are in object storage).

use serde::Serialize;
use ward_domain::ClinicalRecordId;

use super::entity_id;
use crate::fields::{Check, Obj, integer, one_of, sha256_hex, text};

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

/// Where a document's file is: `PENDING_UPLOAD` (the upload session is open, the item
/// expires unless the file arrives), `RECEIVING` (one upload is storing it), then
/// `AVAILABLE` (its size and SHA-256 matched; indexed by type, no longer expiring) or
/// `REJECTED` (with the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DocumentStatus {
    /// Waiting for the file.
    PendingUpload,
    /// The file is arriving.
    Receiving,
    /// The file is stored and checked.
    Available,
    /// The file did not match its metadata.
    Rejected,
}

impl DocumentStatus {
    /// The status as the API and the stored item write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingUpload => "PENDING_UPLOAD",
            Self::Receiving => "RECEIVING",
            Self::Available => "AVAILABLE",
            Self::Rejected => "REJECTED",
        }
    }

    /// The status written `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "PENDING_UPLOAD" => Self::PendingUpload,
            "RECEIVING" => Self::Receiving,
            "AVAILABLE" => Self::Available,
            "REJECTED" => Self::Rejected,
            _ => return None,
        })
    }

    /// Whether the upload session is still open (the item expires unless the file
    /// arrives).
    pub fn awaits_file(self) -> bool {
        matches!(self, Self::PendingUpload | Self::Receiving)
    }
}

impl std::fmt::Display for DocumentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::as_optional_text"
    )]
    record_id: Option<ClinicalRecordId>,
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
    let record_id = check.field(obj, "recordId", false, entity_id(ClinicalRecordId::parse));
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

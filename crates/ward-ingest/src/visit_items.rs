//! Visit records as table items, and back.

use serde::Serialize;
use ward_domain::key_layout::{self, BY_UPLOAD_PK_ATTRIBUTE, BY_UPLOAD_SK_ATTRIBUTE};
use ward_domain::visit::VisitRow;
use ward_domain::{Mrn, ProviderId, UploadId, UtcInstant};
use ward_store::{Item, PK, SK, Value};

/// The audit trail of one record: where it came from.
#[derive(Debug, Clone)]
pub struct RecordSource<'a> {
    /// The tenant.
    pub provider: &'a ProviderId,
    /// The upload.
    pub upload: &'a UploadId,
    /// The object key of the source file.
    pub csv_file: &'a str,
    /// When the record was processed (RFC 3339, UTC).
    pub processed_at: &'a str,
    /// The provider's own name for the file, when it gave one.
    pub file_name: Option<&'a str>,
}

/// The fields of a valid visit row, borrowed: from a parsed [`VisitRow`], or from a row
/// spilled to disk while a file is sorted into key order.
#[derive(Debug, Clone, Copy)]
pub struct VisitParts<'a> {
    /// The patient.
    pub mrn: &'a Mrn,
    /// `date_time` as sent (trimmed).
    pub date_time: &'a str,
    /// The UTC instant it names.
    pub instant: UtcInstant,
    /// First name.
    pub first_name: &'a str,
    /// Last name.
    pub last_name: &'a str,
    /// Notes.
    pub doctors_notes: &'a str,
}

impl<'a> From<&'a VisitRow> for VisitParts<'a> {
    fn from(row: &'a VisitRow) -> Self {
        Self {
            mrn: &row.mrn,
            date_time: row.time.as_sent(),
            instant: row.time.instant(),
            first_name: &row.first_name,
            last_name: &row.last_name,
            doctors_notes: &row.doctors_notes,
        }
    }
}

/// The stored item of a visit (attribute names from the seed note, plus the audit trail).
pub fn visit_item(
    row: VisitParts<'_>,
    line: u64,
    content_hash: String,
    source: &RecordSource<'_>,
) -> Item {
    let provider = source.provider;
    // Built in one go from a list (sorted, then bulk-loaded) rather than by 17 searching
    // inserts: this runs once per ingested row. The list is in name order (byte order:
    // capitals first), so the sort only has to check it; any order gives the same item.
    let mut item = Item::from([
        (
            BY_UPLOAD_PK_ATTRIBUTE.into(),
            Value::S(key_layout::upload_records_pk(
                provider,
                source.upload,
                key_layout::upload_records_shard(line),
            )),
        ),
        (
            BY_UPLOAD_SK_ATTRIBUTE.into(),
            Value::S(key_layout::upload_records_sk(row.mrn, row.instant)),
        ),
        (
            PK.into(),
            Value::S(key_layout::patient_pk(provider, row.mrn)),
        ),
        (SK.into(), Value::S(key_layout::visit_sk(row.instant))),
        ("contentHash".into(), Value::S(content_hash)),
        ("csvFile".into(), Value::s(source.csv_file)),
        ("dateTime".into(), Value::s(row.date_time)),
        ("dateTimeProcessed".into(), Value::s(source.processed_at)),
        ("dateTimeUtc".into(), Value::S(row.instant.sortable())),
        ("doctorsNotes".into(), Value::s(row.doctors_notes)),
        ("entity".into(), Value::s("VISIT")),
        ("firstName".into(), Value::s(row.first_name)),
        ("lastName".into(), Value::s(row.last_name)),
        ("medicalRecordNumber".into(), Value::s(row.mrn.as_str())),
        ("providerId".into(), Value::s(provider.as_str())),
        ("sourceLine".into(), Value::n(line as i64)),
        ("uploadId".into(), Value::s(source.upload.as_str())),
    ]);
    if let Some(file_name) = source.file_name {
        item.insert("sourceFileName".into(), Value::s(file_name));
    }
    item
}

/// A visit record as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitRecord {
    /// The tenant.
    pub provider_id: String,
    /// The patient.
    pub medical_record_number: String,
    /// As sent, with its offset.
    pub date_time: String,
    /// The UTC instant (fixed width).
    pub date_time_utc: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Notes.
    pub doctors_notes: String,
    /// Object key of the source file.
    pub csv_file: String,
    /// When processed.
    pub date_time_processed: String,
    /// The upload that created it.
    pub upload_id: String,
    /// Physical line in the source file.
    pub source_line: u64,
    /// Content hash (hex).
    pub content_hash: String,
    /// The provider's own name for the source file, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_file_name: Option<String>,
}

impl VisitRecord {
    /// Reads a visit item; `None` if the item is not a visit.
    pub fn from_item(item: &Item) -> Option<Self> {
        let text = |name: &str| item.get(name).and_then(Value::as_s).map(str::to_owned);
        if text("entity").as_deref() != Some("VISIT") {
            return None;
        }
        Some(Self {
            provider_id: text("providerId")?,
            medical_record_number: text("medicalRecordNumber")?,
            date_time: text("dateTime")?,
            date_time_utc: text("dateTimeUtc")?,
            first_name: text("firstName")?,
            last_name: text("lastName")?,
            doctors_notes: text("doctorsNotes").unwrap_or_default(),
            csv_file: text("csvFile")?,
            date_time_processed: text("dateTimeProcessed")?,
            upload_id: text("uploadId")?,
            source_line: item.get("sourceLine").and_then(Value::as_i64)? as u64,
            content_hash: text("contentHash")?,
            source_file_name: text("sourceFileName"),
        })
    }
}

#[cfg(test)]
mod tests {
    use ward_domain::key_layout::BY_UPLOAD_INDEX;

    use super::*;

    #[test]
    fn the_by_upload_attributes_are_the_ones_that_key_its_index() {
        assert_eq!(
            ward_store::index_key_attributes(BY_UPLOAD_INDEX),
            Some((BY_UPLOAD_PK_ATTRIBUTE, BY_UPLOAD_SK_ATTRIBUTE))
        );
    }
}

//! Visit records as table items, and back.

use serde::Serialize;
use ward_domain::key_layout::{self, BY_UPLOAD_INDEX};
use ward_domain::visit::VisitRow;
use ward_domain::{ProviderId, UploadId};
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
}

/// The stored item of a visit (attribute names from the seed note, plus the audit trail).
pub fn visit_item(
    row: &VisitRow,
    line: u64,
    content_hash: String,
    source: &RecordSource<'_>,
) -> Item {
    let mut item = Item::new();
    let provider = source.provider;
    item.insert(
        PK.into(),
        Value::S(key_layout::patient_pk(provider, &row.mrn)),
    );
    item.insert(
        SK.into(),
        Value::S(key_layout::visit_sk(row.time.instant())),
    );
    item.insert(
        format!("{BY_UPLOAD_INDEX}PK"),
        Value::S(key_layout::upload_records_pk(
            provider,
            source.upload,
            key_layout::upload_records_shard(line),
        )),
    );
    item.insert(
        format!("{BY_UPLOAD_INDEX}SK"),
        Value::S(key_layout::upload_records_sk(line)),
    );
    item.insert("entity".into(), Value::s("VISIT"));
    item.insert("providerId".into(), Value::s(provider.as_str()));
    item.insert("medicalRecordNumber".into(), Value::s(row.mrn.as_str()));
    item.insert("dateTime".into(), Value::s(row.time.as_sent()));
    item.insert(
        "dateTimeUtc".into(),
        Value::S(row.time.instant().sortable()),
    );
    item.insert("firstName".into(), Value::s(&row.first_name));
    item.insert("lastName".into(), Value::s(&row.last_name));
    item.insert("doctorsNotes".into(), Value::s(&row.doctors_notes));
    item.insert("csvFile".into(), Value::s(source.csv_file));
    item.insert("dateTimeProcessed".into(), Value::s(source.processed_at));
    item.insert("uploadId".into(), Value::s(source.upload.as_str()));
    item.insert("sourceLine".into(), Value::n(line as i64));
    item.insert("contentHash".into(), Value::S(content_hash));
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
        })
    }
}

//! The visit schema: a visit as a table item (its attribute names, [`visit_item`]), the
//! stored visit read back ([`VisitRecord`], [`StoredSource`]), and every read of visits
//! ([`VisitRepository`]: a patient's visits in time order, the visits an upload created).
//! Nothing else names a visit attribute.

use std::sync::Arc;

use serde::Serialize;
use ward_domain::key_layout::{
    self, BY_UPLOAD_INDEX, BY_UPLOAD_PK_ATTRIBUTE, BY_UPLOAD_SK_ATTRIBUTE, UPLOAD_RECORD_SHARDS,
    VISIT_SK_PREFIX,
};
use ward_domain::visit::VisitRow;
use ward_domain::{Mrn, PatientKey, ProviderId, Pseudonyms, UploadId, UtcInstant};
use ward_store::merge::{self, Stream};
use ward_store::{Cursor, Item, Order, PK, Query, SK, SkCondition, StoreError, Table, Value};

/// The attribute names of a visit item (beside `PK`, `SK` and the by-upload index keys).
pub mod attribute {
    /// Always [`super::ENTITY`].
    pub const ENTITY: &str = "entity";
    /// The tenant.
    pub const PROVIDER_ID: &str = "providerId";
    /// The patient.
    pub const MRN: &str = "medicalRecordNumber";
    /// `date_time` as sent.
    pub const DATE_TIME: &str = "dateTime";
    /// The UTC instant, fixed width.
    pub const DATE_TIME_UTC: &str = "dateTimeUtc";
    /// First name.
    pub const FIRST_NAME: &str = "firstName";
    /// Last name.
    pub const LAST_NAME: &str = "lastName";
    /// The doctor's notes.
    pub const DOCTORS_NOTES: &str = "doctorsNotes";
    /// The source file's object key.
    pub const CSV_FILE: &str = "csvFile";
    /// When the row was processed.
    pub const DATE_TIME_PROCESSED: &str = "dateTimeProcessed";
    /// The upload that wrote it.
    pub const UPLOAD_ID: &str = "uploadId";
    /// Its physical line in the source file.
    pub const SOURCE_LINE: &str = "sourceLine";
    /// The content hash of the row.
    pub const CONTENT_HASH: &str = "contentHash";
    /// The provider's own name for the source file.
    pub const SOURCE_FILE_NAME: &str = "sourceFileName";

    /// The attributes that hold patient data: sealed at rest (`ward-protect`).
    pub const PROTECTED: [&str; 5] = [MRN, FIRST_NAME, LAST_NAME, DOCTORS_NOTES, SOURCE_FILE_NAME];

    /// Every visit attribute, in the order the embedded store's attribute dictionary
    /// first listed them (that order is stored: see `ward::embedded`).
    pub const ALL: [&str; 13] = [
        ENTITY,
        PROVIDER_ID,
        MRN,
        DATE_TIME,
        DATE_TIME_UTC,
        FIRST_NAME,
        LAST_NAME,
        DOCTORS_NOTES,
        CSV_FILE,
        DATE_TIME_PROCESSED,
        UPLOAD_ID,
        SOURCE_LINE,
        CONTENT_HASH,
    ];
}

/// The `entity` of every visit item.
pub const ENTITY: &str = "VISIT";

use attribute as a;

/// The audit trail of one record: where it came from.
#[derive(Debug, Clone)]
pub struct RecordSource<'a> {
    /// The tenant.
    pub provider: &'a ProviderId,
    /// What names the patient in the record's keys.
    pub pseudonyms: &'a Pseudonyms,
    /// The upload.
    pub upload: &'a UploadId,
    /// The object key of the source file.
    pub csv_file: &'a str,
    /// When the record was processed (RFC 3339, UTC).
    pub processed_at: &'a str,
    /// The provider's own name for the file, when it gave one.
    pub file_name: Option<&'a str>,
}

impl RecordSource<'_> {
    /// The key of `mrn`'s records.
    pub fn patient(&self, mrn: &Mrn) -> PatientKey {
        self.pseudonyms.patient(self.provider, mrn)
    }
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

/// The stored item of a visit (attribute names from the seed note, plus the audit trail),
/// in the partition of `patient` (the row's MRN's key, [`RecordSource::patient`]).
pub fn visit_item(
    row: VisitParts<'_>,
    patient: &PatientKey,
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
            Value::S(key_layout::upload_records_sk(patient, row.instant)),
        ),
        (
            PK.into(),
            Value::S(key_layout::patient_pk(provider, patient)),
        ),
        (SK.into(), Value::S(key_layout::visit_sk(row.instant))),
        (a::CONTENT_HASH.into(), Value::S(content_hash)),
        (a::CSV_FILE.into(), Value::s(source.csv_file)),
        (a::DATE_TIME.into(), Value::s(row.date_time)),
        (a::DATE_TIME_PROCESSED.into(), Value::s(source.processed_at)),
        (a::DATE_TIME_UTC.into(), Value::S(row.instant.sortable())),
        (a::DOCTORS_NOTES.into(), Value::s(row.doctors_notes)),
        (a::ENTITY.into(), Value::s(ENTITY)),
        (a::FIRST_NAME.into(), Value::s(row.first_name)),
        (a::LAST_NAME.into(), Value::s(row.last_name)),
        (a::MRN.into(), Value::s(row.mrn.as_str())),
        (a::PROVIDER_ID.into(), Value::s(provider.as_str())),
        (a::SOURCE_LINE.into(), Value::n(line as i64)),
        (a::UPLOAD_ID.into(), Value::s(source.upload.as_str())),
    ]);
    if let Some(file_name) = source.file_name {
        item.insert(a::SOURCE_FILE_NAME.into(), Value::s(file_name));
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
    /// Notes: clinical content, absent from the answers of roles that do not see it
    /// (see [`VisitRecord::withhold_clinical`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doctors_notes: Option<String>,
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
    /// Leaves out what only roles that see clinical content may read (the notes).
    pub fn withhold_clinical(&mut self) {
        self.doctors_notes = None;
    }

    /// Reads a visit item; `None` if the item is not a visit.
    pub fn from_item(item: &Item) -> Option<Self> {
        let text = |name: &str| item.get(name).and_then(Value::as_s).map(str::to_owned);
        if text(a::ENTITY).as_deref() != Some(ENTITY) {
            return None;
        }
        Some(Self {
            provider_id: text(a::PROVIDER_ID)?,
            medical_record_number: text(a::MRN)?,
            date_time: text(a::DATE_TIME)?,
            date_time_utc: text(a::DATE_TIME_UTC)?,
            first_name: text(a::FIRST_NAME)?,
            last_name: text(a::LAST_NAME)?,
            doctors_notes: Some(text(a::DOCTORS_NOTES).unwrap_or_default()),
            csv_file: text(a::CSV_FILE)?,
            date_time_processed: text(a::DATE_TIME_PROCESSED)?,
            upload_id: text(a::UPLOAD_ID)?,
            source_line: item.get(a::SOURCE_LINE).and_then(Value::as_i64)? as u64,
            content_hash: text(a::CONTENT_HASH)?,
            source_file_name: text(a::SOURCE_FILE_NAME),
        })
    }
}

/// Where a stored visit came from, as the worker compares it with a row that has the same
/// patient and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSource<'a> {
    /// The upload that wrote it (empty when the attribute is missing).
    pub upload_id: &'a str,
    /// Its line in that upload's file.
    pub source_line: Option<i64>,
    /// Its content hash.
    pub content_hash: &'a str,
    /// Its source file's object key.
    pub csv_file: &'a str,
}

impl<'a> StoredSource<'a> {
    /// The source attributes of a stored visit item.
    pub fn of(item: &'a Item) -> Self {
        let text = |name: &str| item.get(name).and_then(Value::as_s).unwrap_or_default();
        Self {
            upload_id: text(a::UPLOAD_ID),
            source_line: item.get(a::SOURCE_LINE).and_then(Value::as_i64),
            content_hash: text(a::CONTENT_HASH),
            csv_file: text(a::CSV_FILE),
        }
    }
}

/// Which of a patient's visits to read.
#[derive(Debug, Clone, Default)]
pub struct VisitRange {
    /// The earliest instant (inclusive).
    pub from: Option<UtcInstant>,
    /// The latest instant (inclusive).
    pub to: Option<UtcInstant>,
}

/// Why a visit read was refused.
#[derive(Debug, thiserror::Error)]
pub enum VisitReadError {
    /// `from` is after `to`.
    #[error("from is after to")]
    EmptyRange,
    /// The cursor was not made by this read.
    #[error("cursor is not valid for this request")]
    BadCursor,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of visits.
#[derive(Debug, Clone, Default)]
pub struct VisitPage {
    /// The visits, in the order asked for.
    pub records: Vec<VisitRecord>,
    /// Where the next page starts, when more may follow (an opaque token).
    pub next: Option<String>,
}

/// Every read of stored visits.
#[derive(Clone)]
pub struct VisitRepository {
    table: Arc<dyn Table>,
    pseudonyms: Arc<Pseudonyms>,
}

impl std::fmt::Debug for VisitRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitRepository").finish_non_exhaustive()
    }
}

impl VisitRepository {
    /// The repository over the table, naming patients by `pseudonyms`.
    pub fn new(table: Arc<dyn Table>, pseudonyms: Arc<Pseudonyms>) -> Self {
        Self { table, pseudonyms }
    }

    /// A patient's visits in time order: one query on the patient's partition.
    pub async fn of_patient(
        &self,
        provider: &ProviderId,
        mrn: &Mrn,
        range: VisitRange,
        order: Order,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<VisitPage, VisitReadError> {
        let sk = match (range.from, range.to) {
            (Some(from), Some(to)) if from > to => return Err(VisitReadError::EmptyRange),
            (Some(from), Some(to)) => {
                SkCondition::Between(key_layout::visit_sk(from), key_layout::visit_sk(to))
            }
            (Some(from), None) => {
                SkCondition::Between(key_layout::visit_sk(from), format!("{VISIT_SK_PREFIX}~"))
            }
            (None, Some(to)) => {
                SkCondition::Between(VISIT_SK_PREFIX.into(), key_layout::visit_sk(to))
            }
            (None, None) => SkCondition::BeginsWith(VISIT_SK_PREFIX.into()),
        };
        let cursor = cursor
            .map(Cursor::decode)
            .transpose()
            .map_err(|_| VisitReadError::BadCursor)?;
        let page = self
            .table
            .query(Query {
                index: None,
                pk: key_layout::patient_pk(provider, &self.pseudonyms.patient(provider, mrn)),
                sk,
                order,
                limit,
                cursor,
            })
            .await?;
        Ok(VisitPage {
            records: page
                .items
                .iter()
                .filter_map(VisitRecord::from_item)
                .collect(),
            next: page.next.map(|c| c.encode()),
        })
    }

    /// The visits an upload created, in index order (patient, then time): its index
    /// shards merged into one list with one cursor.
    pub async fn of_upload(
        &self,
        provider: &ProviderId,
        upload: &UploadId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<VisitPage, VisitReadError> {
        let after = match cursor {
            None => SkCondition::Any,
            Some(token) => {
                SkCondition::Gt(merge::decode_cursor(token).map_err(|_| VisitReadError::BadCursor)?)
            }
        };
        let streams = (0..UPLOAD_RECORD_SHARDS)
            .map(|shard| Stream {
                query: Query {
                    index: Some(BY_UPLOAD_INDEX),
                    pk: key_layout::upload_records_pk(provider, upload, shard),
                    sk: after.clone(),
                    order: Order::Forward,
                    limit,
                    cursor: None,
                },
                keep: Box::new(|_| true),
            })
            .collect();
        let merged = merge::merge(
            self.table.as_ref(),
            streams,
            Order::Forward,
            limit,
            |item| {
                item.get(BY_UPLOAD_SK_ATTRIBUTE)
                    .and_then(Value::as_s)
                    .unwrap_or_default()
                    .to_owned()
            },
        )
        .await?;
        Ok(VisitPage {
            records: merged
                .items
                .iter()
                .filter_map(VisitRecord::from_item)
                .collect(),
            next: merged.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_by_upload_attributes_are_the_ones_that_key_its_index() {
        assert_eq!(
            ward_store::index_key_attributes(BY_UPLOAD_INDEX),
            Some((BY_UPLOAD_PK_ATTRIBUTE, BY_UPLOAD_SK_ATTRIBUTE))
        );
    }
}

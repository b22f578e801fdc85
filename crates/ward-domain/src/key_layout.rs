//! Every table key and object path Ward builds, in one place.
//!
//! Rules (SPEC section 3, `docs/data-model.md`): every provider-owned partition key starts
//! with `PROV#{providerId}`; patient data lives in the patient's partition; sort keys that
//! carry time use [`UtcInstant::sortable`]; an index partition on a hot write path is
//! sharded. Platform items (queue, operator) start with `PLATFORM#`. Identifiers cannot
//! hold `#` or `/`, so no value can forge another key or path. No key or path holds an
//! MRN or an email: a patient is named by its [`PatientKey`] (a keyed pseudonym, see
//! [`crate::pseudonym`]), an email by its blind index.

use crate::ids::{
    ClinicName, ClinicianId, DocumentId, ProviderId, RunId, TimeOrderedId, UploadId, UserId,
};
use crate::pseudonym::PatientKey;
use crate::time::UtcInstant;

/// Shards of the records-by-upload index: one upload's writes spread over this many
/// index partitions.
pub const UPLOAD_RECORD_SHARDS: u32 = 16;

/// A secondary index of the table: its name and the attributes that key it (see
/// `ward_store::INDEX_KEY_ATTRIBUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexKeys {
    /// The index's name.
    pub name: &'static str,
    /// The attribute holding an item's partition key in the index.
    pub pk: &'static str,
    /// The attribute holding an item's sort key in the index.
    pub sk: &'static str,
}

/// `GSI1`, as the EMR uses it: a clinician's appointments and clinical records by time
/// (partition [`clinician_pk`], sort key `{kind prefix}{id}`). CSV visits use the same
/// index by upload ([`BY_UPLOAD_INDEX`]).
pub const CLINICIAN_INDEX: IndexKeys = IndexKeys {
    name: "GSI1",
    pk: "GSI1PK",
    sk: "GSI1SK",
};
/// `GSI2`: lists of a provider's entities (its clinicians, a clinic's patients, a clinic's
/// appointments of one day).
pub const LIST_INDEX: IndexKeys = IndexKeys {
    name: "GSI2",
    pk: "GSI2PK",
    sk: "GSI2SK",
};
/// `GSI3`: clinical records and documents by type, sharded.
pub const TYPE_INDEX: IndexKeys = IndexKeys {
    name: "GSI3",
    pk: "GSI3PK",
    sk: "GSI3SK",
};

/// The name of the records-by-upload secondary index.
pub const BY_UPLOAD_INDEX: &str = "GSI1";
/// The attribute that holds an item's [`BY_UPLOAD_INDEX`] partition key.
pub const BY_UPLOAD_PK_ATTRIBUTE: &str = "GSI1PK";
/// The attribute that holds an item's [`BY_UPLOAD_INDEX`] sort key.
pub const BY_UPLOAD_SK_ATTRIBUTE: &str = "GSI1SK";

/// A patient's partition: `PROV#{p}#PAT#{patient key}`.
pub fn patient_pk(provider: &ProviderId, patient: &PatientKey) -> String {
    concat(&["PROV#", provider.as_str(), "#PAT#", patient.as_str()], 0)
}

/// Sort-key prefix of visit records in a patient's partition.
pub const VISIT_SK_PREFIX: &str = "VISIT#";

/// A visit's sort key: `VISIT#{UTC instant, fixed width}`.
pub fn visit_sk(instant: UtcInstant) -> String {
    let mut key = concat(&[VISIT_SK_PREFIX], UtcInstant::SORTABLE_LEN);
    instant.push_sortable(&mut key);
    key
}

/// Records-by-upload index partition for one shard: `PROV#{p}#UPLOAD#{id}#S{nn}`.
pub fn upload_records_pk(provider: &ProviderId, upload: &UploadId, shard: u32) -> String {
    format!("PROV#{provider}#UPLOAD#{upload}#S{shard:02}")
}

/// The shard a source line's index entry goes to.
pub fn upload_records_shard(line: u64) -> u32 {
    (line % u64::from(UPLOAD_RECORD_SHARDS)) as u32
}

/// Records-by-upload index sort key: `PAT#{patient key}#{UTC instant, fixed width}`, so a
/// file's records list by patient, then time. Patient keys have one length, so this order
/// is the order of the records' own keys, and a file written in key order (the embedded
/// store's ingest) appends to each shard instead of inserting at random places.
pub fn upload_records_sk(patient: &PatientKey, instant: UtcInstant) -> String {
    let mut key = concat(&["PAT#", patient.as_str(), "#"], UtcInstant::SORTABLE_LEN);
    instant.push_sortable(&mut key);
    key
}

/// The parts joined, with room for `more` bytes after them (the keys of the ingest path
/// are built once or twice per row; `format!` was a measurable share of it).
fn concat(parts: &[&str], more: usize) -> String {
    let mut text = String::with_capacity(parts.iter().map(|part| part.len()).sum::<usize>() + more);
    for part in parts {
        text.push_str(part);
    }
    text
}

/// A provider's uploads partition: `PROV#{p}#UPLOADS` (low write rate: one item per file).
pub fn uploads_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}#UPLOADS")
}

/// An upload's sort key: `UPLOAD#{id}`; ids start with their UTC creation time, so the
/// partition reads newest-first in reverse order.
pub fn upload_sk(upload: &UploadId) -> String {
    format!("UPLOAD#{upload}")
}

/// A provider's processed visit files by content: `PROV#{p}#FILES` (one write per
/// completed upload, like the uploads partition).
pub fn files_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}#FILES")
}

/// A processed file's sort key: `SHA256#{hex digest of the file's bytes}`.
pub fn file_sk(sha256_hex: &str) -> String {
    format!("SHA256#{sha256_hex}")
}

/// A provider's own partition (profile, API keys): `PROV#{p}`.
pub fn provider_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}")
}

/// The provider profile item's sort key.
pub const PROVIDER_SK: &str = "PROVIDER";

/// An API key's sort key in the provider partition: `APIKEY#{keyId}`.
pub fn api_key_sk(key_id: &str) -> String {
    format!("APIKEY#{key_id}")
}

/// Sort-key prefix of a built-in user in the provider partition.
pub const USER_SK_PREFIX: &str = "USER#";

/// A built-in user's sort key in the provider partition: `USER#{userId}`.
pub fn user_sk(user: &UserId) -> String {
    format!("{USER_SK_PREFIX}{user}")
}

/// The platform item holding the secret that signs Ward's own sign-in tokens.
pub const TOKEN_SECRET_PK: &str = "PLATFORM#TOKENS";
/// Sort key of the token secret.
pub const TOKEN_SECRET_SK: &str = "SIGNING";

/// Sort-key prefix of what gives one clinician access to a patient, in the patient's
/// partition: `ACCESS#{clinicianId}#CARE` (a care relation: an appointment or a clinical
/// record with the clinician) and `ACCESS#{clinicianId}#EMERGENCY` (a break-glass grant,
/// which expires). One query of this prefix answers "may this clinician read this patient".
pub fn access_sk_prefix(clinician: &ClinicianId) -> String {
    format!("ACCESS#{clinician}#")
}

/// The care relation of a clinician with a patient (see [`access_sk_prefix`]).
pub fn care_sk(clinician: &ClinicianId) -> String {
    format!("ACCESS#{clinician}#CARE")
}

/// A clinician's break-glass grant to a patient (see [`access_sk_prefix`]).
pub fn emergency_sk(clinician: &ClinicianId) -> String {
    format!("ACCESS#{clinician}#EMERGENCY")
}

/// Start of the `GSI1` sort keys of care relations in a clinician's partition.
pub const CARE_INDEX_SK_PREFIX: &str = "PATIENT#";

/// `GSI1` sort key of a care relation in the clinician's partition: `PATIENT#{patient
/// key}` (a clinician's patients, listed from its own partition).
pub fn care_index_sk(patient: &PatientKey) -> String {
    format!("{CARE_INDEX_SK_PREFIX}{patient}")
}

/// A provider's break-glass sessions, for its administrator to review:
/// `PROV#{p}#BREAKGLASS`, sort key `{sortable start}#{grantId}`.
pub fn break_glass_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}#BREAKGLASS")
}

/// `GSI2` partition of the audit events about one patient (its access log):
/// `PROV#{p}#PAT#{patient key}#ACCESSLOG`, sort key as the event's own.
pub fn access_log_pk(provider: &ProviderId, patient: &PatientKey) -> String {
    format!("PROV#{provider}#PAT#{patient}#ACCESSLOG")
}

/// A provider's erased patients (each a tombstone on its pseudonym, never its MRN):
/// `PROV#{p}#ERASED`, sort key [`erased_sk`].
pub fn erased_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}#ERASED")
}

/// The item of [`erased_pk`] that says when the provider's latest erasure last moved
/// (`erasedAtSeconds`): an upload finished before it no longer answers for a
/// byte-identical file.
pub const LATEST_ERASURE_SK: &str = "#LATEST";

/// An erased patient's tombstone: `PAT#{patient key}`.
pub fn erased_sk(patient: &PatientKey) -> String {
    format!("PAT#{patient}")
}

/// The tombstone's sort key for the patient whose partition is `patient_pk` (what the
/// ingest holds): [`erased_sk`] of its patient key; `None` for another partition.
pub fn erased_sk_of_partition(provider: &ProviderId, patient_pk: &str) -> Option<String> {
    let rest = patient_pk
        .strip_prefix("PROV#")?
        .strip_prefix(provider.as_str())?
        .strip_prefix("#PAT#")?;
    PatientKey::parse(rest).map(|key| erased_sk(&key))
}

/// The platform's list of providers (operator-only, low write rate).
pub const PROVIDERS_PK: &str = "PLATFORM#PROVIDERS";

/// A provider's entry in the platform list.
pub fn provider_list_sk(provider: &ProviderId) -> String {
    format!("PROV#{provider}")
}

/// Where an upload's object lives at each stage of its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStage {
    /// Written by the signed PUT, not yet claimed.
    Uploaded,
    /// Claimed by a worker.
    Processing,
    /// Processed; the report and error list sit beside it.
    Completed,
    /// Unusable as a whole; the report says why.
    Failed,
}

impl ObjectStage {
    /// The folder name.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// What an upload carries; it decides the file's extension, media type and processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UploadKind {
    /// A CSV file of patient visits (SPEC section 2).
    #[default]
    Visits,
    /// A JSON file of facilities (SPEC section 4).
    Facilities,
}

impl UploadKind {
    /// The name used in the API and in stored items.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visits => "visits",
            Self::Facilities => "facilities",
        }
    }

    /// The kind with this name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Visits, Self::Facilities]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The stored file's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Visits => "csv",
            Self::Facilities => "json",
        }
    }

    /// The media type the upload URL requires.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Visits => "text/csv",
            Self::Facilities => "application/json",
        }
    }
}

/// `{p}/{stage}/{uploadId}.csv` (visits) or `.json` (facilities)
pub fn upload_object_key(
    provider: &ProviderId,
    stage: ObjectStage,
    upload: &UploadId,
    kind: UploadKind,
) -> String {
    format!(
        "{provider}/{}/{upload}.{}",
        stage.folder(),
        kind.extension()
    )
}

/// `{p}/{stage}/{uploadId}.report.json`, beside the processed file.
pub fn report_object_key(provider: &ProviderId, stage: ObjectStage, upload: &UploadId) -> String {
    format!("{provider}/{}/{upload}.report.json", stage.folder())
}

/// `{p}/{stage}/{uploadId}.errors.csv`: every rejected, conflicting row.
pub fn errors_object_key(provider: &ProviderId, stage: ObjectStage, upload: &UploadId) -> String {
    format!("{provider}/{}/{upload}.errors.csv", stage.folder())
}

/// Reads the provider and upload id back from an uploaded object's key, as the worker
/// does: the provider comes from the key Ward wrote, never from the file.
pub fn parse_uploaded_object_key(key: &str) -> Option<(ProviderId, UploadId, UploadKind)> {
    let (provider, rest) = key.split_once('/')?;
    let (name, extension) = rest.strip_prefix("uploaded/")?.rsplit_once('.')?;
    let kind = [UploadKind::Visits, UploadKind::Facilities]
        .into_iter()
        .find(|kind| kind.extension() == extension)?;
    Some((
        ProviderId::parse(provider).ok()?,
        UploadId::parse(name).ok()?,
        kind,
    ))
}

/// `PROV#{p}#ANALYTICS`: the provider's facility dataset pointer and analytics runs.
pub fn analytics_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}#ANALYTICS")
}

/// The sort key of the facility dataset's pointer (which Parquet object is current).
pub const FACILITY_DATASET_SK: &str = "DATASET#facilities";

/// `RUN#{runId}`: one analytics run (run ids have the upload id's form, so they sort by
/// time).
pub fn analytics_run_sk(run: &RunId) -> String {
    format!("RUN#{run}")
}

/// `{p}/datasets/facilities/{version}-{uploadId}.parquet`: one version of the provider's
/// facility dataset (one row per facility id).
pub fn facility_dataset_object_key(
    provider: &ProviderId,
    version: i64,
    upload: &UploadId,
) -> String {
    format!("{provider}/datasets/facilities/{version:010}-{upload}.parquet")
}

/// `{p}/results/{runId}/{queryId}.{json|csv}`: one query's result in one run.
pub fn result_object_key(
    provider: &ProviderId,
    run: &RunId,
    query: &str,
    extension: &str,
) -> String {
    format!("{provider}/results/{run}/{query}.{extension}")
}

// ---- The EMR model (SPEC section 5, `docs/data-model.md` patterns 14-30) ----
//
// Entity ids are time-ordered (`TimeOrderedId`: `{UTC yyyymmddThhmmssZ}-{16 hex}`), built from the
// entity's own time (appointment start, visit time, document creation, bill issue), so a
// sort key `APPT#{id}` is in time order and an id alone locates its item.

/// Sort key of a patient's profile in the patient partition.
pub const PATIENT_PROFILE_SK: &str = "PROFILE";

/// Sort-key prefixes of the patient partition's EMR items, and the names used in the API
/// and the timeline.
pub const APPOINTMENT_SK_PREFIX: &str = "APPT#";
/// Clinical records.
pub const CLINICAL_RECORD_SK_PREFIX: &str = "RECORD#";
/// Documents.
pub const DOCUMENT_SK_PREFIX: &str = "DOC#";
/// Bills.
pub const BILL_SK_PREFIX: &str = "BILL#";

/// `{prefix}{id}` for an item of the patient partition.
pub fn emr_sk(prefix: &str, id: &impl TimeOrderedId) -> String {
    format!("{prefix}{id}")
}

/// Shards of the busy, provider-wide index partitions (patients of a clinic, records and
/// documents by type): writes spread over this many partitions, reads merge them.
pub const EMR_INDEX_SHARDS: u32 = 8;

/// Shards of one day's audit partition.
pub const AUDIT_SHARDS: u32 = 8;

/// A stable shard (FNV-1a) of a text among `shards`.
pub fn shard_of(text: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards
}

/// A clinician's partition (profile): `PROV#{p}#CLIN#{clinicianId}`; also the `GSI1`
/// partition of the clinician's appointments and records.
pub fn clinician_pk(provider: &ProviderId, clinician: &ClinicianId) -> String {
    format!("PROV#{provider}#CLIN#{clinician}")
}

/// Sort key of a clinician's profile.
pub const CLINICIAN_PROFILE_SK: &str = "PROFILE";

/// `GSI2` partition listing a provider's clinicians (`GSI2SK` = clinician id).
pub fn clinicians_pk(provider: &ProviderId) -> String {
    format!("PROV#{provider}#CLINICIANS")
}

/// `GSI2` partition of one shard of a clinic's patients (`GSI2SK` = MRN):
/// `PROV#{p}#CLINIC#{clinic}#PATIENTS#S{nn}`.
pub fn clinic_patients_pk(provider: &ProviderId, clinic: &ClinicName, shard: u32) -> String {
    format!("PROV#{provider}#CLINIC#{clinic}#PATIENTS#S{shard:02}")
}

/// `GSI2` partition of a clinic's appointments on one local day (`GSI2SK` = appointment
/// id): `PROV#{p}#CLINIC#{clinic}#DAY#{yyyy-mm-dd}`.
pub fn clinic_day_pk(provider: &ProviderId, clinic: &ClinicName, day: &str) -> String {
    format!("PROV#{provider}#CLINIC#{clinic}#DAY#{day}")
}

/// `GSI3` partition of one shard of the clinical records of one type (`GSI3SK` = record
/// id): `PROV#{p}#RECTYPE#{type}#S{nn}`.
pub fn records_by_type_pk(provider: &ProviderId, record_type: &str, shard: u32) -> String {
    format!("PROV#{provider}#RECTYPE#{record_type}#S{shard:02}")
}

/// `GSI3` partition of one shard of the documents of one type (`GSI3SK` = document id):
/// `PROV#{p}#DOCTYPE#{type}#S{nn}`.
pub fn documents_by_type_pk(provider: &ProviderId, document_type: &str, shard: u32) -> String {
    format!("PROV#{provider}#DOCTYPE#{document_type}#S{shard:02}")
}

/// The claim that makes an email unique within a provider: `PROV#{p}#EMAIL#{blind index}`
/// / `EMAIL` (the keyed blind index of the lower-cased address,
/// [`crate::Pseudonyms::email`]: neither the address nor an unkeyed hash of it, which
/// anyone could test guesses against).
pub fn email_claim_pk(provider: &ProviderId, email_index: &str) -> String {
    format!("PROV#{provider}#EMAIL#{email_index}")
}

/// Sort key of an email claim.
pub const EMAIL_CLAIM_SK: &str = "EMAIL";

/// The busy slots of a clinician on one UTC day: `PROV#{p}#CLIN#{c}#BUSY#{yyyy-mm-dd}`,
/// one item per slot (`SLOT#{hhmm}`), written with the appointment in one transaction.
pub fn busy_slots_pk(provider: &ProviderId, clinician: &ClinicianId, utc_day: &str) -> String {
    format!("PROV#{provider}#CLIN#{clinician}#BUSY#{utc_day}")
}

/// A busy slot's sort key: `SLOT#{hhmm}` (UTC).
pub fn busy_slot_sk(hour: u32, minute: u32) -> String {
    format!("SLOT#{hour:02}{minute:02}")
}

/// One shard of a day's audit events: `PROV#{p}#AUDIT#{yyyy-mm-dd}#S{nn}`; sort key
/// `{sortable instant}#{eventId}`.
pub fn audit_pk(provider: &ProviderId, utc_day: &str, shard: u32) -> String {
    format!("PROV#{provider}#AUDIT#{utc_day}#S{shard:02}")
}

/// An idempotency key's record: `PROV#{p}#IDEM#{sha256 of the key}` / `IDEM` (expires).
pub fn idempotency_pk(provider: &ProviderId, key_sha256_hex: &str) -> String {
    format!("PROV#{provider}#IDEM#{key_sha256_hex}")
}

/// Sort key of an idempotency record.
pub const IDEMPOTENCY_SK: &str = "IDEM";

/// `{p}/documents/{patient key}/{documentId}`: a document's bytes.
pub fn document_object_key(
    provider: &ProviderId,
    patient: &PatientKey,
    document: &DocumentId,
) -> String {
    format!("{}/{document}", patient_documents_prefix(provider, patient))
}

/// Where every document object of one patient is (what its erasure removes).
pub fn patient_documents_prefix(provider: &ProviderId, patient: &PatientKey) -> String {
    format!("{provider}/{DOCUMENTS_FOLDER}/{patient}")
}

/// The folder of a provider's document objects (the second part of their paths).
pub const DOCUMENTS_FOLDER: &str = "documents";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_data_model_doc() {
        let provider = ProviderId::parse("PROV001").unwrap();
        let pseudonyms = crate::Pseudonyms::new(&[7; 32]);
        let mrn = crate::Mrn::parse("MRN123456").unwrap();
        let patient = pseudonyms.patient(&provider, &mrn);
        let instant = UtcInstant::parse_rfc3339("2025-03-26T10:30:00-07:00").unwrap();
        assert_eq!(
            patient_pk(&provider, &patient),
            format!("PROV#PROV001#PAT#{patient}")
        );
        assert!(!patient_pk(&provider, &patient).contains("MRN"));
        assert_eq!(erased_pk(&provider), "PROV#PROV001#ERASED");
        assert_eq!(erased_sk(&patient), format!("PAT#{patient}"));
        assert_eq!(
            erased_sk_of_partition(&provider, &patient_pk(&provider, &patient)),
            Some(erased_sk(&patient))
        );
        // Another provider's partition, or one that is not a patient's, has none.
        let other_provider = ProviderId::parse("PROV002").unwrap();
        assert_eq!(
            erased_sk_of_partition(&other_provider, &patient_pk(&provider, &patient)),
            None
        );
        assert_eq!(
            erased_sk_of_partition(&provider, "PROV#PROV001#PAT#MRN1"),
            None
        );
        assert_eq!(
            erased_sk_of_partition(&provider, &access_log_pk(&provider, &patient)),
            None
        );
        assert_eq!(visit_sk(instant), "VISIT#2025-03-26T17:30:00.000000000Z");
        let upload = UploadId::parse("20250326T181500Z-0123456789abcdef").unwrap();
        assert_eq!(
            upload_records_pk(&provider, &upload, upload_records_shard(35)),
            "PROV#PROV001#UPLOAD#20250326T181500Z-0123456789abcdef#S03"
        );
        let instant = UtcInstant::from_unix_nanos(1_700_000_000_000_000_000);
        assert_eq!(
            upload_records_sk(&patient, instant),
            format!("PAT#{patient}#2023-11-14T22:13:20.000000000Z")
        );
        // Index entries sort as the records' own keys do, patient by patient.
        let other = pseudonyms.patient(&provider, &crate::Mrn::parse("MRN1-2").unwrap());
        assert_eq!(
            upload_records_sk(&patient, instant) < upload_records_sk(&other, instant),
            patient_pk(&provider, &patient) < patient_pk(&provider, &other)
        );
        let key = upload_object_key(
            &provider,
            ObjectStage::Uploaded,
            &upload,
            UploadKind::Visits,
        );
        assert_eq!(
            key,
            "PROV001/uploaded/20250326T181500Z-0123456789abcdef.csv"
        );
        assert_eq!(
            parse_uploaded_object_key(&key),
            Some((provider.clone(), upload.clone(), UploadKind::Visits))
        );
        let json = upload_object_key(
            &provider,
            ObjectStage::Uploaded,
            &upload,
            UploadKind::Facilities,
        );
        assert_eq!(
            json,
            "PROV001/uploaded/20250326T181500Z-0123456789abcdef.json"
        );
        assert_eq!(
            parse_uploaded_object_key(&json),
            Some((provider.clone(), upload.clone(), UploadKind::Facilities))
        );
        assert_eq!(parse_uploaded_object_key("PROV001/processing/x.csv"), None);
        assert_eq!(parse_uploaded_object_key("../uploaded/x.csv"), None);
        assert_eq!(
            parse_uploaded_object_key(
                "PROV001/uploaded/20250326T181500Z-0123456789abcdef.report.json"
            ),
            None
        );
        assert_eq!(analytics_pk(&provider), "PROV#PROV001#ANALYTICS");
        assert_eq!(
            analytics_run_sk(&RunId::of_upload(&upload)),
            "RUN#20250326T181500Z-0123456789abcdef"
        );
        assert_eq!(
            facility_dataset_object_key(&provider, 7, &upload),
            "PROV001/datasets/facilities/0000000007-20250326T181500Z-0123456789abcdef.parquet"
        );
        assert_eq!(
            result_object_key(&provider, &RunId::of_upload(&upload), "per_state", "csv"),
            "PROV001/results/20250326T181500Z-0123456789abcdef/per_state.csv"
        );
        assert_eq!(
            emr_sk(APPOINTMENT_SK_PREFIX, &upload),
            "APPT#20250326T181500Z-0123456789abcdef"
        );
        assert_eq!(
            clinic_day_pk(
                &provider,
                &ClinicName::parse("NORTH").unwrap(),
                "2025-03-26"
            ),
            "PROV#PROV001#CLINIC#NORTH#DAY#2025-03-26"
        );
        assert_eq!(
            records_by_type_pk(&provider, "CONSULTATION", 3),
            "PROV#PROV001#RECTYPE#CONSULTATION#S03"
        );
        assert_eq!(
            audit_pk(&provider, "2025-03-26", 7),
            "PROV#PROV001#AUDIT#2025-03-26#S07"
        );
        assert_eq!(busy_slot_sk(9, 5), "SLOT#0905");
        assert_eq!(shard_of("MRN1", 8), shard_of("MRN1", 8));
        let spread: std::collections::HashSet<u32> =
            (0..200).map(|i| shard_of(&format!("MRN{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "200 ids reach every shard");
    }
}

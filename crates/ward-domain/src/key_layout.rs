//! Every table key and object path Ward builds, in one place.
//!
//! Rules (SPEC section 3, `docs/data-model.md`): every provider-owned partition key starts
//! with `PROV#{providerId}`; patient data lives in the patient's partition; sort keys that
//! carry time use [`UtcInstant::sortable`]; an index partition on a hot write path is
//! sharded. Platform items (queue, operator) start with `PLATFORM#`. Identifiers cannot
//! hold `#` or `/`, so no value can forge another key or path.

use crate::ids::{Mrn, ProviderId, UploadId};
use crate::time::UtcInstant;

/// Shards of the records-by-upload index: one upload's writes spread over this many
/// index partitions.
pub const UPLOAD_RECORD_SHARDS: u32 = 16;

/// The name of the records-by-upload secondary index.
pub const BY_UPLOAD_INDEX: &str = "GSI1";

/// A patient's partition: `PROV#{p}#PAT#{mrn}`.
pub fn patient_pk(provider: &ProviderId, mrn: &Mrn) -> String {
    format!("PROV#{provider}#PAT#{mrn}")
}

/// Sort-key prefix of visit records in a patient's partition.
pub const VISIT_SK_PREFIX: &str = "VISIT#";

/// A visit's sort key: `VISIT#{UTC instant, fixed width}`.
pub fn visit_sk(instant: UtcInstant) -> String {
    format!("{VISIT_SK_PREFIX}{}", instant.sortable())
}

/// Records-by-upload index partition for one shard: `PROV#{p}#UPLOAD#{id}#S{nn}`.
pub fn upload_records_pk(provider: &ProviderId, upload: &UploadId, shard: u32) -> String {
    format!("PROV#{provider}#UPLOAD#{upload}#S{shard:02}")
}

/// The shard a source line's index entry goes to.
pub fn upload_records_shard(line: u64) -> u32 {
    (line % u64::from(UPLOAD_RECORD_SHARDS)) as u32
}

/// Records-by-upload index sort key: `LINE#{line, 12 digits}`.
pub fn upload_records_sk(line: u64) -> String {
    format!("LINE#{line:012}")
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
pub fn analytics_run_sk(run: &UploadId) -> String {
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
    run: &UploadId,
    query: &str,
    extension: &str,
) -> String {
    format!("{provider}/results/{run}/{query}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_data_model_doc() {
        let provider = ProviderId::parse("PROV001").unwrap();
        let mrn = Mrn::parse("MRN123456").unwrap();
        let instant = UtcInstant::parse_rfc3339("2025-03-26T10:30:00-07:00").unwrap();
        assert_eq!(patient_pk(&provider, &mrn), "PROV#PROV001#PAT#MRN123456");
        assert_eq!(visit_sk(instant), "VISIT#2025-03-26T17:30:00.000000000Z");
        let upload = UploadId::parse("20250326T181500Z-0123456789abcdef").unwrap();
        assert_eq!(
            upload_records_pk(&provider, &upload, upload_records_shard(35)),
            "PROV#PROV001#UPLOAD#20250326T181500Z-0123456789abcdef#S03"
        );
        assert_eq!(upload_records_sk(35), "LINE#000000000035");
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
            analytics_run_sk(&upload),
            "RUN#20250326T181500Z-0123456789abcdef"
        );
        assert_eq!(
            facility_dataset_object_key(&provider, 7, &upload),
            "PROV001/datasets/facilities/0000000007-20250326T181500Z-0123456789abcdef.parquet"
        );
        assert_eq!(
            result_object_key(&provider, &upload, "per_state", "csv"),
            "PROV001/results/20250326T181500Z-0123456789abcdef/per_state.csv"
        );
    }
}

//! The provider's facility dataset: one Parquet object holding the current facilities, one
//! row per facility id, and a pointer item in the table naming the current object.
//!
//! Merging an upload: read the current version, keep each of its rows unless the upload
//! brings the same facility id (the upload whose id sorts later wins: upload ids start
//! with their time, so "the latest upload wins" holds whatever order the jobs run in),
//! write the result as a new object, and move the pointer with a version condition. A lost
//! race re-reads and merges again; a crash leaves at most an unreferenced object. Merging
//! the same upload twice gives the same dataset, which is what makes retries safe.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use ward_domain::key_layout;
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ingest::ProcessError;
use ward_store::{Condition, Item, Key, PK, SK, StoreError, Table, VERSION, Value};

use crate::facility::Facility;

/// The dataset's schema (the `facilities` table of ad hoc SQL).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("facility_id", DataType::Utf8, false),
        Field::new("facility_name", DataType::Utf8, true),
        Field::new("address", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, false),
        Field::new("zip", DataType::Utf8, true),
        Field::new("employee_count", DataType::Int64, false),
        Field::new("services", list_of(DataType::Utf8), false),
        Field::new("labs", list_of(DataType::Struct(lab_fields())), false),
        Field::new(
            "accreditations",
            list_of(DataType::Struct(accreditation_fields())),
            false,
        ),
        Field::new("source_upload", DataType::Utf8, false),
    ]))
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

fn lab_fields() -> Fields {
    Fields::from(vec![
        Field::new("lab_name", DataType::Utf8, false),
        Field::new("certifications", list_of(DataType::Utf8), false),
    ])
}

fn accreditation_fields() -> Fields {
    Fields::from(vec![
        Field::new("accreditation_body", DataType::Utf8, false),
        Field::new("accreditation_id", DataType::Utf8, false),
        Field::new("valid_until", DataType::Date32, false),
    ])
}

fn offsets(lengths: impl Iterator<Item = usize>) -> OffsetBuffer<i32> {
    OffsetBuffer::from_lengths(lengths)
}

fn list_array(item: DataType, lengths: impl Iterator<Item = usize>, values: ArrayRef) -> ArrayRef {
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", item, false)),
        offsets(lengths),
        values,
        None,
    ))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<StringArray>())
}

/// Facilities (all from `upload`) as one record batch of [`schema`].
pub fn to_batch(facilities: &[Facility], upload: &UploadId) -> Result<RecordBatch, ProcessError> {
    let opt = |get: fn(&Facility) -> &Option<String>| -> ArrayRef {
        Arc::new(
            facilities
                .iter()
                .map(|f| get(f).as_deref())
                .collect::<StringArray>(),
        )
    };
    let services = list_array(
        DataType::Utf8,
        facilities.iter().map(|f| f.services.len()),
        strings(
            facilities
                .iter()
                .flat_map(|f| f.services.iter().map(String::as_str)),
        ),
    );
    let labs: Vec<_> = facilities.iter().flat_map(|f| f.labs.iter()).collect();
    let lab_values = StructArray::new(
        lab_fields(),
        vec![
            strings(labs.iter().map(|lab| lab.lab_name.as_str())),
            list_array(
                DataType::Utf8,
                labs.iter().map(|lab| lab.certifications.len()),
                strings(
                    labs.iter()
                        .flat_map(|lab| lab.certifications.iter().map(String::as_str)),
                ),
            ),
        ],
        None,
    );
    let accreditations: Vec<_> = facilities
        .iter()
        .flat_map(|f| f.accreditations.iter())
        .collect();
    let accreditation_values = StructArray::new(
        accreditation_fields(),
        vec![
            strings(accreditations.iter().map(|a| a.accreditation_body.as_str())),
            strings(accreditations.iter().map(|a| a.accreditation_id.as_str())),
            Arc::new(Date32Array::from_iter_values(
                accreditations.iter().map(|a| a.valid_until),
            )),
        ],
        None,
    );
    let columns: Vec<ArrayRef> = vec![
        strings(facilities.iter().map(|f| f.facility_id.as_str())),
        opt(|f| &f.facility_name),
        opt(|f| &f.address),
        opt(|f| &f.city),
        strings(facilities.iter().map(|f| f.state.as_str())),
        opt(|f| &f.zip),
        Arc::new(Int64Array::from_iter_values(
            facilities.iter().map(|f| f.employee_count),
        )),
        services,
        list_array(
            DataType::Struct(lab_fields()),
            facilities.iter().map(|f| f.labs.len()),
            Arc::new(lab_values),
        ),
        list_array(
            DataType::Struct(accreditation_fields()),
            facilities.iter().map(|f| f.accreditations.len()),
            Arc::new(accreditation_values),
        ),
        strings(std::iter::repeat_n(upload.as_str(), facilities.len())),
    ];
    RecordBatch::try_new(schema(), columns).map_err(internal)
}

/// Batches as one Parquet file (Snappy, 64k-row groups).
pub fn to_parquet(batches: &[RecordBatch]) -> Result<Vec<u8>, ProcessError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema(), Some(properties)).map_err(internal)?;
    for batch in batches {
        writer.write(batch).map_err(internal)?;
    }
    writer.into_inner().map_err(internal)
}

/// A Parquet file's batches.
pub fn from_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, ProcessError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(internal)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(internal)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(internal)
}

/// Old rows and new rows, one per facility id: for an id in both, the row whose upload id
/// sorts later wins (the new one on a tie: it is the same upload again).
pub fn merge(old: &[RecordBatch], new: &RecordBatch) -> Result<RecordBatch, ProcessError> {
    let column = |batch: &RecordBatch, name: &str| -> Result<StringArray, ProcessError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .cloned()
            .ok_or_else(|| ProcessError::Internal(format!("dataset lacks {name}")))
    };
    let new_ids = column(new, "facility_id")?;
    let new_upload = column(new, "source_upload")?;
    let mut incoming: HashMap<&str, (usize, &str)> = HashMap::with_capacity(new_ids.len());
    for row in 0..new_ids.len() {
        incoming.insert(new_ids.value(row), (row, new_upload.value(row)));
    }
    let mut keep_new = vec![true; new.num_rows()];
    let mut kept = Vec::with_capacity(old.len() + 1);
    for batch in old {
        let ids = column(batch, "facility_id")?;
        let uploads = column(batch, "source_upload")?;
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|row| match incoming.get(ids.value(row)) {
                None => Some(true),
                Some(&(new_row, upload)) if uploads.value(row) > upload => {
                    keep_new[new_row] = false;
                    Some(true)
                }
                Some(_) => Some(false),
            })
            .collect();
        kept.push(filter_record_batch(batch, &mask).map_err(internal)?);
    }
    kept.push(filter_record_batch(new, &BooleanArray::from(keep_new)).map_err(internal)?);
    concat_batches(&schema(), &kept).map_err(internal)
}

/// The table's pointer to the current dataset object.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetPointer {
    /// The current object's key.
    pub object_key: String,
    /// Facilities in it.
    pub rows: u64,
    /// The version (the number in the object's name, and the item's version).
    pub version: i64,
}

fn pointer_key(provider: &ProviderId) -> Key {
    Key::new(
        key_layout::analytics_pk(provider),
        key_layout::FACILITY_DATASET_SK,
    )
}

/// The provider's current dataset, if it has one.
pub async fn current(
    table: &dyn Table,
    provider: &ProviderId,
) -> Result<Option<DatasetPointer>, StoreError> {
    let Some(item) = table.get(&pointer_key(provider)).await? else {
        return Ok(None);
    };
    let object_key = item
        .get("objectKey")
        .and_then(Value::as_s)
        .ok_or_else(|| StoreError::Internal("dataset pointer lacks objectKey".into()))?
        .to_owned();
    Ok(Some(DatasetPointer {
        object_key,
        rows: item.get("rows").and_then(Value::as_i64).unwrap_or_default() as u64,
        version: item
            .get(VERSION)
            .and_then(Value::as_i64)
            .unwrap_or_default(),
    }))
}

/// Merges `facilities` from `upload` into the provider's dataset; returns the new pointer.
pub async fn merge_upload(
    table: &dyn Table,
    objects: &dyn ObjectStore,
    provider: &ProviderId,
    upload: &UploadId,
    facilities: &[Facility],
) -> Result<DatasetPointer, ProcessError> {
    let new = to_batch(facilities, upload)?;
    for _ in 0..8 {
        let pointer = current(table, provider).await?;
        let old = match &pointer {
            Some(pointer) => {
                let bytes = objects
                    .get(&ObjectPath::from(pointer.object_key.as_str()))
                    .await?
                    .bytes()
                    .await?;
                from_parquet(bytes)?
            }
            None => Vec::new(),
        };
        let batch = new.clone();
        let (rows, parquet) = tokio::task::spawn_blocking(move || {
            merge(&old, &batch).and_then(|batch| Ok((batch.num_rows(), to_parquet(&[batch])?)))
        })
        .await
        .map_err(internal)??;
        let version = pointer.as_ref().map_or(0, |p| p.version) + 1;
        let object_key = key_layout::facility_dataset_object_key(provider, version, upload);
        let path = ObjectPath::from(object_key.as_str());
        objects.put(&path, parquet.into()).await?;
        let key = pointer_key(provider);
        let mut item = Item::new();
        item.insert(PK.into(), Value::S(key.pk));
        item.insert(SK.into(), Value::S(key.sk));
        item.insert("entity".into(), Value::s("FACILITY_DATASET"));
        item.insert("objectKey".into(), Value::s(object_key.as_str()));
        item.insert("rows".into(), Value::n(rows as i64));
        item.insert("lastUpload".into(), Value::s(upload.as_str()));
        item.insert(
            "updatedAt".into(),
            Value::n(UtcInstant::now().unix_millis()),
        );
        item.insert(VERSION.into(), Value::n(version));
        let condition = match &pointer {
            Some(pointer) => Condition::VersionIs(pointer.version),
            None => Condition::NotExists,
        };
        match table.put(item, condition).await {
            Ok(()) => {
                if let Some(old) = pointer {
                    // Best effort: a reader still on the old object retries on the new one.
                    let _ = objects.delete(&ObjectPath::from(old.object_key)).await;
                }
                return Ok(DatasetPointer {
                    object_key,
                    rows: rows as u64,
                    version,
                });
            }
            Err(StoreError::ConditionFailed { .. }) => {
                // Lost a race. The winner may be this same upload, delivered twice, with
                // the same object key: delete ours only if nothing points at it.
                let winner = current(table, provider).await?;
                if winner.is_none_or(|w| w.object_key != object_key) {
                    let _ = objects.delete(&path).await;
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(ProcessError::Concurrent)
}

fn internal(error: impl std::fmt::Display) -> ProcessError {
    ProcessError::Internal(error.to_string())
}

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
    Array, ArrayBuilder, ArrayRef, BooleanArray, Date32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
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
use ward_ports::ProcessError;
use ward_store::{Condition, Item, Key, PK, SK, StoreError, Table, VERSION, Value};

use crate::record::Facility;

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
        Field::new(VALID_UNTIL_DATES, list_of(DataType::Date32), false),
        Field::new("source_upload", DataType::Utf8, false),
    ]))
}

/// A derived column: the `valid_until` dates of a facility's accreditations, in their
/// order. It repeats what `accreditations` holds, as a list of plain dates, so a query
/// about validity (the per-state query) reads dates alone instead of decoding every
/// accreditation's body and id. Datasets written before it existed gain it when read
/// ([`from_parquet`]).
pub const VALID_UNTIL_DATES: &str = "accreditation_valid_until";

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

/// Facilities appended one by one into the columns of [`schema`]: the file reader builds
/// record batches straight from the JSON (no intermediate structs), and [`to_batch`] from
/// [`Facility`] values. A row is begun, given its lists, and ended; nothing else is
/// checked here (the caller appends only validated facilities).
pub(crate) struct FacilityColumns {
    facility_id: StringBuilder,
    facility_name: StringBuilder,
    address: StringBuilder,
    city: StringBuilder,
    state: StringBuilder,
    zip: StringBuilder,
    employee_count: Vec<i64>,
    service_offsets: Vec<i32>,
    services: StringBuilder,
    lab_offsets: Vec<i32>,
    lab_names: StringBuilder,
    certification_offsets: Vec<i32>,
    certifications: StringBuilder,
    accreditation_offsets: Vec<i32>,
    accreditation_bodies: StringBuilder,
    accreditation_ids: StringBuilder,
    valid_until: Vec<i32>,
}

/// The scalar fields of one facility row.
pub(crate) struct FacilityScalars<'a> {
    pub facility_id: &'a str,
    pub facility_name: Option<&'a str>,
    pub address: Option<&'a str>,
    pub city: Option<&'a str>,
    pub state: &'a str,
    pub zip: Option<&'a str>,
    pub employee_count: i64,
}

impl FacilityColumns {
    /// Room for about `rows` facilities taking about `bytes` of JSON.
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        // Shares of a typical record's JSON (the generated set: ~480 bytes, 3 services,
        // 1.5 labs, certifications and accreditations), a little generous; a builder that
        // needs more grows.
        let text = |items: usize, share: usize| StringBuilder::with_capacity(items, bytes / share);
        let offsets = |n: usize| {
            let mut offsets = Vec::with_capacity(n + 1);
            offsets.push(0);
            offsets
        };
        let lists = rows * 2;
        Self {
            facility_id: text(rows, 40),
            facility_name: text(rows, 14),
            address: text(rows, 35),
            city: text(rows, 60),
            state: StringBuilder::with_capacity(rows, rows * 2),
            zip: text(rows, 80),
            employee_count: Vec::with_capacity(rows),
            service_offsets: offsets(rows),
            services: text(rows * 4, 12),
            lab_offsets: offsets(rows),
            lab_names: text(lists, 20),
            certification_offsets: offsets(lists),
            certifications: text(lists, 80),
            accreditation_offsets: offsets(rows),
            accreditation_bodies: text(lists, 40),
            accreditation_ids: text(lists, 25),
            valid_until: Vec::with_capacity(lists),
        }
    }

    /// Rows appended so far.
    pub(crate) fn len(&self) -> usize {
        self.employee_count.len()
    }

    /// Begins a row with its scalar fields; its lists follow, then [`Self::end_row`].
    pub(crate) fn begin_row(&mut self, row: &FacilityScalars<'_>) {
        self.facility_id.append_value(row.facility_id);
        self.facility_name.append_option(row.facility_name);
        self.address.append_option(row.address);
        self.city.append_option(row.city);
        self.state.append_value(row.state);
        self.zip.append_option(row.zip);
        self.employee_count.push(row.employee_count);
    }

    pub(crate) fn service(&mut self, name: &str) {
        self.services.append_value(name);
    }

    /// Begins a lab; its certifications follow.
    pub(crate) fn lab(&mut self, name: &str) {
        self.end_lab();
        self.lab_names.append_value(name);
    }

    pub(crate) fn certification(&mut self, name: &str) {
        self.certifications.append_value(name);
    }

    pub(crate) fn accreditation(&mut self, body: &str, id: &str, valid_until: i32) {
        self.accreditation_bodies.append_value(body);
        self.accreditation_ids.append_value(id);
        self.valid_until.push(valid_until);
    }

    /// Closes the open lab's certification list, if a lab is open.
    fn end_lab(&mut self) {
        let labs = self.lab_names.len();
        if self.certification_offsets.len() < labs + 1 {
            self.certification_offsets
                .push(offset(self.certifications.len()));
        }
    }

    pub(crate) fn end_row(&mut self) {
        self.end_lab();
        self.service_offsets.push(offset(self.services.len()));
        self.lab_offsets.push(offset(self.lab_names.len()));
        self.accreditation_offsets
            .push(offset(self.accreditation_bodies.len()));
    }

    /// Appends a validated facility.
    pub(crate) fn push(&mut self, facility: &Facility) {
        self.begin_row(&FacilityScalars {
            facility_id: &facility.facility_id,
            facility_name: facility.facility_name.as_deref(),
            address: facility.address.as_deref(),
            city: facility.city.as_deref(),
            state: &facility.state,
            zip: facility.zip.as_deref(),
            employee_count: facility.employee_count,
        });
        for service in &facility.services {
            self.service(service);
        }
        for lab in &facility.labs {
            self.lab(&lab.lab_name);
            for certification in &lab.certifications {
                self.certification(certification);
            }
        }
        for a in &facility.accreditations {
            self.accreditation(&a.accreditation_body, &a.accreditation_id, a.valid_until);
        }
        self.end_row();
    }

    /// The rows as one batch of [`schema`], every row from `upload`.
    pub(crate) fn finish(mut self, upload: &UploadId) -> Result<RecordBatch, ProcessError> {
        let rows = self.len();
        let lab_values = StructArray::try_new(
            lab_fields(),
            vec![
                Arc::new(self.lab_names.finish()),
                list_array(
                    DataType::Utf8,
                    self.certification_offsets,
                    Arc::new(self.certifications.finish()),
                )?,
            ],
            None,
        )
        .map_err(internal)?;
        let valid_until: ArrayRef = Arc::new(Date32Array::from(self.valid_until));
        let accreditation_values = StructArray::try_new(
            accreditation_fields(),
            vec![
                Arc::new(self.accreditation_bodies.finish()),
                Arc::new(self.accreditation_ids.finish()),
                Arc::clone(&valid_until),
            ],
            None,
        )
        .map_err(internal)?;
        let mut source = StringBuilder::with_capacity(rows, rows * upload.as_str().len());
        for _ in 0..rows {
            source.append_value(upload.as_str());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.facility_id.finish()),
            Arc::new(self.facility_name.finish()),
            Arc::new(self.address.finish()),
            Arc::new(self.city.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.zip.finish()),
            Arc::new(Int64Array::from(self.employee_count)),
            list_array(
                DataType::Utf8,
                self.service_offsets,
                Arc::new(self.services.finish()),
            )?,
            list_array(
                DataType::Struct(lab_fields()),
                self.lab_offsets,
                Arc::new(lab_values),
            )?,
            list_array(
                DataType::Struct(accreditation_fields()),
                self.accreditation_offsets.clone(),
                Arc::new(accreditation_values),
            )?,
            list_array(DataType::Date32, self.accreditation_offsets, valid_until)?,
            Arc::new(source.finish()),
        ];
        RecordBatch::try_new(schema(), columns).map_err(internal)
    }
}

fn offset(len: usize) -> i32 {
    // A batch holds one thread's share of one file (the file size is capped far below).
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn list_array(
    item: DataType,
    offsets: Vec<i32>,
    values: ArrayRef,
) -> Result<ArrayRef, ProcessError> {
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    Ok(Arc::new(
        ListArray::try_new(
            Arc::new(Field::new("item", item, false)),
            offsets,
            values,
            None,
        )
        .map_err(internal)?,
    ))
}

/// Facilities (all from `upload`) as one record batch of [`schema`].
pub fn to_batch(facilities: &[Facility], upload: &UploadId) -> Result<RecordBatch, ProcessError> {
    let mut columns = FacilityColumns::with_capacity(facilities.len(), facilities.len() * 400);
    for facility in facilities {
        columns.push(facility);
    }
    columns.finish(upload)
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

/// A Parquet file's batches, as rows of [`schema`] (a dataset written before the derived
/// column existed gains it).
pub fn from_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, ProcessError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(internal)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(internal)?;
    reader
        .map(|batch| upgrade(batch.map_err(internal)?))
        .collect()
}

/// Whether a dataset file already has every column of [`schema`].
pub fn is_current(bytes: &Bytes) -> Result<bool, ProcessError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(internal)?;
    Ok(builder
        .schema()
        .column_with_name(VALID_UNTIL_DATES)
        .is_some())
}

/// A batch of an older dataset with the derived column added (sharing the accreditations'
/// offsets and dates, so nothing is copied); a current batch as it is.
fn upgrade(batch: RecordBatch) -> Result<RecordBatch, ProcessError> {
    if batch.column_by_name(VALID_UNTIL_DATES).is_some() {
        return Ok(batch);
    }
    let accreditations = batch
        .column_by_name("accreditations")
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| ProcessError::Internal("dataset lacks accreditations".into()))?;
    let dates = accreditations
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .and_then(|values| values.column_by_name("valid_until"))
        .ok_or_else(|| ProcessError::Internal("accreditations lack valid_until".into()))?;
    let derived = ListArray::try_new(
        Arc::new(Field::new("item", DataType::Date32, false)),
        accreditations.offsets().clone(),
        Arc::clone(dates),
        accreditations.nulls().cloned(),
    )
    .map_err(internal)?;
    let schema = schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            VALID_UNTIL_DATES => Ok(Arc::new(derived.clone()) as ArrayRef),
            name => batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| ProcessError::Internal(format!("dataset lacks {name}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns).map_err(internal)
}

/// Old rows and new rows, one per facility id: for an id in both, the row whose upload id
/// sorts later wins (the new one on a tie: it is the same upload again).
pub fn merge(old: &[RecordBatch], new: &[RecordBatch]) -> Result<RecordBatch, ProcessError> {
    let column = |batch: &RecordBatch, name: &str| -> Result<StringArray, ProcessError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .cloned()
            .ok_or_else(|| ProcessError::Internal(format!("dataset lacks {name}")))
    };
    let mut new_columns = Vec::with_capacity(new.len());
    for batch in new {
        new_columns.push((
            column(batch, "facility_id")?,
            column(batch, "source_upload")?,
        ));
    }
    let rows: usize = new.iter().map(RecordBatch::num_rows).sum();
    let mut incoming: HashMap<&str, (usize, usize, &str)> = HashMap::with_capacity(rows);
    for (at, (ids, uploads)) in new_columns.iter().enumerate() {
        for row in 0..ids.len() {
            incoming.insert(ids.value(row), (at, row, uploads.value(row)));
        }
    }
    let mut keep_new: Vec<Vec<bool>> = new.iter().map(|b| vec![true; b.num_rows()]).collect();
    let mut kept = Vec::with_capacity(old.len() + new.len());
    for batch in old {
        let ids = column(batch, "facility_id")?;
        let uploads = column(batch, "source_upload")?;
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|row| match incoming.get(ids.value(row)) {
                None => Some(true),
                Some(&(at, new_row, upload)) if uploads.value(row) > upload => {
                    keep_new[at][new_row] = false;
                    Some(true)
                }
                Some(_) => Some(false),
            })
            .collect();
        kept.push(filter_record_batch(batch, &mask).map_err(internal)?);
    }
    for (batch, keep) in new.iter().zip(keep_new) {
        kept.push(filter_record_batch(batch, &BooleanArray::from(keep)).map_err(internal)?);
    }
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

/// Merges `new` (rows of [`schema`], all from `upload`) into the provider's dataset; returns the new pointer.
pub async fn merge_upload(
    table: &dyn Table,
    objects: &dyn ObjectStore,
    provider: &ProviderId,
    upload: &UploadId,
    new: &[RecordBatch],
) -> Result<DatasetPointer, ProcessError> {
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
        let new = new.to_vec();
        let (rows, parquet) = tokio::task::spawn_blocking(move || {
            merge(&old, &new).and_then(|batch| Ok((batch.num_rows(), to_parquet(&[batch])?)))
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

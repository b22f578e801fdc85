//! Validating facility records into Arrow columns: a fast path straight into the column
//! builders for well-formed records, the careful path (every problem named) for the rest,
//! and the latest record of a facility id winning.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use serde_json::Value;
use ward_domain::UploadId;

use super::read::{Record, column_only};
use super::rules::{
    Checker, checked_id, checked_state, checked_text, checked_zip, count, facility_id, list,
    state_code, text, zip_code,
};
use super::{FacilityProblem, FileError, ParsedFile, parse_date};
use crate::dataset::{FacilityColumns, FacilityScalars};
use crate::record::Facility;

/// Rows per record batch (one thread builds several).
pub(super) const BATCH_ROWS: usize = 64 * 1024;

/// JSON bytes per record batch, at most (a record larger than this is a batch alone).
/// Every string a batch holds is a piece of its records' JSON, so no column's 32-bit
/// offsets can overflow, whatever size of file an operator allows.
pub(super) const BATCH_JSON_BYTES: usize = 512 << 20;

/// What one thread made of its share of the records.
#[derive(Default)]
pub(super) struct Share {
    pub(super) records: u64,
    pub(super) batches: Vec<RecordBatch>,
    /// The line of every row, batch by batch.
    pub(super) lines: Vec<Vec<u64>>,
    pub(super) rejected: u64,
    pub(super) problems: Vec<FacilityProblem>,
}

pub(super) fn validate_share(
    records: &[Record<'_>],
    upload: &UploadId,
) -> Result<Share, FileError> {
    let mut share = Share {
        records: records.len() as u64,
        ..Share::default()
    };
    let mut dates = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let mut bytes = 0;
        let mut take = 0;
        for record in rest.iter().take(BATCH_ROWS) {
            if take > 0 && bytes + record.json.len() > BATCH_JSON_BYTES {
                break;
            }
            bytes += record.json.len();
            take += 1;
        }
        let (part, after) = rest.split_at(take);
        rest = after;
        let mut columns = FacilityColumns::with_capacity(part.len(), bytes);
        let mut lines = Vec::with_capacity(part.len());
        for record in part {
            if fast_path(record.json, &mut columns, &mut dates) {
                lines.push(record.line);
                continue;
            }
            match validate_slow(record) {
                Ok(facility) => {
                    columns.push(&facility);
                    lines.push(record.line);
                }
                Err(problems) => {
                    share.rejected += 1;
                    share.problems.extend(problems);
                }
            }
        }
        share.batches.push(
            columns
                .finish(upload)
                .map_err(|e| FileError::Internal(e.to_string()))?,
        );
        share.lines.push(lines);
    }
    Ok(share)
}

pub(super) fn validate_all(
    records: &[Record<'_>],
    upload: &UploadId,
    threads: usize,
) -> Result<ParsedFile, FileError> {
    let threads = threads.clamp(1, 16);
    let chunk = records.len().div_ceil(threads).max(1);
    let shares: Vec<Result<Share, FileError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || validate_share(part, upload)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(FileError::Internal("a validating thread failed".into()))
                })
            })
            .collect()
    });
    assemble(shares)
}

/// The shares of a file, in file order, as one result.
pub(super) fn assemble(
    shares: impl IntoIterator<Item = Result<Share, FileError>>,
) -> Result<ParsedFile, FileError> {
    let mut parsed = ParsedFile::default();
    let mut lines = Vec::new();
    for share in shares {
        let share = share?;
        parsed.records += share.records;
        parsed.batches.extend(share.batches);
        lines.extend(share.lines);
        parsed.rejected += share.rejected;
        parsed.problems.extend(share.problems);
    }
    drop_superseded(&mut parsed, &lines)?;
    parsed.facilities = parsed.batches.iter().map(|b| b.num_rows() as u64).sum();
    parsed.problems.sort_by_key(|problem| problem.line);
    Ok(parsed)
}

/// One row per facility id: an earlier record of an id is dropped (and reported) when a
/// later one is valid.
pub(super) fn drop_superseded(
    parsed: &mut ParsedFile,
    lines: &[Vec<u64>],
) -> Result<(), FileError> {
    let ids: Vec<StringArray> = parsed
        .batches
        .iter()
        .map(|batch| {
            batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| FileError::Internal("facility_id is not a string column".into()))
        })
        .collect::<Result<_, _>>()?;
    let rows: usize = ids.iter().map(Array::len).sum();
    // foldhash, seeded at random (a file cannot be made to collide): ids are short, and
    // this map takes every facility of the file on one thread.
    let mut last: HashMap<&str, (usize, usize), foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(rows, foldhash::fast::RandomState::default());
    let mut dropped: Vec<Option<Vec<bool>>> = vec![None; ids.len()];
    for (at, batch_ids) in ids.iter().enumerate() {
        for row in 0..batch_ids.len() {
            let id = batch_ids.value(row);
            let Some((earlier_at, earlier_row)) = last.insert(id, (at, row)) else {
                continue;
            };
            parsed.superseded += 1;
            parsed.problems.push(FacilityProblem {
                line: lines[earlier_at][earlier_row],
                index: None,
                field: "facility_id".into(),
                reason: format!(
                    "facility {id} appears again on line {}; the later record is kept",
                    lines[at][row]
                ),
            });
            dropped[earlier_at].get_or_insert_with(|| vec![false; ids[earlier_at].len()])
                [earlier_row] = true;
        }
    }
    for (batch, dropped) in parsed.batches.iter_mut().zip(dropped) {
        if let Some(dropped) = dropped {
            let keep: BooleanArray = dropped.into_iter().map(|d| Some(!d)).collect();
            *batch = filter_record_batch(batch, &keep)
                .map_err(|e| FileError::Internal(e.to_string()))?;
        }
    }
    Ok(())
}

/// The common case, fast: a record whose fields all have the right JSON types is read
/// straight into typed fields (no `Value` tree, strings borrowed from the file where they
/// hold no escapes), checked, and appended to `columns`. Anything else appends nothing and
/// returns `false`; the slow way then names every problem. Both ways accept exactly the
/// same records and build the same row (a unit test holds them to it).
pub(super) fn fast_path(json: &str, columns: &mut FacilityColumns, dates: &mut Vec<i32>) -> bool {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    #[derive(serde::Deserialize)]
    struct Fast<'a> {
        #[serde(borrow)]
        facility_id: Cow<'a, str>,
        #[serde(borrow, default)]
        facility_name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        location: Location<'a>,
        employee_count: i64,
        #[serde(borrow, default)]
        services: Option<Vec<Text<'a>>>,
        #[serde(borrow, default)]
        labs: Option<Vec<FastLab<'a>>>,
        #[serde(borrow, default)]
        accreditations: Option<Vec<FastAccreditation<'a>>>,
    }
    #[derive(serde::Deserialize)]
    struct Location<'a> {
        #[serde(borrow, default)]
        address: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        city: Option<Cow<'a, str>>,
        #[serde(borrow)]
        state: Cow<'a, str>,
        #[serde(borrow, default)]
        zip: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct FastLab<'a> {
        #[serde(borrow)]
        lab_name: Cow<'a, str>,
        #[serde(borrow, default)]
        certifications: Option<Vec<Text<'a>>>,
    }
    #[derive(serde::Deserialize)]
    struct FastAccreditation<'a> {
        #[serde(borrow)]
        accreditation_body: Cow<'a, str>,
        #[serde(borrow)]
        accreditation_id: Cow<'a, str>,
        #[serde(borrow)]
        valid_until: Cow<'a, str>,
    }
    pub(super) fn optional<'t>(
        value: &'t Option<Cow<'_, str>>,
        max: usize,
    ) -> Option<Option<&'t str>> {
        match value {
            Some(text) => checked_text(text, max).ok().map(Some),
            None => Some(None),
        }
    }
    pub(super) fn texts_hold(items: &Option<Vec<Text<'_>>>) -> bool {
        items
            .iter()
            .flatten()
            .all(|item| checked_text(&item.0, 200).is_ok())
    }
    let Ok(fast) = serde_json::from_str::<Fast<'_>>(json) else {
        return false;
    };
    let zip = match &fast.location.zip {
        Some(zip) => match checked_zip(zip) {
            Ok(zip) => Some(zip),
            Err(_) => return false,
        },
        None => None,
    };
    let (Ok(facility_id), Some(facility_name), Some(address), Some(city), Ok(state)) = (
        checked_id(&fast.facility_id),
        optional(&fast.facility_name, 300),
        optional(&fast.location.address, 300),
        optional(&fast.location.city, 100),
        checked_state(&fast.location.state),
    ) else {
        return false;
    };
    let labs = fast.labs.as_deref().unwrap_or_default();
    let accreditations = fast.accreditations.as_deref().unwrap_or_default();
    dates.clear();
    for a in accreditations {
        match parse_date(&a.valid_until) {
            Some(date) => dates.push(date),
            None => return false,
        }
    }
    let holds = fast.employee_count >= 0
        && texts_hold(&fast.services)
        && labs
            .iter()
            .all(|lab| checked_text(&lab.lab_name, 200).is_ok() && texts_hold(&lab.certifications))
        && accreditations.iter().all(|a| {
            checked_text(&a.accreditation_body, 200).is_ok()
                && checked_text(&a.accreditation_id, 100).is_ok()
        });
    if !holds {
        return false;
    }
    // Checked: now append, trimmed as `checked_text` trims.
    columns.begin_row(&FacilityScalars {
        facility_id,
        facility_name,
        address,
        city,
        state,
        zip,
        employee_count: fast.employee_count,
    });
    for service in fast.services.iter().flatten() {
        columns.service(service.0.trim());
    }
    for lab in labs {
        columns.lab(lab.lab_name.trim());
        for certification in lab.certifications.iter().flatten() {
            columns.certification(certification.0.trim());
        }
    }
    for (a, date) in accreditations.iter().zip(dates.iter()) {
        columns.accreditation(
            a.accreditation_body.trim(),
            a.accreditation_id.trim(),
            *date,
        );
    }
    columns.end_row();
    true
}

/// Every field checked through a `Value` tree, every problem named.
pub(super) fn validate_slow(record: &Record<'_>) -> Result<Facility, Vec<FacilityProblem>> {
    let problem = |field: &str, reason: String| FacilityProblem {
        line: record.line,
        index: record.index,
        field: field.to_owned(),
        reason,
    };
    let value: Value = serde_json::from_str(record.json).map_err(|error| {
        vec![problem(
            "record",
            format!("the record is not one JSON value: {}", column_only(&error)),
        )]
    })?;
    let Value::Object(object) = value else {
        return Err(vec![problem(
            "record",
            "a facility must be a JSON object".into(),
        )]);
    };
    let mut checker = Checker::default();
    let facility_id = checker.required(&object, "facility_id", facility_id);
    let facility_name = checker.optional(&object, "facility_name", |v| text(v, 300));
    let location = object.get("location");
    let (address, city, state, zip) = match location {
        Some(Value::Object(location)) => (
            checker.optional_in(location, "location.address", "address", |v| text(v, 300)),
            checker.optional_in(location, "location.city", "city", |v| text(v, 100)),
            checker.required_in(location, "location.state", "state", state_code),
            checker.optional_in(location, "location.zip", "zip", zip_code),
        ),
        Some(_) => {
            checker.fail(
                "location",
                "must be an object with address, city, state and zip",
            );
            (None, None, None, None)
        }
        None => {
            checker.fail("location.state", "is required");
            (None, None, None, None)
        }
    };
    let employee_count = checker.required(&object, "employee_count", count);
    let services = checker
        .optional(&object, "services", |v| list(v, |item| text(item, 200)))
        .unwrap_or_default();
    let labs = match object.get("labs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(labs)) => labs
            .iter()
            .enumerate()
            .filter_map(|(i, lab)| checker.lab(i, lab))
            .collect(),
        Some(_) => {
            checker.fail("labs", "must be an array");
            Vec::new()
        }
    };
    let accreditations = match object.get("accreditations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| checker.accreditation(i, item))
            .collect(),
        Some(_) => {
            checker.fail("accreditations", "must be an array");
            Vec::new()
        }
    };
    if !checker.problems.is_empty() {
        return Err(checker
            .problems
            .into_iter()
            .map(|(field, reason)| problem(&field, reason))
            .collect());
    }
    match (facility_id, state, employee_count) {
        (Some(facility_id), Some(state), Some(employee_count)) => Ok(Facility {
            facility_id,
            facility_name,
            address,
            city,
            state,
            zip,
            employee_count,
            services,
            labs,
            accreditations,
        }),
        _ => Err(vec![problem(
            "record",
            "required fields are missing".into(),
        )]),
    }
}

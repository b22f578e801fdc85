//! Facility files: the three accepted shapes, and every facility validated at the edge
//! (parse, don't validate): what leaves this module is a [`Facility`] whose fields hold.
//!
//! Shapes, told apart by the first value in the file:
//! - JSON lines: one facility object per line; a line that is not JSON is that record's
//!   error, the other lines still count;
//! - one array of facilities, `[{...}, ...]`;
//! - the array wrapped in an object, `{"sample_data": [{...}, ...]}` (the seed's sample);
//!   one facility object alone is accepted too.
//!
//! Problems name the record (line, and the array index for arrays), the field
//! (`accreditations[1].valid_until`) and why.

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use serde_json::Value;
use serde_json::value::RawValue;
use ward_domain::UploadId;

use crate::dataset::{FacilityColumns, FacilityScalars};

/// A validated facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    /// `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
    pub facility_id: String,
    /// The name, if given.
    pub facility_name: Option<String>,
    /// Street address.
    pub address: Option<String>,
    /// City.
    pub city: Option<String>,
    /// A known USPS two-letter code, in capitals.
    pub state: String,
    /// ZIP code as written.
    pub zip: Option<String>,
    /// Non-negative.
    pub employee_count: i64,
    /// Service names.
    pub services: Vec<String>,
    /// Labs.
    pub labs: Vec<Lab>,
    /// Accreditations.
    pub accreditations: Vec<Accreditation>,
}

/// A lab of a facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// The lab's name.
    pub lab_name: String,
    /// Its certifications.
    pub certifications: Vec<String>,
}

/// An accreditation of a facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accreditation {
    /// Who accredits (e.g. "Joint Commission").
    pub accreditation_body: String,
    /// The accreditation's id.
    pub accreditation_id: String,
    /// The last day it is valid, as days since 1970-01-01.
    pub valid_until: i32,
}

/// One problem with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityProblem {
    /// The line the record starts on (from 1).
    pub line: u64,
    /// The array index, for array files.
    pub index: Option<u64>,
    /// The field at fault (`record` for the record as a whole).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// A facility file, read.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// Records in the file.
    pub records: u64,
    /// Valid facilities as rows of [`crate::dataset::schema`], one per id (a later record
    /// of the same id replaces an earlier one), in file order of their last record.
    pub batches: Vec<RecordBatch>,
    /// Rows in `batches`.
    pub facilities: u64,
    /// Valid records replaced by a later record with the same facility id.
    pub superseded: u64,
    /// Records with at least one problem.
    pub rejected: u64,
    /// Every problem, in file order.
    pub problems: Vec<FacilityProblem>,
}

/// Why a file cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Not UTF-8 (binary, or another encoding).
    #[error("the file is not UTF-8 text (first bad byte at line {line})")]
    NotUtf8 {
        /// Where.
        line: u64,
    },
    /// Nothing but whitespace.
    #[error("the file is empty")]
    Empty,
    /// A syntax error in an array or object document.
    #[error("the file is not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but not one of the accepted shapes.
    #[error("{0}")]
    Shape(String),
    /// An array or object document larger than [`MAX_DOCUMENT_BYTES`], or a JSON line
    /// longer than [`MAX_LINE_BYTES`]: reading stops there, so a hostile file cannot make
    /// the reader hold it whole.
    #[error("{0}")]
    TooLarge(String),
    /// The file could not be read (storage failed, not the file's fault; worth a retry).
    #[error("the file could not be read: {0}")]
    Read(String),
    /// The valid facilities could not be put into columns (a defect, not the file's fault).
    #[error("could not build the facility columns: {0}")]
    Internal(String),
}

/// Reads a facility file from `upload`: `threads` threads validate records and build the
/// columns of the valid ones in parallel.
pub fn parse_file(
    bytes: &[u8],
    upload: &UploadId,
    threads: usize,
) -> Result<ParsedFile, FileError> {
    let text = std::str::from_utf8(bytes).map_err(|error| FileError::NotUtf8 {
        line: line_of(bytes, error.valid_up_to()),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let start = text
        .find(|c: char| !c.is_ascii_whitespace())
        .ok_or(FileError::Empty)?;
    let records: Vec<Record<'_>> = match text.as_bytes()[start] {
        b'[' => array_records(text, None)?,
        b'{' => object_or_lines(text, start)?,
        _ => {
            return Err(FileError::Shape(
                "a facility file holds JSON objects: JSON lines, an array, or an object wrapping an array".into(),
            ));
        }
    };
    validate_all(&records, upload, threads)
}

/// Bytes read at a time when streaming JSON lines.
const CHUNK_BYTES: usize = 8 << 20;
/// The largest array or object document read (it is parsed whole); larger files are sent
/// as JSON lines, which stream.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// The longest JSON line (one facility record).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Reads a facility file from `input`. JSON lines are streamed: chunks of whole lines are
/// validated by `threads` threads while the next chunk is read, so memory holds a few
/// chunks and the columns built, not the file. An array or object document (or a file
/// whose shape the first chunk does not settle) is read whole, then parsed as
/// [`parse_file`] does. Either way the result is the same as [`parse_file`]'s.
pub fn parse_reader<R: std::io::Read>(
    input: R,
    upload: &UploadId,
    threads: usize,
) -> Result<ParsedFile, FileError> {
    parse_reader_in_chunks(input, upload, threads, CHUNK_BYTES)
}

fn parse_reader_in_chunks<R: std::io::Read>(
    mut input: R,
    upload: &UploadId,
    threads: usize,
    chunk_bytes: usize,
) -> Result<ParsedFile, FileError> {
    let mut head = Vec::with_capacity(chunk_bytes);
    let complete = fill(&mut input, &mut head, chunk_bytes)?;
    if complete || !starts_json_lines(&head) {
        if !complete {
            let room = MAX_DOCUMENT_BYTES.saturating_sub(head.len()) + 1;
            fill(&mut input, &mut head, room)?;
            if head.len() > MAX_DOCUMENT_BYTES {
                return Err(FileError::TooLarge(too_large_document(&head)));
            }
        }
        return parse_file(&head, upload, threads);
    }
    stream_json_lines(input, head, upload, threads, chunk_bytes)
}

/// Why a document is too large to read whole.
fn too_large_document(head: &[u8]) -> String {
    if starts_json_lines(head)
        || !head.contains(&b'\n') && head.trim_ascii_start().starts_with(b"{")
    {
        format!(
            "the file's first line is longer than {MAX_LINE_BYTES} bytes: one facility per line"
        )
    } else {
        format!(
            "an array or object document is read whole, and this one is larger than {} MiB: send larger files as JSON lines (one facility per line)",
            MAX_DOCUMENT_BYTES >> 20
        )
    }
}

/// Reads until `buffer` holds `want` more bytes or the input ends (then `true`).
fn fill<R: std::io::Read>(
    input: &mut R,
    buffer: &mut Vec<u8>,
    want: usize,
) -> Result<bool, FileError> {
    use std::io::Read;
    let read = input
        .by_ref()
        .take(want as u64)
        .read_to_end(buffer)
        .map_err(|e| FileError::Read(e.to_string()))?;
    Ok(read < want)
}

/// The head of a file settles that it is JSON lines: the first line holds one whole JSON
/// object and something follows it (the test [`parse_file`] applies).
fn starts_json_lines(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Some(start) = head.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if head[start] != b'{' {
        return false;
    }
    let Some(end) = memchr::memchr(b'\n', &head[start..]).map(|n| start + n) else {
        return false;
    };
    head[end..].iter().any(|b| !b.is_ascii_whitespace())
        && serde_json::from_slice::<&RawValue>(head[start..end].trim_ascii_end()).is_ok()
}

/// A run of whole lines, numbered from `first_line`.
struct Chunk {
    seq: usize,
    first_line: u64,
    bytes: Vec<u8>,
}

fn stream_json_lines<R: std::io::Read>(
    mut input: R,
    head: Vec<u8>,
    upload: &UploadId,
    threads: usize,
    chunk_bytes: usize,
) -> Result<ParsedFile, FileError> {
    use std::sync::{Mutex, mpsc};
    let threads = threads.clamp(1, 16);
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(threads);
    let chunk_rx = Mutex::new(chunk_rx);
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
    let (share_tx, share_rx) = mpsc::channel::<(usize, Result<Share, FileError>)>();
    let read = std::thread::scope(|scope| {
        for _ in 0..threads {
            let (chunk_rx, spare_tx, share_tx) = (&chunk_rx, spare_tx.clone(), share_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = chunk_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(chunk)) = next else { break };
                    let share = validate_chunk(&chunk, upload);
                    let _ = spare_tx.send(chunk.bytes);
                    if share_tx.send((chunk.seq, share)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(share_tx);
        // This thread reads; each chunk ends at a line end, its partial last line is
        // carried into the next.
        let mut buffer = head;
        if buffer.starts_with(b"\xEF\xBB\xBF") {
            buffer.drain(..3);
        }
        let mut first_line = 1;
        let mut seq = 0;
        loop {
            let want = chunk_bytes
                .saturating_sub(buffer.len())
                .max(chunk_bytes / 8)
                .max(1);
            let complete = fill(&mut input, &mut buffer, want)?;
            let cut = if complete {
                buffer.len()
            } else {
                match memchr::memrchr(b'\n', &buffer) {
                    Some(at) => at + 1,
                    None if buffer.len() > MAX_LINE_BYTES => {
                        return Err(FileError::TooLarge(format!(
                            "line {first_line} is longer than {MAX_LINE_BYTES} bytes: one facility per line"
                        )));
                    }
                    None => continue,
                }
            };
            let mut next = spare_rx.try_recv().unwrap_or_default();
            next.clear();
            next.extend_from_slice(&buffer[cut..]);
            buffer.truncate(cut);
            let lines = memchr::memchr_iter(b'\n', &buffer).count() as u64;
            let chunk = Chunk {
                seq,
                first_line,
                bytes: std::mem::replace(&mut buffer, next),
            };
            if chunk_tx.send(chunk).is_err() {
                break;
            }
            seq += 1;
            first_line += lines;
            if complete {
                break;
            }
        }
        drop(chunk_tx);
        Ok::<_, FileError>(())
    });
    read?;
    let mut shares: Vec<(usize, Result<Share, FileError>)> = share_rx.iter().collect();
    shares.sort_by_key(|(seq, _)| *seq);
    assemble(shares.into_iter().map(|(_, share)| share))
}

fn validate_chunk(chunk: &Chunk, upload: &UploadId) -> Result<Share, FileError> {
    let text = std::str::from_utf8(&chunk.bytes).map_err(|error| FileError::NotUtf8 {
        line: chunk.first_line - 1 + line_of(&chunk.bytes, error.valid_up_to()),
    })?;
    let mut records = json_lines(text);
    for record in &mut records {
        record.line += chunk.first_line - 1;
    }
    validate_share(&records, upload)
}

/// One record as found in the file, before validation.
struct Record<'a> {
    line: u64,
    index: Option<u64>,
    json: &'a str,
}

fn object_or_lines<'a>(text: &'a str, start: usize) -> Result<Vec<Record<'a>>, FileError> {
    let first_line_end = memchr::memchr(b'\n', &text.as_bytes()[start..])
        .map(|n| start + n)
        .unwrap_or(text.len());
    let first_line = &text[start..first_line_end];
    let rest_blank = text[first_line_end..].trim().is_empty();
    // JSON lines: the first line holds a whole object and more follows.
    if !rest_blank && serde_json::from_str::<&RawValue>(first_line.trim_end()).is_ok() {
        return Ok(json_lines(text));
    }
    let document: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|error| FileError::Syntax(error.to_string()))?;
    if document.contains_key("facility_id") {
        return Ok(vec![Record {
            line: line_of(text.as_bytes(), start),
            index: None,
            json: text[start..].trim_end(),
        }]);
    }
    let arrays: Vec<&&RawValue> = document
        .values()
        .filter(|raw| raw.get().trim_start().starts_with('['))
        .collect();
    match arrays.as_slice() {
        [array] => array_records(text, Some(array.get())),
        _ => Err(FileError::Shape(
            "a JSON object in a facility file must be a facility (with facility_id) or hold exactly one array of facilities, like {\"sample_data\": [...]}".into(),
        )),
    }
}

fn json_lines(text: &str) -> Vec<Record<'_>> {
    let mut records = Vec::new();
    for (number, line) in text.split('\n').enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        // Parsed, and a syntax error reported, once: by the validating thread.
        records.push(Record {
            line: number as u64 + 1,
            index: None,
            json: trimmed,
        });
    }
    records
}

fn array_records<'a>(text: &'a str, array: Option<&'a str>) -> Result<Vec<Record<'a>>, FileError> {
    let array_text = array.unwrap_or(text);
    let elements: Vec<&RawValue> =
        serde_json::from_str(array_text).map_err(|error| FileError::Syntax(error.to_string()))?;
    let base = text.as_ptr() as usize;
    let mut lines = LineCounter::new(text.as_bytes());
    Ok(elements
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let offset = raw.get().as_ptr() as usize - base;
            Record {
                line: lines.line_at(offset),
                index: Some(index as u64),
                json: raw.get(),
            }
        })
        .collect())
}

/// Line numbers of increasing offsets, in one pass.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.bytes.len());
        if offset >= self.offset {
            self.line +=
                memchr::memchr_iter(b'\n', &self.bytes[self.offset..offset]).count() as u64;
            self.offset = offset;
        }
        self.line
    }
}

fn line_of(bytes: &[u8], offset: usize) -> u64 {
    LineCounter::new(bytes).line_at(offset)
}

/// serde_json's message without its own line (ours is the file's), keeping the column.
fn column_only(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("{} (column {})", &text[..at], error.column()),
        None => text,
    }
}

/// Rows per record batch (one thread builds several).
const BATCH_ROWS: usize = 64 * 1024;

/// JSON bytes per record batch, at most (a record larger than this is a batch alone).
/// Every string a batch holds is a piece of its records' JSON, so no column's 32-bit
/// offsets can overflow, whatever size of file an operator allows.
const BATCH_JSON_BYTES: usize = 512 << 20;

/// What one thread made of its share of the records.
#[derive(Default)]
struct Share {
    records: u64,
    batches: Vec<RecordBatch>,
    /// The line of every row, batch by batch.
    lines: Vec<Vec<u64>>,
    rejected: u64,
    problems: Vec<FacilityProblem>,
}

fn validate_share(records: &[Record<'_>], upload: &UploadId) -> Result<Share, FileError> {
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

fn validate_all(
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
fn assemble(
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
fn drop_superseded(parsed: &mut ParsedFile, lines: &[Vec<u64>]) -> Result<(), FileError> {
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
fn fast_path(json: &str, columns: &mut FacilityColumns, dates: &mut Vec<i32>) -> bool {
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
    fn optional<'t>(value: &'t Option<Cow<'_, str>>, max: usize) -> Option<Option<&'t str>> {
        match value {
            Some(text) => checked_text(text, max).ok().map(Some),
            None => Some(None),
        }
    }
    fn texts_hold(items: &Option<Vec<Text<'_>>>) -> bool {
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
fn validate_slow(record: &Record<'_>) -> Result<Facility, Vec<FacilityProblem>> {
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

#[derive(Default)]
struct Checker {
    problems: Vec<(String, String)>,
}

type Check<T> = fn(&Value) -> Result<T, String>;

impl Checker {
    fn fail(&mut self, field: &str, reason: &str) {
        self.problems.push((field.to_owned(), reason.to_owned()));
    }

    fn required<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        name: &str,
        check: Check<T>,
    ) -> Option<T> {
        self.required_in(object, name, name, check)
    }

    fn required_in<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        field: &str,
        name: &str,
        check: Check<T>,
    ) -> Option<T> {
        match object.get(name) {
            None | Some(Value::Null) => {
                self.fail(field, "is required");
                None
            }
            Some(value) => self.run(field, value, check),
        }
    }

    fn optional<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        name: &str,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        self.optional_in(object, name, name, check)
    }

    fn optional_in<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        field: &str,
        name: &str,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match object.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => self.run(field, value, check),
        }
    }

    fn run<T>(
        &mut self,
        field: &str,
        value: &Value,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match check(value) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.problems.push((field.to_owned(), reason));
                None
            }
        }
    }

    fn lab(&mut self, i: usize, lab: &Value) -> Option<Lab> {
        let Value::Object(lab) = lab else {
            self.fail(
                &format!("labs[{i}]"),
                "must be an object with lab_name and certifications",
            );
            return None;
        };
        let name = self.required_in(lab, &format!("labs[{i}].lab_name"), "lab_name", |v| {
            text(v, 200)
        });
        let certifications = self
            .optional_in(
                lab,
                &format!("labs[{i}].certifications"),
                "certifications",
                |v| list(v, |item| text(item, 200)),
            )
            .unwrap_or_default();
        Some(Lab {
            lab_name: name?,
            certifications,
        })
    }

    fn accreditation(&mut self, i: usize, item: &Value) -> Option<Accreditation> {
        let Value::Object(item) = item else {
            self.fail(
                &format!("accreditations[{i}]"),
                "must be an object with accreditation_body, accreditation_id and valid_until",
            );
            return None;
        };
        let field = |name: &str| format!("accreditations[{i}].{name}");
        let body = self.required_in(
            item,
            &field("accreditation_body"),
            "accreditation_body",
            |v| text(v, 200),
        );
        let id = self.required_in(item, &field("accreditation_id"), "accreditation_id", |v| {
            text(v, 100)
        });
        let valid_until = self.required_in(item, &field("valid_until"), "valid_until", date);
        Some(Accreditation {
            accreditation_body: body?,
            accreditation_id: id?,
            valid_until: valid_until?,
        })
    }
}

fn text(value: &Value, max_chars: usize) -> Result<String, String> {
    match value {
        Value::String(text) => checked_text(text, max_chars).map(str::to_owned),
        other => Err(format!("must be a string, not {}", type_name(other))),
    }
}

/// The text, trimmed, if it is not empty and not too long.
fn checked_text(text: &str, max_chars: usize) -> Result<&str, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err("is empty".into())
    } else if text.len() > max_chars && text.chars().count() > max_chars {
        Err(format!("is longer than {max_chars} characters"))
    } else {
        Ok(trimmed)
    }
}

fn list<T>(value: &Value, item: impl Fn(&Value) -> Result<T, String>) -> Result<Vec<T>, String> {
    let Value::Array(items) = value else {
        return Err(format!("must be an array, not {}", type_name(value)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, value)| item(value).map_err(|reason| format!("item {i} {reason}")))
        .collect()
}

fn facility_id(value: &Value) -> Result<String, String> {
    let Value::String(id) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    checked_id(id).map(str::to_owned)
}

fn checked_id(id: &str) -> Result<&str, String> {
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if well_formed {
        Ok(id)
    } else {
        Err("must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit".into())
    }
}

fn count(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(number) => match number.as_i64() {
            Some(n) if n >= 0 => Ok(n),
            Some(_) => Err("must not be negative".into()),
            None if number.as_u64().is_some() => Err("is too large".into()),
            None => Err("must be a whole number".into()),
        },
        other => Err(format!(
            "must be a non-negative integer, not {}",
            type_name(other)
        )),
    }
}

/// USPS codes: the states, DC, and the inhabited territories.
const STATES: [&str; 56] = [
    "AK", "AL", "AR", "AS", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "GU", "HI", "IA", "ID",
    "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MP", "MS", "MT", "NC", "ND",
    "NE", "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "PR", "RI", "SC", "SD", "TN", "TX",
    "UT", "VA", "VI", "VT", "WA", "WI", "WV", "WY",
];

fn state_code(value: &Value) -> Result<String, String> {
    let Value::String(code) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    checked_state(code).map(str::to_owned)
}

/// The code in capitals, if it is a known one.
fn checked_state(code: &str) -> Result<&'static str, String> {
    let code = code.trim().as_bytes();
    let known = match code {
        [a, b] => {
            let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
            std::str::from_utf8(&upper)
                .ok()
                .and_then(|upper| STATES.binary_search(&upper).ok())
        }
        _ => None,
    };
    known
        .map(|at| STATES[at])
        .ok_or_else(|| "is not a known two-letter state or territory code".into())
}

fn zip_code(value: &Value) -> Result<String, String> {
    let Value::String(zip) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    checked_zip(zip).map(str::to_owned)
}

fn checked_zip(zip: &str) -> Result<&str, String> {
    let b = zip.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let ok = (b.len() == 5 && digits(0..5))
        || (b.len() == 10 && digits(0..5) && b[5] == b'-' && digits(6..10));
    if ok {
        Ok(zip)
    } else {
        Err("must be a ZIP code (12345 or 12345-6789)".into())
    }
}

fn date(value: &Value) -> Result<i32, String> {
    let Value::String(text) = value else {
        return Err(format!(
            "must be a date (YYYY-MM-DD), not {}",
            type_name(value)
        ));
    };
    parse_date(text).ok_or_else(|| "must be a real date written YYYY-MM-DD".into())
}

pub use ward_domain::time::parse_date;

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `head`, then `fill` bytes without end, and counts what was read: a reader
    /// that held a file whole would read it all.
    struct Endless {
        head: std::io::Cursor<Vec<u8>>,
        fill: u8,
        n_read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl std::io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = match self.head.read(buf)? {
                0 => {
                    buf.fill(self.fill);
                    buf.len()
                }
                n => n,
            };
            self.n_read
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok(n)
        }
    }

    fn endless(head: &str, fill: u8) -> (Endless, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let n_read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reader = Endless {
            head: std::io::Cursor::new(head.as_bytes().to_vec()),
            fill,
            n_read: std::sync::Arc::clone(&n_read),
        };
        (reader, n_read)
    }

    #[test]
    fn documents_and_lines_are_bounded_in_memory() {
        use std::io::Read as _;
        let upload = UploadId::new(ward_domain::UtcInstant::now(), 1);
        let line = r#"{"facility_id":"F1","location":{"state":"TX"},"employee_count":3}"#;
        // JSON lines, then a line that never ends.
        let (input, n_read) = endless(&format!("{line}\n{line}\n{{\"facility_id\": \""), b'x');
        let error = parse_reader_in_chunks(input, &upload, 2, 64 * 1024).unwrap_err();
        assert_eq!(
            error,
            FileError::TooLarge(format!(
                "line 3 is longer than {MAX_LINE_BYTES} bytes: one facility per line"
            ))
        );
        assert!(n_read.load(std::sync::atomic::Ordering::Relaxed) < 2 * MAX_LINE_BYTES);
        // An array document that never ends.
        let (input, n_read) = endless(&format!("[{line},\n"), b' ');
        let error = parse_reader(input.take(1 << 30), &upload, 2).unwrap_err();
        assert!(
            matches!(&error, FileError::TooLarge(reason) if reason.contains("JSON lines")),
            "{error}"
        );
        assert!(n_read.load(std::sync::atomic::Ordering::Relaxed) <= MAX_DOCUMENT_BYTES + 1);
        // One object on one line that never ends.
        let (input, _) = endless("{\"sample_data\": [", b' ');
        let error = parse_reader(input.take(1 << 30), &upload, 2).unwrap_err();
        assert!(
            matches!(&error, FileError::TooLarge(reason) if reason.contains("first line")),
            "{error}"
        );
    }

    #[test]
    fn the_fast_and_the_slow_way_agree() {
        let mut cases: Vec<String> = crate::generate::facilities(300, 9)
            .map(|f| crate::generate::to_json(&f).to_string())
            .collect();
        let base =
            r#"{"facility_id":"F1","location":{"state":"tx","zip":"12345"},"employee_count":3"#;
        for extra in [
            "",
            r#","facility_name":null,"services":null,"labs":null"#,
            r#","facility_name":"  A \"quoted\" name  ""#,
            r#","facility_name":"""#,
            r#","services":["x",""]"#,
            r#","labs":[{"lab_name":"L","certifications":null}]"#,
            r#","labs":[{"lab_name":"L","certifications":[1]}]"#,
            r#","accreditations":[{"accreditation_body":"B","accreditation_id":"I","valid_until":"2024-02-29"}]"#,
            r#","accreditations":[{"accreditation_body":"B","accreditation_id":"I","valid_until":"2023-02-29"}]"#,
            r#","unknown":{"deep":[1,2,3]}"#,
        ] {
            cases.push(format!("{base}{extra}}}"));
        }
        cases.push(r#"{"facility_id":"F1","location":{"state":"TX"},"employee_count":-1}"#.into());
        cases.push(
            r#"{"facility_id":"F1","location":{"state":"TX","zip":"1234"},"employee_count":1}"#
                .into(),
        );
        let upload = UploadId::new(ward_domain::UtcInstant::now(), 1);
        let mut accepted = 0;
        for json in &cases {
            let record = Record {
                line: 1,
                index: None,
                json,
            };
            let slow = validate_slow(&record).ok();
            let mut fast = FacilityColumns::with_capacity(1, json.len());
            let fast_accepted = fast_path(json, &mut fast, &mut Vec::new());
            assert_eq!(fast_accepted, slow.is_some(), "{json}");
            if let Some(slow) = slow {
                let slow = crate::dataset::to_batch(&[slow], &upload).unwrap();
                assert_eq!(fast.finish(&upload).unwrap(), slow, "{json}");
                accepted += 1;
            } else {
                assert_eq!(fast.len(), 0, "a refused record appended nothing: {json}");
            }
        }
        assert!(
            accepted > 300 && accepted < cases.len(),
            "{accepted} of {}",
            cases.len()
        );
    }

    #[test]
    fn a_later_record_of_an_id_replaces_an_earlier_one_across_threads() {
        let record = |id: &str, employees: u32| {
            format!(
                r#"{{"facility_id":"{id}","location":{{"state":"TX"}},"employee_count":{employees}}}"#
            )
        };
        // Lines 1-6; with 2 threads, lines 1-3 and 4-6 are validated apart.
        let file = [
            record("A", 1),
            record("B", 2),
            "not json".to_owned(),
            record("A", 3),
            record("C", 4),
            record("B", 5),
        ]
        .join("\n");
        let upload = UploadId::new(ward_domain::UtcInstant::now(), 1);
        for threads in [1, 2, 3] {
            let parsed = parse_file(file.as_bytes(), &upload, threads).unwrap();
            assert_eq!(
                (
                    parsed.records,
                    parsed.facilities,
                    parsed.superseded,
                    parsed.rejected
                ),
                (6, 3, 2, 1)
            );
            let rows: Vec<(String, i64)> = parsed
                .batches
                .iter()
                .flat_map(|batch| {
                    let ids = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap();
                    let employees = batch
                        .column(6)
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                        .unwrap();
                    (0..batch.num_rows())
                        .map(|row| (ids.value(row).to_owned(), employees.value(row)))
                        .collect::<Vec<_>>()
                })
                .collect();
            // The later records, in file order of the records kept.
            assert_eq!(
                rows,
                [("A".into(), 3), ("C".into(), 4), ("B".into(), 5)],
                "{threads} threads"
            );
            let problems: Vec<(u64, &str)> = parsed
                .problems
                .iter()
                .map(|p| (p.line, p.field.as_str()))
                .collect();
            assert_eq!(
                problems,
                [(1, "facility_id"), (2, "facility_id"), (3, "record")]
            );
            assert!(
                parsed.problems[0]
                    .reason
                    .contains("appears again on line 4")
            );
            assert!(
                parsed.problems[1]
                    .reason
                    .contains("appears again on line 6")
            );
        }
    }

    #[test]
    fn streamed_json_lines_read_as_the_whole_file_does() {
        let upload = UploadId::new(ward_domain::UtcInstant::now(), 1);
        let mut lines: Vec<String> = crate::generate::facilities(200, 5)
            .map(|f| crate::generate::to_json(&f).to_string())
            .collect();
        lines[7] = "{broken".into();
        lines[50] =
            r#"{"facility_id":"FAC0000001","location":{"state":"CA"},"employee_count":1}"#.into();
        lines[120] = String::new();
        lines[121] = "  ".into();
        lines[150] = r#"{"facility_id":"X","location":{"state":"ZZ"},"employee_count":-1}"#.into();
        let mut file = "\u{feff}".to_owned() + &lines.join("\r\n");
        file.push('\n');
        let whole = parse_file(file.as_bytes(), &upload, 2).unwrap();
        assert_eq!(
            (whole.records, whole.rejected, whole.superseded),
            (198, 2, 1)
        );
        for chunk_bytes in [64, 1000, 4096, 1 << 20] {
            for threads in [1, 2, 3] {
                let streamed =
                    parse_reader_in_chunks(file.as_bytes(), &upload, threads, chunk_bytes).unwrap();
                let context = format!("{chunk_bytes}-byte chunks, {threads} threads");
                assert_eq!(streamed.records, whole.records, "{context}");
                assert_eq!(streamed.facilities, whole.facilities, "{context}");
                assert_eq!(streamed.superseded, whole.superseded, "{context}");
                assert_eq!(streamed.rejected, whole.rejected, "{context}");
                assert_eq!(streamed.problems, whole.problems, "{context}");
                let concat = |batches: &[RecordBatch]| {
                    datafusion::arrow::compute::concat_batches(&crate::dataset::schema(), batches)
                        .unwrap()
                };
                assert_eq!(
                    concat(&streamed.batches),
                    concat(&whole.batches),
                    "{context}"
                );
            }
        }
        // Not UTF-8 on line 4: the whole file fails, naming the line, streamed or not.
        let mut bad = lines[..10].join("\n").into_bytes();
        let third_line_end = bad
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(2)
            .unwrap()
            .0;
        bad.insert(third_line_end + 5, 0xff);
        assert_eq!(
            parse_reader_in_chunks(bad.as_slice(), &upload, 2, 1000).unwrap_err(),
            FileError::NotUtf8 { line: 4 }
        );
        assert_eq!(
            parse_file(&bad, &upload, 2).unwrap_err(),
            FileError::NotUtf8 { line: 4 }
        );
    }

    #[test]
    fn states_are_sorted_for_binary_search() {
        assert!(STATES.windows(2).all(|w| w[0] < w[1]));
    }
}

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

use serde_json::Value;
use serde_json::value::RawValue;

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
    /// Valid facilities, one per id (a later record of the same id replaces an earlier
    /// one), in file order of their last record.
    pub facilities: Vec<Facility>,
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
}

/// Reads a facility file. `threads` records are validated in parallel.
pub fn parse_file(bytes: &[u8], threads: usize) -> Result<ParsedFile, FileError> {
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
    Ok(validate_all(records, threads))
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

fn validate_all(records: Vec<Record<'_>>, threads: usize) -> ParsedFile {
    let threads = threads.clamp(1, 16);
    let chunk = records.len().div_ceil(threads).max(1);
    let results: Vec<Vec<Result<Facility, Vec<FacilityProblem>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(validate_record).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    let mut parsed = ParsedFile {
        records: records.len() as u64,
        ..ParsedFile::default()
    };
    let mut kept: Vec<Facility> = Vec::with_capacity(records.len());
    let mut position: HashMap<String, (usize, u64)> = HashMap::with_capacity(records.len());
    for (record, result) in records.iter().zip(results.into_iter().flatten()) {
        match result {
            Ok(facility) => {
                if let Some((at, earlier_line)) = position.get(&facility.facility_id).copied() {
                    parsed.superseded += 1;
                    parsed.problems.push(FacilityProblem {
                        line: earlier_line,
                        index: None,
                        field: "facility_id".into(),
                        reason: format!(
                            "facility {} appears again on line {}; the later record is kept",
                            facility.facility_id, record.line
                        ),
                    });
                    position.insert(facility.facility_id.clone(), (at, record.line));
                    kept[at] = facility;
                } else {
                    position.insert(facility.facility_id.clone(), (kept.len(), record.line));
                    kept.push(facility);
                }
            }
            Err(problems) => {
                parsed.rejected += 1;
                parsed.problems.extend(problems);
            }
        }
    }
    parsed.problems.sort_by_key(|problem| problem.line);
    parsed.facilities = kept;
    parsed
}

/// The common case, fast: a record whose fields all have the right JSON types is read
/// straight into typed fields (no `Value` tree) and passes the same checks. Anything else
/// returns `None` and goes the slow way, which names every problem; so both ways accept
/// exactly the same records and build the same facility.
fn fast_path(json: &str) -> Option<Facility> {
    use std::borrow::Cow;
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
        services: Option<Vec<Cow<'a, str>>>,
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
        certifications: Option<Vec<Cow<'a, str>>>,
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
    let texts = |items: Option<Vec<Cow<'_, str>>>| -> Option<Vec<String>> {
        items
            .unwrap_or_default()
            .iter()
            .map(|item| text_of(item, 200).ok())
            .collect()
    };
    let optional = |value: Option<Cow<'_, str>>, max: usize| -> Option<Option<String>> {
        value
            .map(|v| text_of(&v, max).ok())
            .map_or(Some(None), |v| v.map(Some))
    };
    let fast: Fast<'_> = serde_json::from_str(json).ok()?;
    if fast.employee_count < 0 {
        return None;
    }
    let zip = match fast.location.zip {
        Some(zip) => Some(zip_of(&zip).ok()?),
        None => None,
    };
    Some(Facility {
        facility_id: facility_id_of(&fast.facility_id).ok()?,
        facility_name: optional(fast.facility_name, 300)?,
        address: optional(fast.location.address, 300)?,
        city: optional(fast.location.city, 100)?,
        state: state_of(&fast.location.state).ok()?,
        zip,
        employee_count: fast.employee_count,
        services: texts(fast.services)?,
        labs: fast
            .labs
            .unwrap_or_default()
            .into_iter()
            .map(|lab| {
                Some(Lab {
                    lab_name: text_of(&lab.lab_name, 200).ok()?,
                    certifications: texts(lab.certifications)?,
                })
            })
            .collect::<Option<_>>()?,
        accreditations: fast
            .accreditations
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                Some(Accreditation {
                    accreditation_body: text_of(&a.accreditation_body, 200).ok()?,
                    accreditation_id: text_of(&a.accreditation_id, 100).ok()?,
                    valid_until: parse_date(&a.valid_until)?,
                })
            })
            .collect::<Option<_>>()?,
    })
}

fn validate_record(record: &Record<'_>) -> Result<Facility, Vec<FacilityProblem>> {
    match fast_path(record.json) {
        Some(facility) => Ok(facility),
        None => validate_slow(record),
    }
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
        Value::String(text) => text_of(text, max_chars),
        other => Err(format!("must be a string, not {}", type_name(other))),
    }
}

fn text_of(text: &str, max_chars: usize) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("is empty".into())
    } else if text.len() > max_chars && text.chars().count() > max_chars {
        Err(format!("is longer than {max_chars} characters"))
    } else {
        Ok(text.trim().to_owned())
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
    facility_id_of(id)
}

fn facility_id_of(id: &str) -> Result<String, String> {
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if well_formed {
        Ok(id.to_owned())
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
    state_of(code)
}

fn state_of(code: &str) -> Result<String, String> {
    let upper = code.trim().to_ascii_uppercase();
    if STATES.binary_search(&upper.as_str()).is_ok() {
        Ok(upper)
    } else {
        Err("is not a known two-letter state or territory code".into())
    }
}

fn zip_code(value: &Value) -> Result<String, String> {
    let Value::String(zip) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    zip_of(zip)
}

fn zip_of(zip: &str) -> Result<String, String> {
    let b = zip.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let ok = (b.len() == 5 && digits(0..5))
        || (b.len() == 10 && digits(0..5) && b[5] == b'-' && digits(6..10));
    if ok {
        Ok(zip.to_owned())
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
        let mut accepted = 0;
        for json in &cases {
            let record = Record {
                line: 1,
                index: None,
                json,
            };
            let slow = validate_slow(&record).ok();
            assert_eq!(fast_path(json), slow, "{json}");
            accepted += usize::from(slow.is_some());
        }
        assert!(
            accepted > 300 && accepted < cases.len(),
            "{accepted} of {}",
            cases.len()
        );
    }

    #[test]
    fn states_are_sorted_for_binary_search() {
        assert!(STATES.windows(2).all(|w| w[0] < w[1]));
    }
}

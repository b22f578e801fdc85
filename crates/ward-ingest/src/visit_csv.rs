//! Streaming reader of visit CSV files: header matching, per-row validation, physical line
//! numbers. Synchronous and allocation-light; memory stays bounded by one record.

use std::collections::VecDeque;
use std::io::Read;

use ward_domain::visit::{FieldError, VisitFields, VisitRow, VisitRules, columns};

/// The longest CSV record read, in bytes (a valid row is at most ~42 KB: a 10,000-character
/// note in 4-byte characters plus the other fields).
pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;
/// The most unknown header names a report repeats.
pub const MAX_UNKNOWN_COLUMNS: usize = 20;
/// The longest unknown header name a report repeats, in characters.
pub const MAX_COLUMN_NAME_CHARS: usize = 100;
/// The csv reader's buffer, which it may fill beyond the current record.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Why a file is unusable as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// No header row (the file is empty or holds only blank lines).
    #[error("the file is empty: a header row is required")]
    Empty,
    /// The bytes are not UTF-8 text.
    #[error("the file is not UTF-8 text (line {line})")]
    NotText {
        /// Physical line of the first offending record.
        line: u64,
    },
    /// Required columns are missing from the header.
    #[error("the header is missing required columns: {}", missing.join(", "))]
    MissingColumns {
        /// The canonical names of the missing columns.
        missing: Vec<&'static str>,
    },
    /// A column appears more than once in the header.
    #[error("the header names column {column} more than once")]
    DuplicateColumn {
        /// The canonical name.
        column: &'static str,
    },
    /// One record is longer than [`MAX_RECORD_BYTES`] (usually an unterminated quote);
    /// reading stops there, so a hostile file cannot make the reader buffer it whole.
    #[error(
        "the record starting at line {line} is longer than {max_bytes} bytes (an unterminated quote?)"
    )]
    RecordTooLong {
        /// Physical line where the record starts.
        line: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// The CSV could not be read (an IO fault while streaming).
    #[error("the file could not be read: {0}")]
    Io(String),
}

/// What one data row came to.
#[derive(Debug)]
pub enum RowRead {
    /// A valid visit.
    Valid(VisitRow),
    /// A row that failed validation.
    Rejected(FieldError),
}

/// One data row with its physical start line.
#[derive(Debug)]
pub struct LineRow {
    /// The physical line where the CSV record starts (the header is line 1).
    pub line: u64,
    /// The row's raw MRN and date-time cells (trimmed, possibly invalid), for error lists.
    pub raw_mrn: String,
    /// See `raw_mrn`.
    pub raw_date_time: String,
    /// The validation result.
    pub read: RowRead,
}

/// Reads a visit CSV row by row.
pub struct VisitCsvReader<R: Read> {
    reader: csv::Reader<LineTracking<R>>,
    positions: ColumnPositions,
    /// Header names that matched no known column, as written: the first
    /// [`MAX_UNKNOWN_COLUMNS`], each shortened to [`MAX_COLUMN_NAME_CHARS`].
    pub unknown_columns: Vec<String>,
    /// How many header names matched no known column, in all.
    pub n_unknown_columns: u64,
    record: csv::ByteRecord,
    n_header_fields: usize,
}

#[derive(Debug, Clone, Copy)]
struct ColumnPositions {
    mrn: usize,
    date_time: usize,
    first_name: usize,
    last_name: usize,
    doctors_notes: Option<usize>,
}

impl<R: Read> VisitCsvReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self, FileError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(READ_BUFFER_BYTES)
            .from_reader(LineTracking::new(input));
        let mut header = csv::ByteRecord::new();
        let has_header = match reader.read_byte_record(&mut header) {
            Ok(has_header) => has_header,
            Err(error) => return Err(file_error(reader.get_mut(), error)),
        };
        let header_end = reader.position().byte();
        reader.get_mut().record_start = header_end;
        if !has_header {
            return Err(FileError::Empty);
        }
        let mut found: [Option<usize>; 5] = [None; 5];
        let canonical = [
            columns::MRN,
            columns::DATE_TIME,
            columns::FIRST_NAME,
            columns::LAST_NAME,
            columns::DOCTORS_NOTES,
        ];
        let mut unknown_columns = Vec::new();
        let mut n_unknown_columns = 0;
        for (position, raw) in header.iter().enumerate() {
            let raw = std::str::from_utf8(raw).map_err(|_| FileError::NotText { line: 1 })?;
            let raw = raw.trim_start_matches('\u{feff}');
            if raw.contains('\0') {
                return Err(FileError::NotText { line: 1 });
            }
            let normalized = normalize_column(raw);
            match canonical
                .iter()
                .position(|name| normalize_column(name) == normalized)
            {
                Some(slot) if found[slot].is_some() => {
                    return Err(FileError::DuplicateColumn {
                        column: canonical[slot],
                    });
                }
                Some(slot) => found[slot] = Some(position),
                None => {
                    n_unknown_columns += 1;
                    if unknown_columns.len() < MAX_UNKNOWN_COLUMNS {
                        unknown_columns.push(shortened_name(raw.trim()));
                    }
                }
            }
        }
        let missing: Vec<&'static str> = columns::REQUIRED
            .iter()
            .zip(found)
            .filter(|(_, position)| position.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(FileError::MissingColumns { missing });
        }
        let positions = ColumnPositions {
            mrn: found[0].unwrap_or_default(),
            date_time: found[1].unwrap_or_default(),
            first_name: found[2].unwrap_or_default(),
            last_name: found[3].unwrap_or_default(),
            doctors_notes: found[4],
        };
        Ok(Self {
            reader,
            positions,
            unknown_columns,
            n_unknown_columns,
            record: csv::ByteRecord::new(),
            n_header_fields: header.len(),
        })
    }

    /// The next data row, `Ok(None)` at the end. A row that is not UTF-8 text is
    /// rejected; a stream fault ends the file with [`FileError::Io`].
    pub fn next_row(&mut self, rules: &VisitRules) -> Result<Option<LineRow>, FileError> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) => return Err(file_error(self.reader.get_mut(), error)),
        }
        let record_end = self.reader.position().byte();
        self.reader.get_mut().record_start = record_end;
        let reported = self.record.position().map_or(0, |p| p.byte());
        let line = self.reader.get_mut().line_at(reported);
        let record = &self.record;
        let cell = |position: usize| -> Result<&str, FieldError> {
            let bytes = record.get(position).unwrap_or_default();
            std::str::from_utf8(bytes).map_err(|_| FieldError {
                column: column_name(self.positions, position),
                reason: "is not valid UTF-8 text".into(),
                depends_on_now: false,
            })
        };
        let raw = |position: usize| cell(position).unwrap_or_default().trim().to_owned();
        let raw_mrn = raw(self.positions.mrn);
        let raw_date_time = raw(self.positions.date_time);
        if record.len() != self.n_header_fields {
            let reason = format!(
                "has {} fields but the header has {}",
                record.len(),
                self.n_header_fields
            );
            return Ok(Some(LineRow {
                line,
                raw_mrn,
                raw_date_time,
                read: RowRead::Rejected(FieldError {
                    column: "row",
                    reason,
                    depends_on_now: false,
                }),
            }));
        }
        let fields = (|| {
            Ok::<_, FieldError>(VisitFields {
                mrn: cell(self.positions.mrn)?,
                date_time: cell(self.positions.date_time)?,
                first_name: cell(self.positions.first_name)?,
                last_name: cell(self.positions.last_name)?,
                doctors_notes: match self.positions.doctors_notes {
                    Some(position) => cell(position)?,
                    None => "",
                },
            })
        })();
        let read = match fields.and_then(|fields| VisitRow::parse(fields, rules)) {
            Ok(row) => RowRead::Valid(row),
            Err(error) => RowRead::Rejected(error),
        };
        Ok(Some(LineRow {
            line,
            raw_mrn,
            raw_date_time,
            read,
        }))
    }
}

/// Counts physical lines. The csv crate reports a record's position where the previous
/// record's content ended (before its terminator and any blank lines), so the start line is
/// that position's line plus the line breaks that immediately follow it. Line breaks are
/// kept as maximal runs of CR and LF bytes, so a million blank lines are one run: memory
/// stays bounded by one record, and blank lines between records do not count towards the
/// record size limit.
struct LineTracking<R> {
    inner: R,
    offset: u64,
    /// Runs of CR/LF bytes not yet passed, in file order.
    runs: VecDeque<BreakRun>,
    lf_before_runs: u64,
    /// The end of the last run passed (a record's start may lie inside it).
    passed_run_end: u64,
    /// Where the record being read started (the end of the last one returned).
    record_start: u64,
}

/// A maximal run of CR and LF bytes: `[start, end)`, holding `n_lf` LFs.
#[derive(Debug, Clone, Copy)]
struct BreakRun {
    start: u64,
    end: u64,
    n_lf: u64,
}

impl<R: Read> LineTracking<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            runs: VecDeque::new(),
            lf_before_runs: 0,
            passed_run_end: 0,
            record_start: 0,
        }
    }

    /// The 1-based physical line of the first content byte at or after `position`. A run
    /// that starts at or before `position` is all before that content byte (it either
    /// ends before `position` or holds it), so each such run counts whole.
    fn line_at(&mut self, position: u64) -> u64 {
        while let Some(run) = self.runs.front() {
            if run.start > position {
                break;
            }
            self.lf_before_runs += run.n_lf;
            self.passed_run_end = run.end;
            self.runs.pop_front();
        }
        1 + self.lf_before_runs
    }

    /// Where the record being read really starts: past the blank lines that follow the
    /// last record.
    fn content_start(&self) -> u64 {
        let mut start = self.record_start;
        if self.passed_run_end > start {
            start = self.passed_run_end;
        }
        for run in &self.runs {
            if run.start > start {
                break;
            }
            start = start.max(run.end);
        }
        start
    }

    fn note_break(&mut self, at: u64, is_lf: bool) {
        match self.runs.back_mut() {
            Some(run) if run.end == at => {
                run.end += 1;
                run.n_lf += u64::from(is_lf);
            }
            _ => self.runs.push_back(BreakRun {
                start: at,
                end: at + 1,
                n_lf: u64::from(is_lf),
            }),
        }
    }
}

impl<R: Read> Read for LineTracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let limit = MAX_RECORD_BYTES + READ_BUFFER_BYTES as u64;
        if self.offset > self.record_start + limit && self.offset > self.content_start() + limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RecordTooLong,
            ));
        }
        let n = self.inner.read(buf)?;
        for at in memchr::memchr2_iter(b'\r', b'\n', &buf[..n]) {
            self.note_break(self.offset + at as u64, buf[at] == b'\n');
        }
        self.offset += n as u64;
        Ok(n)
    }
}

fn column_name(positions: ColumnPositions, position: usize) -> &'static str {
    if position == positions.mrn {
        columns::MRN
    } else if position == positions.date_time {
        columns::DATE_TIME
    } else if position == positions.first_name {
        columns::FIRST_NAME
    } else if position == positions.last_name {
        columns::LAST_NAME
    } else {
        columns::DOCTORS_NOTES
    }
}

/// A header name cut to [`MAX_COLUMN_NAME_CHARS`] characters (with `...` when cut).
fn shortened_name(name: &str) -> String {
    if name.chars().count() <= MAX_COLUMN_NAME_CHARS {
        return name.to_owned();
    }
    let kept: String = name.chars().take(MAX_COLUMN_NAME_CHARS).collect();
    format!("{kept}...")
}

/// Lowercase, without `_`, `-` and spaces: `Medical Record Number` = `medical_record_number`.
fn normalize_column(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !matches!(c, '_' | ' ' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Marks the IO error [`LineTracking`] raises for an over-long record.
#[derive(Debug)]
struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record too long")
    }
}

impl std::error::Error for RecordTooLong {}

fn file_error<R: Read>(tracking: &mut LineTracking<R>, error: csv::Error) -> FileError {
    match error.kind() {
        csv::ErrorKind::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<RecordTooLong>()) =>
        {
            FileError::RecordTooLong {
                line: tracking.line_at(tracking.content_start()),
                max_bytes: MAX_RECORD_BYTES,
            }
        }
        csv::ErrorKind::Io(io) => FileError::Io(io.to_string()),
        csv::ErrorKind::Utf8 { pos, .. } => FileError::NotText {
            line: pos.as_ref().map_or(0, |p| p.line()),
        },
        _ => FileError::Io(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_domain::UtcInstant;

    fn rules() -> VisitRules {
        VisitRules::at(UtcInstant::parse_rfc3339("2026-01-01T00:00:00Z").unwrap())
    }

    fn read_all(text: &[u8]) -> Result<Vec<LineRow>, FileError> {
        let mut reader = VisitCsvReader::new(text)?;
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row(&rules())? {
            rows.push(row);
        }
        Ok(rows)
    }

    #[test]
    fn quoted_newlines_keep_physical_start_lines() {
        let text = "\u{feff}Medical Record Number,DATE_TIME,first name,Last_Name,doctors_notes,ward\r\n\
            A1,2025-03-26T10:30:00-07:00,John,Doe,\"fever,\r\nmild\",x\r\n\
            A2,2025-03-26T10:30:00Z,Jane,Roe,\"said \"\"hi\"\"\",y\r\n";
        let rows = read_all(text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].line, 4);
        match &rows[0].read {
            RowRead::Valid(row) => assert_eq!(row.doctors_notes, "fever,\r\nmild"),
            other => panic!("{other:?}"),
        }
        let reader = VisitCsvReader::new(text.as_bytes()).unwrap();
        assert_eq!(reader.unknown_columns, vec!["ward"]);
    }

    #[test]
    fn blank_lines_and_lf_endings_keep_physical_lines() {
        let text = "medical_record_number,date_time,first_name,last_name\n\n\
            A1,2025-03-26T10:30:00Z,John,Doe\n\n\n\
            A2,bad,Jane,Roe\n";
        let rows = read_all(text.as_bytes()).unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![3, 6]);
    }

    /// Yields `inner`, then fails: a reader that went past the bound would report this IO
    /// error instead of `RecordTooLong`.
    struct Bounded<R> {
        inner: R,
        remaining: usize,
    }

    impl<R: Read> Read for Bounded<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.remaining == 0 {
                return Err(std::io::Error::other("read past the bound"));
            }
            let n = buf.len().min(self.remaining);
            let n = self.inner.read(&mut buf[..n])?;
            self.remaining -= n;
            Ok(n)
        }
    }

    #[test]
    fn an_unterminated_quote_stops_at_the_record_limit() {
        let mut text = b"medical_record_number,date_time,first_name,last_name,doctors_notes\n\
            A1,2025-03-26T10:30:00Z,John,Doe,ok\n\
            A2,2025-03-26T10:30:00Z,John,Doe,\"never closed"
            .to_vec();
        text.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
        let input = Bounded {
            inner: text.as_slice(),
            remaining: 2 * 1024 * 1024,
        };
        let mut reader = VisitCsvReader::new(input).unwrap();
        assert!(matches!(
            reader.next_row(&rules()).unwrap().unwrap().read,
            RowRead::Valid(_)
        ));
        let error = reader.next_row(&rules()).unwrap_err();
        assert_eq!(
            error,
            FileError::RecordTooLong {
                line: 3,
                max_bytes: MAX_RECORD_BYTES
            }
        );
        assert!(error.to_string().contains("line 3"), "{error}");
    }

    #[test]
    fn blank_lines_between_records_do_not_count_towards_the_record_limit() {
        // A valid CRLF file with a million blank lines between two records.
        let mut text = b"medical_record_number,date_time,first_name,last_name\r\n\
            A1,2025-03-26T10:30:00Z,John,Doe\r\n"
            .to_vec();
        text.extend("\r\n".repeat(1_000_000).as_bytes());
        text.extend(b"A2,2025-03-26T10:30:00Z,Jane,Roe\r\n\r\n");
        let rows = read_all(&text).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 1_000_003]
        );
        assert!(rows.iter().all(|r| matches!(r.read, RowRead::Valid(_))));

        // A record that is too long after blank lines is named by the line it starts on.
        let mut text = b"medical_record_number,date_time,first_name,last_name,doctors_notes\n\
            A1,2025-03-26T10:30:00Z,John,Doe,ok\n"
            .to_vec();
        text.extend("\n".repeat(500_000).as_bytes());
        text.extend(b"A2,2025-03-26T10:30:00Z,John,Doe,\"never closed");
        text.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
        assert_eq!(
            read_all(&text).unwrap_err(),
            FileError::RecordTooLong {
                line: 500_003,
                max_bytes: MAX_RECORD_BYTES
            }
        );
    }

    #[test]
    fn file_level_failures_name_the_problem() {
        assert_eq!(read_all(b"").unwrap_err(), FileError::Empty);
        assert_eq!(
            read_all(b"medical_record_number,first_name\n").unwrap_err(),
            FileError::MissingColumns {
                missing: vec!["date_time", "last_name"]
            }
        );
        assert!(matches!(
            read_all(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap_err(),
            FileError::NotText { .. } | FileError::MissingColumns { .. }
        ));
        assert_eq!(
            read_all(b"date_time,DateTime,medical_record_number,first_name,last_name\n")
                .unwrap_err(),
            FileError::DuplicateColumn {
                column: "date_time"
            }
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_column() {
        let text = b"medical_record_number,date_time,first_name,last_name\n\
            A1,2025-03-26T10:30:00Z,John\n\
            A2,2025-03-26T10:30:00Z,\xff\xfe,Doe\n\
            A#3,2025-03-26T10:30:00Z,John,Doe\n";
        let rows = read_all(text).unwrap();
        let rejected: Vec<(u64, &str)> = rows
            .iter()
            .map(|row| match &row.read {
                RowRead::Rejected(error) => (row.line, error.column),
                RowRead::Valid(_) => (row.line, "valid"),
            })
            .collect();
        assert_eq!(
            rejected,
            vec![(2, "row"), (3, "first_name"), (4, "medical_record_number")]
        );
    }
}

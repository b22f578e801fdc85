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

mod read;
mod rules;
mod validate;

use datafusion::arrow::array::RecordBatch;

pub use crate::record::{Accreditation, Facility, Lab};
pub use read::{parse_file, parse_reader};

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

/// The largest array or object document read (it is parsed whole); larger files are sent
/// as JSON lines, which stream.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// The longest JSON line (one facility record).
pub const MAX_LINE_BYTES: usize = 1 << 20;

pub use ward_domain::time::parse_date;

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use ward_domain::UploadId;

    use super::read::*;
    use super::rules::*;
    use super::validate::*;
    use super::*;
    use crate::dataset::FacilityColumns;

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

//! Reading a visit file in the record store's key order.
//!
//! A B-tree store writes one page per dirtied leaf at each commit. Rows in file order land
//! on random patients, so each row dirties its own leaf; the same rows in key order fill
//! a leaf before moving to the next, and the store writes a fraction of the pages
//! (docs/benchmarks.md). So when the store asks for it ([`ward_store::Table::prefers_key_order`]),
//! the parser first reads the whole file, sending rejected rows on at once and spilling valid
//! ones through an external sort ([`crate::spill`]) keyed like the store's keys (MRN, then
//! the UTC instant); then it sends the valid rows in that order. Rows with one identity
//! keep their file order, so the earliest line is the one written, as in file order.
//! While it reads, it sends the patient of each valid row to a task of the writer's side,
//! which tells the table each once ([`ward_store::Table::expect_writes`]): the protected
//! table makes the new patients' data keys on the core the read leaves idle.
//!
//! Memory stays bounded by the sort buffer; the spilled runs are anonymous temporary
//! files, gone when the process ends however it ends.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use ward_domain::{Mrn, PatientKey, UtcInstant};

use crate::spill::SpillSorter;
use crate::visit_csv::{FileError, RowRead, VisitCsvReader};
use ward_ports::visits::{RecordSource, VisitParts, visit_item};

use crate::parse::{ParsedBatch, ParsedRow, ParserMessage, ParserOutput, rejected_row};
use ward_domain::visit::VisitRules;

/// Where and how much to sort, and who hears of the patients while the file is sorted.
#[derive(Debug)]
pub(crate) struct SortSettings {
    /// The folder for spilled runs.
    pub dir: std::path::PathBuf,
    /// Bytes buffered before a run is spilled.
    pub buffer_bytes: usize,
    /// Told the patient of every valid row while the file is read, a list at a time (a
    /// hint: a list the listener has no room for is dropped), and closed once it is read.
    pub patients: Option<tokio::sync::mpsc::Sender<Vec<PatientKey>>>,
}

/// Patients per list sent to [`SortSettings::patients`].
const PATIENTS_PER_LIST: usize = 4096;

/// The parser of a file read in key order (see the module docs). Sends the header, then
/// batches of rejected rows in file order, then batches of valid rows in key order, cut
/// only between identities (all rows of one identity are in one batch). A file-level
/// failure is sent before any valid row, so such a file writes no record.
pub(crate) fn parse_file_in_key_order<R: Read>(
    input: R,
    rules: &VisitRules,
    source: &RecordSource<'_>,
    batch_rows: usize,
    sort: SortSettings,
    progress: &AtomicU64,
    sender: &ParserOutput<'_>,
) {
    let send = |message| sender.blocking_send(message).is_ok();
    let mut reader = match VisitCsvReader::new(input) {
        Ok(reader) => reader,
        Err(error) => {
            send(ParserMessage::FileFailed(error));
            return;
        }
    };
    let unknown_columns = std::mem::take(&mut reader.unknown_columns);
    let n_unknown_columns = reader.n_unknown_columns;
    if !send(ParserMessage::Header {
        unknown_columns,
        n_unknown_columns,
    }) {
        return;
    }
    let spill_failed = |error: std::io::Error| {
        ParserMessage::FileFailed(FileError::Io(format!(
            "sorting the rows in a temporary file under {}: {error}",
            sort.dir.display()
        )))
    };
    let started = std::time::Instant::now();
    let mut sorter = SpillSorter::new(sort.dir.clone(), sort.buffer_bytes);
    let mut patients = sort.patients;
    let mut heard: Vec<PatientKey> = Vec::new();
    let mut rejected = ParsedBatch::with_capacity(batch_rows);
    let (mut key, mut payload) = (Vec::new(), Vec::new());
    loop {
        match reader.next_row(rules) {
            Ok(Some(row)) => match row.read {
                RowRead::Valid(visit) => {
                    let hash = visit.content_hash();
                    let patient = source.patient(&visit.mrn);
                    let spilled = SpilledRow {
                        patient: &patient,
                        line: row.line,
                        parts: VisitParts::from(&visit),
                        hash: &hash,
                        raw_mrn: &row.raw_mrn,
                        raw_date_time: &row.raw_date_time,
                    };
                    spilled.encode(&mut key, &mut payload);
                    if let Err(error) = sorter.push(&key, &payload) {
                        send(spill_failed(error));
                        return;
                    }
                    if let Some(listener) = &patients {
                        heard.push(patient);
                        if heard.len() >= PATIENTS_PER_LIST {
                            let list = std::mem::replace(
                                &mut heard,
                                Vec::with_capacity(PATIENTS_PER_LIST),
                            );
                            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                                listener.try_send(list)
                            {
                                patients = None;
                            }
                        }
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                RowRead::Rejected(error) => {
                    rejected.n_rows += 1;
                    rejected.n_time_dependent += u64::from(error.depends_on_now);
                    rejected.rows.push(rejected_row(
                        row.line,
                        error,
                        row.raw_mrn,
                        row.raw_date_time,
                    ));
                    if rejected.rows.len() >= batch_rows
                        && !send(ParserMessage::Batch(rejected.take(batch_rows)))
                    {
                        return;
                    }
                }
            },
            Ok(None) => break,
            Err(error) => {
                send(ParserMessage::FileFailed(error));
                return;
            }
        }
    }
    if let Some(listener) = patients.take()
        && !heard.is_empty()
    {
        let _ = listener.try_send(heard);
    }
    if !rejected.rows.is_empty() && !send(ParserMessage::Batch(rejected.take(0))) {
        return;
    }
    tracing::debug!(
        spilled_runs = sorter.runs(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "file read and sorted"
    );
    let mut sorted = match sorter.finish() {
        Ok(sorted) => sorted,
        Err(error) => {
            send(spill_failed(error));
            return;
        }
    };
    let mut batch = ParsedBatch::with_capacity(batch_rows);
    // The sort key of the batch's last row: a batch ends only where the identity changes,
    // so no identity spans two batches and the writer may overlap them.
    let mut last_key = Vec::new();
    loop {
        match sorted.next_into(&mut key, &mut payload) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                send(spill_failed(error));
                return;
            }
        }
        let Some(row) = SpilledRow::decode(&payload) else {
            send(ParserMessage::FileFailed(FileError::Io(
                "a row sorted in a temporary file could not be read back".into(),
            )));
            return;
        };
        if batch.rows.len() >= batch_rows
            && key != last_key
            && !send(ParserMessage::Batch(batch.take(batch_rows)))
        {
            return;
        }
        batch.n_rows += 1;
        let Some(patient) = SpilledRow::patient_of(&key) else {
            send(ParserMessage::FileFailed(FileError::Io(
                "a row's key sorted in a temporary file could not be read back".into(),
            )));
            return;
        };
        batch.rows.push(row.into_parsed(&patient, source));
        std::mem::swap(&mut key, &mut last_key);
    }
    if !batch.rows.is_empty() {
        send(ParserMessage::Batch(batch));
    }
}

/// A valid row as it is spilled: the sort key (the patient's key, UTC instant as
/// big-endian integers: the order of the store's `PK`, `SK`) and a payload of its fields.
struct SpilledRow<'a> {
    patient: &'a PatientKey,
    line: u64,
    parts: VisitParts<'a>,
    hash: &'a str,
    raw_mrn: &'a str,
    raw_date_time: &'a str,
}

impl<'a> SpilledRow<'a> {
    fn encode(&self, key: &mut Vec<u8>, payload: &mut Vec<u8>) {
        let instant = self.parts.instant;
        key.clear();
        // Patient keys have one length, so the bytes order as the store's keys do.
        key.extend_from_slice(self.patient.as_str().as_bytes());
        key.extend_from_slice(&((instant.unix_seconds() as u64) ^ (1 << 63)).to_be_bytes());
        key.extend_from_slice(&instant.subsec_nanos().to_be_bytes());

        payload.clear();
        payload.extend_from_slice(&self.line.to_le_bytes());
        payload.extend_from_slice(&instant.unix_seconds().to_le_bytes());
        payload.extend_from_slice(&instant.subsec_nanos().to_le_bytes());
        for text in [
            self.parts.mrn.as_str(),
            self.parts.date_time,
            self.parts.first_name,
            self.parts.last_name,
            self.parts.doctors_notes,
            self.hash,
            self.raw_mrn,
            self.raw_date_time,
        ] {
            payload.extend_from_slice(&(text.len() as u32).to_le_bytes());
            payload.extend_from_slice(text.as_bytes());
        }
    }

    /// The patient key back from a sort key.
    fn patient_of(key: &[u8]) -> Option<PatientKey> {
        let text = std::str::from_utf8(key.get(..ward_domain::pseudonym::PSEUDONYM_LEN)?).ok()?;
        PatientKey::parse(text)
    }

    /// The row back from its payload; `None` if the bytes are not one (a damaged file).
    fn decode(payload: &'a [u8]) -> Option<Decoded<'a>> {
        let mut rest = payload;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        let line = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let seconds = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let nanos = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut text = || -> Option<&'a str> {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            std::str::from_utf8(take(len)?).ok()
        };
        Some(Decoded {
            line,
            instant: UtcInstant::from_unix_nanos(
                i128::from(seconds) * 1_000_000_000 + i128::from(nanos),
            ),
            // Fields are read in the order `encode` wrote them (struct fields are evaluated
            // in the order written).
            mrn: Mrn::parse(text()?).ok()?,
            date_time: text()?,
            first_name: text()?,
            last_name: text()?,
            doctors_notes: text()?,
            hash: text()?,
            raw_mrn: text()?,
            raw_date_time: text()?,
        })
    }
}

/// A decoded spilled row (owns its MRN; the rest borrows the payload).
struct Decoded<'a> {
    line: u64,
    instant: UtcInstant,
    mrn: Mrn,
    date_time: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    doctors_notes: &'a str,
    hash: &'a str,
    raw_mrn: &'a str,
    raw_date_time: &'a str,
}

impl Decoded<'_> {
    fn into_parsed(self, patient: &PatientKey, source: &RecordSource<'_>) -> ParsedRow {
        let parts = VisitParts {
            mrn: &self.mrn,
            date_time: self.date_time,
            instant: self.instant,
            first_name: self.first_name,
            last_name: self.last_name,
            doctors_notes: self.doctors_notes,
        };
        ParsedRow::Valid {
            item: visit_item(parts, patient, self.line, self.hash.to_owned(), source),
            line: self.line,
            hash: self.hash.to_owned(),
            raw_mrn: self.raw_mrn.to_owned(),
            raw_date_time: self.raw_date_time.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with empty text fields.
    fn spilled<'a>(patient: &'a PatientKey, mrn: &'a Mrn, instant: UtcInstant) -> SpilledRow<'a> {
        SpilledRow {
            patient,
            line: 1,
            parts: VisitParts {
                mrn,
                date_time: "",
                instant,
                first_name: "",
                last_name: "",
                doctors_notes: "",
            },
            hash: "",
            raw_mrn: "",
            raw_date_time: "",
        }
    }

    fn encoded(row: &SpilledRow<'_>) -> (Vec<u8>, Vec<u8>) {
        let (mut key, mut payload) = (Vec::new(), Vec::new());
        row.encode(&mut key, &mut payload);
        (key, payload)
    }

    #[test]
    fn a_spilled_row_reads_back_field_for_field_and_damage_is_refused() {
        let mrn = Mrn::parse("MRN001").expect("mrn");
        let patient = pseudonyms().patient(&provider(), &mrn);
        let instant = UtcInstant::from_unix_nanos(-1_234_567_890_123);
        let mut row = spilled(&patient, &mrn, instant);
        row.line = 42;
        row.parts.date_time = "1969-12-31T23:39:25.432109877Z";
        row.parts.doctors_notes = "a, \"quoted\"\nnote";
        row.hash = "abc";
        (row.raw_mrn, row.raw_date_time) = (" MRN001 ", "raw");
        let (key, payload) = encoded(&row);
        assert_eq!(SpilledRow::patient_of(&key), Some(patient.clone()));
        assert!(
            !key.windows(6).any(|w| w == b"MRN001"),
            "no MRN in the sort key"
        );
        let back = SpilledRow::decode(&payload).expect("decodes");
        assert_eq!(back.line, 42);
        assert_eq!(back.instant, instant);
        assert_eq!(back.mrn, mrn);
        assert_eq!(back.date_time, "1969-12-31T23:39:25.432109877Z");
        assert_eq!(back.doctors_notes, "a, \"quoted\"\nnote");
        assert_eq!(back.hash, "abc");
        assert_eq!((back.raw_mrn, back.raw_date_time), (" MRN001 ", "raw"));
        assert!(SpilledRow::decode(&payload[..payload.len() - 1]).is_none());
    }

    #[test]
    fn batches_are_cut_between_identities_only_and_the_patients_are_heard_while_sorting() {
        // MRN2 has one visit three times (two offsets), spanning what would be a batch edge.
        let csv = "medical_record_number,date_time,first_name,last_name,doctors_notes\n\
            MRN3,2020-01-01T00:00:00Z,A,B,\n\
            MRN1,2020-01-01T00:00:00Z,A,B,\n\
            MRN2,2020-01-01T00:00:00Z,A,B,one\n\
            MRN2,2020-01-01T01:00:00+01:00,A,B,two\n\
            MRN2,2020-01-01T00:00:00Z,A,B,three\n\
            MRN4,not a date,A,B,\n\
            MRN2,2021-01-01T00:00:00Z,A,B,\n";
        let provider = provider();
        let pseudonyms = pseudonyms();
        let upload = ward_domain::UploadId::new(UtcInstant::from_unix_nanos(0), 7);
        let source = RecordSource {
            provider: &provider,
            pseudonyms: &pseudonyms,
            upload: &upload,
            csv_file: "f.csv",
            processed_at: "2026-01-01T00:00:00Z",
            file_name: None,
        };
        let rules = VisitRules::at(UtcInstant::from_unix_nanos(1_800_000_000_000_000_000));
        let dir = tempfile::tempdir().expect("dir");
        let (patients, mut heard) = tokio::sync::mpsc::channel(64);
        let sort = SortSettings {
            dir: dir.path().to_owned(),
            buffer_bytes: 1 << 20,
            patients: Some(patients),
        };
        let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
        let progress = AtomicU64::new(0);
        let table = ward_store_embedded::EmbeddedTable::open(
            &dir.path().join("ward.redb"),
            &ward_store_embedded::EmbeddedOptions::default(),
        )
        .expect("store");
        let output = ParserOutput {
            sender,
            table: &table,
        };
        parse_file_in_key_order(csv.as_bytes(), &rules, &source, 2, sort, &progress, &output);
        drop(output);
        // The patient of each valid row, in file order, and the list closed once read.
        let mut patients = Vec::new();
        while let Ok(list) = heard.try_recv() {
            patients.extend(list);
        }
        let expected: Vec<PatientKey> = ["MRN3", "MRN1", "MRN2", "MRN2", "MRN2", "MRN2"]
            .iter()
            .map(|mrn| source.patient(&Mrn::parse(mrn).expect("mrn")))
            .collect();
        assert_eq!(patients, expected);
        assert!(matches!(
            heard.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
        ));
        let mut batches = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            if let ParserMessage::Batch(batch) = message {
                let keys: Vec<(String, u64)> = batch
                    .rows
                    .iter()
                    .filter_map(|row| match row {
                        ParsedRow::Valid { item, line, .. } => Some((
                            format!("{}|{}", item["PK"].as_s()?, item["SK"].as_s()?),
                            *line,
                        )),
                        ParsedRow::Rejected { .. } => None,
                    })
                    .collect();
                if !keys.is_empty() {
                    batches.push(keys);
                }
            }
        }
        // Every valid row, in key order (patients by key, then time), and the rows of one
        // identity (MRN2 at 2020: lines 4, 5, 6) in file order.
        let rows: Vec<&(String, u64)> = batches.iter().flatten().collect();
        let mut lines: Vec<u64> = rows.iter().map(|(_, line)| *line).collect();
        assert!(
            rows.windows(2).all(|pair| pair[0].0 <= pair[1].0),
            "{rows:?}"
        );
        let same: Vec<u64> = lines
            .iter()
            .copied()
            .filter(|line| (4..=6).contains(line))
            .collect();
        assert_eq!(same, [4, 5, 6]);
        lines.sort_unstable();
        assert_eq!(lines, [2, 3, 4, 5, 6, 8]);
        // Batches of 2 rows are cut only between identities.
        assert!(
            batches.iter().any(|batch| batch.len() > 2),
            "the three rows of one identity stay together: {batches:?}"
        );
        let mut identities: Vec<&String> = batches.iter().flatten().map(|(key, _)| key).collect();
        identities.dedup();
        assert_eq!(
            identities.len(),
            4,
            "each identity in one batch: {identities:?}"
        );
    }

    #[test]
    fn sort_keys_order_rows_as_the_store_orders_patient_and_visit_keys() {
        let (provider, pseudonyms) = (provider(), pseudonyms());
        let row = |mrn: &str, nanos: i128| {
            let mrn = Mrn::parse(mrn).expect("mrn");
            let patient = pseudonyms.patient(&provider, &mrn);
            let instant = UtcInstant::from_unix_nanos(nanos);
            let store_key = format!(
                "{}|{}",
                ward_domain::key_layout::patient_pk(&provider, &patient),
                ward_domain::key_layout::visit_sk(instant)
            );
            (encoded(&spilled(&patient, &mrn, instant)).0, store_key)
        };
        let mut rows = Vec::new();
        for mrn in ["MRN1", "MRN12", "MRN2", "A", "ZZZ-9"] {
            for nanos in [-9_000_000_000_000, -5_000_000_000, -1, 0, 7, 1_000_000_000] {
                rows.push(row(mrn, nanos));
            }
        }
        let mut by_sort_key = rows.clone();
        by_sort_key.sort_by(|a, b| a.0.cmp(&b.0));
        rows.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(by_sort_key, rows);
    }

    fn provider() -> ward_domain::ProviderId {
        ward_domain::ProviderId::parse("PROV001").expect("provider")
    }

    fn pseudonyms() -> ward_domain::Pseudonyms {
        ward_domain::Pseudonyms::new(&[3; 32])
    }
}

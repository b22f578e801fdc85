//! Reading a visit file into batches of parsed rows, on a blocking thread: each valid row
//! already its stored item, each rejected one its problem.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use ward_domain::visit::{FieldError, VisitRules};
use ward_ports::visits::{RecordSource, visit_item};
use ward_ports::{ProcessError, RowProblem};
use ward_store::{Item, Table};

use crate::visit_csv::{FileError, RowRead, VisitCsvReader};

pub(crate) enum ParsedRow {
    Valid {
        item: Item,
        line: u64,
        hash: String,
        raw_mrn: String,
        raw_date_time: String,
    },
    Rejected {
        problem: RowProblem,
        raw_mrn: String,
        raw_date_time: String,
    },
}

pub(crate) struct ParsedBatch {
    pub(crate) rows: Vec<ParsedRow>,
    /// The rows this batch accounts for (each row of the file is in exactly one batch).
    pub(crate) n_rows: u64,
    /// Rows rejected by a rule whose answer changes with time.
    pub(crate) n_time_dependent: u64,
}

impl ParsedBatch {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self {
            rows: Vec::with_capacity(rows),
            n_rows: 0,
            n_time_dependent: 0,
        }
    }

    /// This batch, leaving an empty one with room for `capacity` rows in its place.
    pub(crate) fn take(&mut self, capacity: usize) -> Self {
        std::mem::replace(self, Self::with_capacity(capacity))
    }
}

/// A rejected row as the writer records it.
pub(crate) fn rejected_row(
    line: u64,
    error: FieldError,
    raw_mrn: String,
    raw_date_time: String,
) -> ParsedRow {
    ParsedRow::Rejected {
        problem: RowProblem {
            line,
            outcome: "rejected".into(),
            column: error.column.to_owned(),
            reason: error.reason,
            index: None,
        },
        raw_mrn,
        raw_date_time,
    }
}

pub(crate) enum ParserMessage {
    Header {
        unknown_columns: Vec<String>,
        n_unknown_columns: u64,
    },
    Batch(ParsedBatch),
    FileFailed(FileError),
}

/// A blocking reader of an object, for a parser thread: a local file is read directly
/// (`object_store` would stream it in 8 KiB chunks, a blocking task each), any other
/// store through its byte stream. Bytes read are added to `progress`.
pub(crate) async fn object_reader(
    objects: &dyn ObjectStore,
    path: &ObjectPath,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Box<dyn Read + Send>, ProcessError> {
    let result = objects.get(path).await?;
    let inner: Box<dyn Read + Send> = match result.payload {
        GetResultPayload::File(mut file, _) => {
            file.seek(SeekFrom::Start(result.range.start))
                .map_err(|e| ProcessError::Read(e.to_string()))?;
            Box::new(file.take(result.range.end - result.range.start))
        }
        GetResultPayload::Stream(stream) => Box::new(tokio_util::io::SyncIoBridge::new(
            tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other)),
        )),
    };
    Ok(Box::new(CountedReader { inner, progress }))
}

pub(crate) struct CountedReader {
    inner: Box<dyn Read + Send>,
    progress: Option<Arc<AtomicU64>>,
}

impl Read for CountedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(progress) = &self.progress {
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Where a parser thread sends what it reads: each batch's items prepared for the table
/// first ([`Table::prepare`]: the part of the write that needs only the item, done on
/// this thread rather than the writer's).
pub(crate) struct ParserOutput<'a> {
    pub(crate) sender: tokio::sync::mpsc::Sender<ParserMessage>,
    pub(crate) table: &'a dyn Table,
}

impl ParserOutput<'_> {
    /// Sends `message`, its batch's items prepared first ([`Gone`]: nobody listens).
    pub(crate) fn blocking_send(&self, mut message: ParserMessage) -> Result<(), Gone> {
        if let ParserMessage::Batch(batch) = &mut message {
            for row in &mut batch.rows {
                if let ParsedRow::Valid { item, .. } = row {
                    self.table.prepare(item);
                }
            }
        }
        self.sender.blocking_send(message).map_err(|_| Gone)
    }
}

/// The writer stopped listening (it failed, or gave up).
#[derive(Debug)]
pub(crate) struct Gone;

pub(crate) fn parse_file<R: std::io::Read>(
    input: R,
    rules: &VisitRules,
    source: &RecordSource<'_>,
    batch_rows: usize,
    sender: &ParserOutput<'_>,
) {
    let mut reader = match VisitCsvReader::new(input) {
        Ok(reader) => reader,
        Err(error) => {
            let _ = sender.blocking_send(ParserMessage::FileFailed(error));
            return;
        }
    };
    let unknown_columns = std::mem::take(&mut reader.unknown_columns);
    let n_unknown_columns = reader.n_unknown_columns;
    if sender
        .blocking_send(ParserMessage::Header {
            unknown_columns,
            n_unknown_columns,
        })
        .is_err()
    {
        return;
    }
    let mut batch = ParsedBatch::with_capacity(batch_rows);
    loop {
        match reader.next_row(rules) {
            Ok(Some(row)) => {
                batch.n_rows += 1;
                batch.rows.push(match row.read {
                    RowRead::Valid(visit) => {
                        let hash = visit.content_hash();
                        ParsedRow::Valid {
                            item: visit_item(
                                (&visit).into(),
                                &source.patient(&visit.mrn),
                                row.line,
                                hash.clone(),
                                source,
                            ),
                            line: row.line,
                            hash,
                            raw_mrn: row.raw_mrn,
                            raw_date_time: row.raw_date_time,
                        }
                    }
                    RowRead::Rejected(error) => {
                        batch.n_time_dependent += u64::from(error.depends_on_now);
                        rejected_row(row.line, error, row.raw_mrn, row.raw_date_time)
                    }
                });
                if batch.rows.len() >= batch_rows
                    && sender
                        .blocking_send(ParserMessage::Batch(batch.take(batch_rows)))
                        .is_err()
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = sender.blocking_send(ParserMessage::Batch(batch));
                let _ = sender.blocking_send(ParserMessage::FileFailed(error));
                return;
            }
        }
    }
    let _ = sender.blocking_send(ParserMessage::Batch(batch));
}

//! The errors file: every row that did not become a record, as CSV beside the upload.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use ward_domain::spreadsheet_safe;
use ward_ports::{ProcessError, RowProblem};

use crate::key_order::SortSettings;
use crate::spill::SpillSorter;

/// The full list of rows that did not become records, streamed to object storage (in
/// key order, sorted by line on disk first).
pub(crate) struct ErrorsFile {
    writer: Option<object_store::buffered::BufWriter>,
    objects: Arc<dyn ObjectStore>,
    path: ObjectPath,
    pending: Vec<u8>,
    /// Lines held for sorting by line number (key order only).
    sorter: Option<SpillSorter>,
}

impl ErrorsFile {
    pub(crate) const HEADER: &'static [u8] =
        b"line,outcome,column,reason,medical_record_number,date_time\n";

    /// Problems held in memory before a sorted run of them goes to disk.
    pub(crate) const SORT_BUFFER_BYTES: usize = 4 * 1024 * 1024;

    pub(crate) fn new(
        objects: Arc<dyn ObjectStore>,
        path: ObjectPath,
        sort: Option<SortSettings>,
    ) -> Self {
        Self {
            writer: None,
            objects,
            path,
            pending: Vec::new(),
            sorter: sort.map(|sort| {
                SpillSorter::new(sort.dir, sort.buffer_bytes.min(Self::SORT_BUFFER_BYTES))
            }),
        }
    }

    pub(crate) fn push(
        &mut self,
        problem: &RowProblem,
        raw_mrn: &str,
        raw_date_time: &str,
    ) -> Result<(), ProcessError> {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        let line = problem.line.to_string();
        let fields = [
            line.as_str(),
            &problem.outcome,
            &problem.column,
            &spreadsheet_safe(&problem.reason),
            &spreadsheet_safe(raw_mrn),
            &spreadsheet_safe(raw_date_time),
        ];
        if writer.write_record(fields).is_ok()
            && let Ok(bytes) = writer.into_inner()
        {
            match &mut self.sorter {
                Some(sorter) => sorter
                    .push(&problem.line.to_be_bytes(), &bytes)
                    .map_err(|e| {
                        ProcessError::Read(format!("sorting the error list on disk: {e}"))
                    })?,
                None => self.pending.extend_from_slice(&bytes),
            }
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let mut writer =
                    object_store::buffered::BufWriter::new(self.objects.clone(), self.path.clone());
                writer
                    .write_all(Self::HEADER)
                    .await
                    .map_err(|e| ProcessError::Read(format!("writing the error list: {e}")))?;
                self.writer.insert(writer)
            }
        };
        writer
            .write_all(&self.pending)
            .await
            .map_err(|e| ProcessError::Read(format!("writing the error list: {e}")))?;
        self.pending.clear();
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> Result<(), ProcessError> {
        if let Some(sorter) = self.sorter.take() {
            let failed = |e: std::io::Error| {
                ProcessError::Read(format!("sorting the error list on disk: {e}"))
            };
            let mut sorted = sorter.finish().map_err(failed)?;
            let (mut line, mut bytes) = (Vec::new(), Vec::new());
            while sorted.next_into(&mut line, &mut bytes).map_err(failed)? {
                self.pending.extend_from_slice(&bytes);
                if self.pending.len() >= 1024 * 1024 {
                    self.flush().await?;
                }
            }
        }
        self.flush().await?;
        match self.writer.take() {
            Some(mut writer) => writer
                .shutdown()
                .await
                .map_err(|e| ProcessError::Read(format!("writing the error list: {e}"))),
            None => {
                // No problems: an error list with just the header, so the download exists.
                self.objects
                    .put(&self.path, Self::HEADER.to_vec().into())
                    .await?;
                Ok(())
            }
        }
    }

    pub(crate) async fn abort(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.abort().await;
        }
    }
}

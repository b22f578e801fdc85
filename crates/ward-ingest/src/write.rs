//! Writing a visit file's rows: the parser (`parse`, or `key_order`) on a blocking thread
//! sends batches; this task writes each batch's valid rows only if absent and accounts for
//! every row (inserted, duplicate, conflict, rejected) in the report and the error list.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use object_store::path::Path as ObjectPath;
use ward_domain::key_layout;
use ward_domain::visit::VisitRules;
use ward_domain::{ProviderId, UploadId, UtcInstant};
use ward_ports::visits::{RecordSource, StoredSource};
use ward_ports::{ProcessError, RowProblem, Upload, UploadReport};
use ward_store::{Item, Key, PK, PutOutcome, Query, SK, SkCondition, StoreError, Table, Value};

use crate::context::IngestContext;
use crate::errors_file::ErrorsFile;
use crate::key_order::{SortSettings, parse_file_in_key_order};
use crate::parse::{
    ParsedBatch, ParsedRow, ParserMessage, ParserOutput, object_reader, parse_file,
};
use crate::visit_csv::FileError;

/// Streams the file through the parser (a blocking thread) and writes batches (this task).
pub(crate) async fn ingest_rows(
    ctx: &IngestContext,
    upload: &Upload,
    processing: &ObjectPath,
    errors_path: &ObjectPath,
    csv_file: &str,
    rules: VisitRules,
) -> Result<Result<(UploadReport, u64), FileError>, ProcessError> {
    let (provider, upload_id) = (&upload.provider, &upload.id);
    let reader = object_reader(
        ctx.objects.as_ref(),
        processing,
        Some(Arc::clone(&ctx.progress_bytes)),
    )
    .await?;
    // Two parsed batches ahead of the writer keep both cores busy; more only costs memory.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<ParserMessage>(2);
    let processed_at = UtcInstant::now().rfc3339_seconds();
    let source_provider = provider.clone();
    let source_upload = upload_id.clone();
    let source_file = csv_file.to_owned();
    let pseudonyms = Arc::clone(&ctx.pseudonyms);
    let source_file_name = upload
        .file_name
        .as_ref()
        .map(|name| name.as_str().to_owned());
    let batch_rows = ctx.settings.batch_rows;
    let sort_dir = || {
        ctx.settings
            .sort_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    };
    // While the file is sorted, the table hears which patients it will write (and gets
    // ready for them: the protected table makes their data keys meanwhile).
    let mut expecting = None;
    let sort = ctx.key_order().then(|| {
        let (patients, heard) = tokio::sync::mpsc::channel(EXPECTED_LISTS_WAITING);
        expecting = Some(Expecting(tokio::spawn(expect_writes(
            Arc::clone(&ctx.table),
            provider.clone(),
            heard,
        ))));
        SortSettings {
            dir: sort_dir(),
            buffer_bytes: ctx.settings.sort_buffer_bytes,
            patients: Some(patients),
        }
    });
    let errors_sort = sort.as_ref().map(|_| SortSettings {
        dir: sort_dir(),
        buffer_bytes: ctx.settings.sort_buffer_bytes,
        patients: None,
    });
    let overlap_batches = sort.is_some();
    let sorted_rows = Arc::clone(&ctx.progress_sorted_rows);
    let table = Arc::clone(&ctx.table);
    let parser = tokio::task::spawn_blocking(move || {
        let sender = ParserOutput {
            sender,
            table: &*table,
        };
        let source = RecordSource {
            provider: &source_provider,
            pseudonyms: &pseudonyms,
            upload: &source_upload,
            csv_file: &source_file,
            processed_at: &processed_at,
            file_name: source_file_name.as_deref(),
        };
        match sort {
            Some(sort) => parse_file_in_key_order(
                reader,
                &rules,
                &source,
                batch_rows,
                sort,
                &sorted_rows,
                &sender,
            ),
            None => parse_file(reader, &rules, &source, batch_rows, &sender),
        }
    });

    let mut report = UploadReport::default();
    // Rejections a later run could decide otherwise (a date too far ahead).
    let mut n_time_dependent = 0;
    // In key order, conflicts arrive after every rejection, so the error list is sorted
    // back into line order before it is written.
    let mut errors = ErrorsFile::new(ctx.objects.clone(), errors_path.clone(), errors_sort);
    let mut file_error = None;
    // In key order, no identity spans two batches (the parser cuts between identities), so
    // the next batches' writes may start before the last one's end: which is written first
    // changes no outcome. In file order a later batch may repeat a key of an earlier one,
    // and the earlier line must win, so each batch waits for the one before.
    let depth = if overlap_batches {
        KEY_ORDER_BATCHES_IN_FLIGHT
    } else {
        1
    };
    let mut in_flight: VecDeque<BatchInFlight> = VecDeque::with_capacity(depth);
    while let Some(message) = receiver.recv().await {
        match message {
            ParserMessage::Header {
                unknown_columns,
                n_unknown_columns,
            } => {
                report.unknown_columns = unknown_columns;
                report.unknown_column_count = n_unknown_columns;
            }
            ParserMessage::FileFailed(error) => file_error = Some(error),
            ParserMessage::Batch(batch) => {
                n_time_dependent += batch.n_time_dependent;
                in_flight.push_back(BatchInFlight::start(ctx, provider, batch, &mut report));
                while in_flight.len() >= depth
                    && let Some(oldest) = in_flight.pop_front()
                {
                    if let Err(error) =
                        finish_batch(ctx, upload_id, oldest, &mut report, &mut errors).await
                    {
                        drop(receiver);
                        give_up(in_flight, errors, parser).await;
                        return Err(error);
                    }
                }
            }
        }
    }
    while let Some(oldest) = in_flight.pop_front() {
        if let Err(error) = finish_batch(ctx, upload_id, oldest, &mut report, &mut errors).await {
            give_up(in_flight, errors, parser).await;
            return Err(error);
        }
    }
    parser
        .await
        .map_err(|e| ProcessError::Internal(format!("parser task: {e}")))?;
    if let Some(mut expecting) = expecting {
        let _ = (&mut expecting.0).await;
    }
    match file_error {
        Some(FileError::Io(message)) => {
            errors.abort().await;
            Err(ProcessError::Read(message))
        }
        Some(error) => {
            errors.abort().await;
            Ok(Err(error))
        }
        None => {
            errors.finish().await?;
            report.first_problems.sort_by_key(|problem| problem.line);
            Ok(Ok((report, n_time_dependent)))
        }
    }
}

/// Lists of patients (of [`SortSettings::patients`]) waiting for the table at most; past
/// that, the parser drops the lists it hears (hints) rather than wait.
const EXPECTED_LISTS_WAITING: usize = 64;
/// Distinct patients one ingest tells the table of at most (a bound on the memory of
/// telling each once).
const EXPECTED_PATIENTS: usize = 262_144;

/// The task of [`expect_writes`], ended when dropped: an ingest that stops early leaves
/// nothing of it running.
struct Expecting(tokio::task::JoinHandle<()>);

impl Drop for Expecting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Tells `table` the partitions of the patients heard, each once ([`Table::expect_writes`]),
/// until the parser is done reading the file.
async fn expect_writes(
    table: Arc<dyn Table>,
    provider: ProviderId,
    mut heard: tokio::sync::mpsc::Receiver<Vec<ward_domain::PatientKey>>,
) {
    // By hash (8 bytes a patient): two patients that share one are told once, which a
    // hint allows.
    let mut told = std::collections::HashSet::new();
    let hash = |patient: &ward_domain::PatientKey| {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(patient, &mut hasher);
        std::hash::Hasher::finish(&hasher)
    };
    while let Some(patients) = heard.recv().await {
        let partitions: Vec<String> = patients
            .iter()
            .filter(|patient| told.len() < EXPECTED_PATIENTS && told.insert(hash(patient)))
            .map(|patient| key_layout::patient_pk(&provider, patient))
            .collect();
        if !partitions.is_empty() {
            table.expect_writes(partitions).await;
        }
    }
}

/// Batches written at once in key order: one can seal while another is in the store's
/// write. Three against two, measured (docs/benchmarks.md, session 32): sealed first loads
/// 9% faster, unsealed 2%; four gained nothing.
const KEY_ORDER_BATCHES_IN_FLIGHT: usize = 3;

/// Waits for the writes still in flight, drops the error list and waits for the parser:
/// an attempt that fails leaves nothing of it running.
async fn give_up(
    in_flight: VecDeque<BatchInFlight>,
    mut errors: ErrorsFile,
    parser: tokio::task::JoinHandle<()>,
) {
    for batch in in_flight {
        batch.abandon().await;
    }
    errors.abort().await;
    let _ = parser.await;
}

/// A batch whose valid rows are being written, with what accounting them needs.
pub(crate) struct BatchInFlight {
    write: tokio::task::JoinHandle<Result<Vec<RowWrite>, StoreError>>,
    /// Line, content hash, raw MRN and raw date of each valid row, in the order written.
    rows: Vec<(u64, String, String, String)>,
    /// Rejected rows (conflicts join them when the outcomes are in).
    problems: Vec<(RowProblem, String, String)>,
    n_rows: u64,
}

impl BatchInFlight {
    /// Starts writing the valid rows of `batch` (on a task of its own, so that the next
    /// batch can be prepared meanwhile) and counts its rejected rows.
    fn start(
        ctx: &IngestContext,
        provider: &ProviderId,
        batch: ParsedBatch,
        report: &mut UploadReport,
    ) -> Self {
        let mut items = Vec::with_capacity(batch.rows.len());
        let mut rows = Vec::with_capacity(batch.rows.len());
        let mut problems = Vec::new();
        for row in batch.rows {
            match row {
                ParsedRow::Valid {
                    item,
                    line,
                    hash,
                    raw_mrn,
                    raw_date_time,
                } => {
                    items.push(item);
                    rows.push((line, hash, raw_mrn, raw_date_time));
                }
                ParsedRow::Rejected {
                    problem,
                    raw_mrn,
                    raw_date_time,
                } => {
                    report.counts.rejected += 1;
                    problems.push((problem, raw_mrn, raw_date_time));
                }
            }
        }
        let table = Arc::clone(&ctx.table);
        let provider = provider.clone();
        let write =
            tokio::spawn(async move { write_unless_erased(&*table, &provider, items).await });
        Self {
            write,
            rows,
            problems,
            n_rows: batch.n_rows,
        }
    }

    /// Waits for the write to end, whatever its result (before giving up on an attempt, so
    /// that no write of it outlives it).
    async fn abandon(self) {
        let _ = self.write.await;
    }
}

/// Waits for a batch's writes and accounts for its rows: the report's counts, conflicts and
/// rejections in the error list, progress, and the injected fault of the tests.
pub(crate) async fn finish_batch(
    ctx: &IngestContext,
    upload_id: &UploadId,
    batch: BatchInFlight,
    report: &mut UploadReport,
    errors: &mut ErrorsFile,
) -> Result<(), ProcessError> {
    let BatchInFlight {
        write,
        rows,
        mut problems,
        n_rows,
    } = batch;
    let outcomes = write
        .await
        .map_err(|e| ProcessError::Internal(format!("store task: {e}")))??;
    ctx.progress_valid_rows
        .fetch_add(rows.len() as u64, Ordering::Relaxed);
    let mut outcomes = outcomes.into_iter();
    for (line, hash, raw_mrn, raw_date_time) in rows {
        let outcome = outcomes
            .next()
            .ok_or_else(|| ProcessError::Internal("store returned too few outcomes".into()))?;
        match outcome {
            RowWrite::Erased(erased_at) => {
                report.counts.rejected += 1;
                let problem = RowProblem {
                    line,
                    index: None,
                    outcome: "rejected".into(),
                    column: "mrn".into(),
                    reason: format!(
                        "the patient was erased ({erased_at}); an erased patient's records are not stored again"
                    ),
                };
                problems.push((problem, raw_mrn, raw_date_time));
            }
            RowWrite::Put(PutOutcome::Written) => report.counts.inserted += 1,
            RowWrite::Put(PutOutcome::Exists(existing)) => {
                let stored = StoredSource::of(&existing);
                let same_source = stored.upload_id == upload_id.as_str()
                    && stored.source_line == Some(line as i64);
                if same_source {
                    report.counts.inserted += 1;
                } else if stored.content_hash == hash {
                    report.counts.duplicate += 1;
                } else {
                    report.counts.conflict += 1;
                    let problem = RowProblem {
                        line,
                        index: None,
                        outcome: "conflict".into(),
                        column: "row".into(),
                        reason: format!(
                            "a different record for this patient and time already exists (from {} line {}); the stored record was kept",
                            stored.csv_file,
                            stored.source_line.unwrap_or_default()
                        ),
                    };
                    problems.push((problem, raw_mrn, raw_date_time));
                }
            }
        }
    }
    // Rejected rows and conflicts, in line order, in the error list and the report.
    problems.sort_by_key(|(problem, _, _)| problem.line);
    for (problem, raw_mrn, raw_date_time) in problems {
        errors.push(&problem, &raw_mrn, &raw_date_time)?;
        keep_first_problems(&mut report.first_problems, problem);
    }
    errors.flush().await?;
    report.counts.rows += n_rows;
    let rows_so_far = ctx.progress_rows.fetch_add(n_rows, Ordering::Relaxed) + n_rows;
    if let Some(limit) = ctx.settings.fault_after_rows
        && report.counts.rows >= limit
        && ctx.faults_fired.fetch_add(1, Ordering::SeqCst) < ctx.settings.fault_times
    {
        if ctx.settings.fault_panics {
            panic!("injected panic after {rows_so_far} rows");
        }
        return Err(ProcessError::Injected(rows_so_far));
    }
    Ok(())
}

/// What became of one valid row.
pub(crate) enum RowWrite {
    /// Put if absent.
    Put(PutOutcome),
    /// Not written: its patient was erased (when).
    Erased(String),
}

/// Puts `items` if absent, except those of an erased patient. The provider's tombstones
/// are looked at once per batch (one read when it has none, the common case), so a
/// patient erased while its file is ingested loses at most the batch in flight.
async fn write_unless_erased(
    table: &dyn Table,
    provider: &ProviderId,
    items: Vec<Item>,
) -> Result<Vec<RowWrite>, StoreError> {
    let erased_pk = key_layout::erased_pk(provider);
    let any = table
        .query(Query {
            limit: 1,
            ..Query::partition(&erased_pk, SkCondition::Any)
        })
        .await?;
    if any.items.is_empty() {
        let outcomes = table.put_many_if_absent(items).await?;
        return Ok(outcomes.into_iter().map(RowWrite::Put).collect());
    }
    let sk_of = |item: &Item| {
        item.get(PK)
            .and_then(Value::as_s)
            .and_then(|pk| key_layout::erased_sk_of_partition(provider, pk))
    };
    let mut wanted: Vec<String> = items.iter().filter_map(sk_of).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut erased: HashMap<String, String> = HashMap::new();
    for chunk in wanted.chunks(ward_store::MAX_BATCH_GET_KEYS) {
        let keys = chunk
            .iter()
            .map(|sk| Key::new(erased_pk.clone(), sk.clone()))
            .collect();
        for tombstone in table.batch_get(keys).await? {
            if let Some(sk) = tombstone.get(SK).and_then(Value::as_s) {
                let at = tombstone
                    .get("erasedAt")
                    .and_then(Value::as_s)
                    .unwrap_or_default();
                erased.insert(sk.to_owned(), at.to_owned());
            }
        }
    }
    let mut kept = Vec::with_capacity(items.len());
    let mut writes: Vec<Option<RowWrite>> = Vec::with_capacity(items.len());
    for item in items {
        match sk_of(&item).and_then(|sk| erased.get(&sk)) {
            Some(at) => writes.push(Some(RowWrite::Erased(at.clone()))),
            None => {
                kept.push(item);
                writes.push(None);
            }
        }
    }
    let mut outcomes = table.put_many_if_absent(kept).await?.into_iter();
    writes
        .into_iter()
        .map(|write| match write {
            Some(write) => Ok(write),
            None => outcomes
                .next()
                .map(RowWrite::Put)
                .ok_or_else(|| StoreError::Internal("the store returned too few outcomes".into())),
        })
        .collect()
}

/// Keeps the [`UploadReport::MAX_PROBLEMS`] problems with the lowest lines, whatever
/// order they come in (in key order, conflicts come after every rejection).
pub(crate) fn keep_first_problems(first: &mut Vec<RowProblem>, problem: RowProblem) {
    if first.len() < UploadReport::MAX_PROBLEMS {
        first.push(problem);
        return;
    }
    if let Some((highest, kept)) = first
        .iter()
        .enumerate()
        .max_by_key(|(_, kept)| kept.line)
        .map(|(index, kept)| (index, kept.line))
        && problem.line < kept
    {
        first[highest] = problem;
    }
}

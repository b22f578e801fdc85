//! Reading a facility file: telling its shape from the first value, JSON lines streamed in
//! chunks (each chunk validated on its own thread), arrays and wrapped arrays whole, and
//! every problem located by line (and array index).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use ward_domain::UploadId;

use super::validate::{Share, assemble, validate_all, validate_share};
use super::{FileError, MAX_DOCUMENT_BYTES, MAX_LINE_BYTES, ParsedFile};

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

/// Bytes read at a time when streaming JSON lines.
pub(super) const CHUNK_BYTES: usize = 8 << 20;

pub(super) fn parse_reader_in_chunks<R: std::io::Read>(
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
pub(super) fn too_large_document(head: &[u8]) -> String {
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
pub(super) fn fill<R: std::io::Read>(
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
pub(super) fn starts_json_lines(head: &[u8]) -> bool {
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
pub(super) struct Chunk {
    pub(super) seq: usize,
    pub(super) first_line: u64,
    pub(super) bytes: Vec<u8>,
}

pub(super) fn stream_json_lines<R: std::io::Read>(
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

pub(super) fn validate_chunk(chunk: &Chunk, upload: &UploadId) -> Result<Share, FileError> {
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
pub(super) struct Record<'a> {
    pub(super) line: u64,
    pub(super) index: Option<u64>,
    pub(super) json: &'a str,
}

pub(super) fn object_or_lines<'a>(
    text: &'a str,
    start: usize,
) -> Result<Vec<Record<'a>>, FileError> {
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

pub(super) fn json_lines(text: &str) -> Vec<Record<'_>> {
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

pub(super) fn array_records<'a>(
    text: &'a str,
    array: Option<&'a str>,
) -> Result<Vec<Record<'a>>, FileError> {
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
pub(super) struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    pub(super) fn line_at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.bytes.len());
        if offset >= self.offset {
            self.line +=
                memchr::memchr_iter(b'\n', &self.bytes[self.offset..offset]).count() as u64;
            self.offset = offset;
        }
        self.line
    }
}

pub(super) fn line_of(bytes: &[u8], offset: usize) -> u64 {
    LineCounter::new(bytes).line_at(offset)
}

/// serde_json's message without its own line (ours is the file's), keeping the column.
pub(super) fn column_only(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("{} (column {})", &text[..at], error.column()),
        None => text,
    }
}

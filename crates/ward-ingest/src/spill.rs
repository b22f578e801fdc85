//! An external merge sort of byte records by a byte key, in bounded memory.
//!
//! Records are buffered up to a byte budget, then sorted and written to an anonymous
//! temporary file (a "run"; unlinked at creation, so a crash leaves nothing behind).
//! Reading merges the runs. The sort is stable: records with equal keys come back in the
//! order they were pushed. Records hold patient data (keys name the patient), so a run
//! holds none in plaintext: each record is one frame sealed under a key of that run's
//! own that never leaves memory (`ward_protect::ephemeral`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use ward_protect::ephemeral::{EphemeralKey, FRAME_OVERHEAD};

/// Bytes of bookkeeping per buffered record, counted against the budget.
const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// Read buffer per run while merging.
const RUN_READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    start: usize,
    key_len: u32,
    payload_len: u32,
}

/// Collects records, spilling sorted runs to disk when the buffer is full.
#[derive(Debug)]
pub(crate) struct SpillSorter {
    dir: PathBuf,
    budget: usize,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    runs: Vec<(File, EphemeralKey)>,
}

impl SpillSorter {
    /// A sorter that holds at most about `budget` bytes before spilling into `dir`
    /// (created when the first run is written).
    pub(crate) fn new(dir: PathBuf, budget: usize) -> Self {
        Self {
            dir,
            budget: budget.max(1),
            arena: Vec::new(),
            entries: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds one record.
    pub(crate) fn push(&mut self, key: &[u8], payload: &[u8]) -> io::Result<()> {
        let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB");
        let key_len = u32::try_from(key.len()).map_err(|_| too_long())?;
        let payload_len = u32::try_from(payload.len()).map_err(|_| too_long())?;
        let needed = key.len() + payload.len() + (self.entries.len() + 1) * ENTRY_BYTES;
        if !self.entries.is_empty() && self.arena.len() + needed > self.budget {
            self.spill()?;
        }
        if self.arena.capacity() == 0 {
            // One allocation of the whole budget: growing by doubling would hold up to
            // twice the budget, and copy it on the way.
            self.arena.reserve_exact(self.budget);
        }
        self.entries.push(Entry {
            start: self.arena.len(),
            key_len,
            payload_len,
        });
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(payload);
        Ok(())
    }

    /// Runs written to disk so far.
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    fn sort_entries(&mut self) {
        let arena = &self.arena;
        self.entries
            .sort_by(|a, b| key_of(arena, a).cmp(key_of(arena, b)));
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.sort_entries();
        std::fs::create_dir_all(&self.dir)?;
        let file = tempfile::tempfile_in(&self.dir)?;
        let mut writer = BufWriter::with_capacity(256 * 1024, file);
        let key = EphemeralKey::new();
        let mut frame = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let end = entry.start + entry.key_len as usize + entry.payload_len as usize;
            frame.clear();
            frame.extend_from_slice(&entry.key_len.to_le_bytes());
            frame.extend_from_slice(&entry.payload_len.to_le_bytes());
            frame.extend_from_slice(&self.arena[entry.start..end]);
            key.seal(index as u64, &mut frame)
                .map_err(io::Error::other)?;
            let len = u32::try_from(frame.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
            writer.write_all(&len.to_le_bytes())?;
            writer.write_all(&frame)?;
        }
        let mut file = writer.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push((file, key));
        self.arena.clear();
        self.entries.clear();
        Ok(())
    }

    /// All records in key order (equal keys in the order pushed).
    pub(crate) fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() {
            self.sort_entries();
            return Ok(Sorted::Memory {
                arena: self.arena,
                entries: self.entries.into_iter(),
            });
        }
        self.spill()?;
        let mut runs = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        for (index, (file, key)) in self.runs.into_iter().enumerate() {
            let mut run = Run {
                reader: BufReader::with_capacity(RUN_READ_BUFFER, file),
                key,
                read: 0,
                frame: Vec::new(),
                payload: Vec::new(),
            };
            let mut key = Vec::new();
            if run.read_next(&mut key)? {
                heap.push(Reverse((key, index)));
            }
            runs.push(run);
        }
        Ok(Sorted::Runs { runs, heap })
    }
}

fn key_of<'a>(arena: &'a [u8], entry: &Entry) -> &'a [u8] {
    &arena[entry.start..entry.start + entry.key_len as usize]
}

pub(crate) struct Run {
    reader: BufReader<File>,
    /// The run's key, and how many frames were read with it.
    key: EphemeralKey,
    read: u64,
    frame: Vec<u8>,
    /// The payload of the record whose key is in the heap.
    payload: Vec<u8>,
}

impl Run {
    /// Reads the next record's key into `key` and its payload into `self.payload`;
    /// `false` at the end of the run.
    fn read_next(&mut self, key: &mut Vec<u8>) -> io::Result<bool> {
        let mut len = [0u8; 4];
        match self.reader.read(&mut len[..1])? {
            0 => return Ok(false),
            _ => self.reader.read_exact(&mut len[1..])?,
        }
        let len = u32::from_le_bytes(len) as usize;
        if len < 8 + FRAME_OVERHEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a sort run's frame is too short",
            ));
        }
        self.frame.resize(len, 0);
        self.reader.read_exact(&mut self.frame)?;
        let plain = self
            .key
            .open(self.read, &mut self.frame)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        self.read += 1;
        let frame = &self.frame[..plain];
        let key_len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let payload_len = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
        if 8 + key_len + payload_len != plain {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a sort run's frame is malformed",
            ));
        }
        key.clear();
        key.extend_from_slice(&frame[8..8 + key_len]);
        self.payload.clear();
        self.payload.extend_from_slice(&frame[8 + key_len..plain]);
        Ok(true)
    }
}

/// The records of a [`SpillSorter`], in key order.
pub(crate) enum Sorted {
    /// Everything fit in the buffer.
    Memory {
        arena: Vec<u8>,
        entries: std::vec::IntoIter<Entry>,
    },
    /// A merge of sorted runs; ties go to the earlier run, which was pushed first.
    Runs {
        runs: Vec<Run>,
        heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    },
}

impl Sorted {
    /// Moves the next record into `key` and `payload`; `false` when there are no more.
    pub(crate) fn next_into(
        &mut self,
        key: &mut Vec<u8>,
        payload: &mut Vec<u8>,
    ) -> io::Result<bool> {
        match self {
            Self::Memory { arena, entries } => {
                let Some(entry) = entries.next() else {
                    return Ok(false);
                };
                let key_end = entry.start + entry.key_len as usize;
                key.clear();
                key.extend_from_slice(&arena[entry.start..key_end]);
                payload.clear();
                payload.extend_from_slice(&arena[key_end..key_end + entry.payload_len as usize]);
                Ok(true)
            }
            Self::Runs { runs, heap } => {
                let Some(Reverse((smallest, index))) = heap.pop() else {
                    return Ok(false);
                };
                *key = smallest;
                let run = &mut runs[index];
                std::mem::swap(payload, &mut run.payload);
                let mut next_key = Vec::with_capacity(key.len());
                if run.read_next(&mut next_key)? {
                    heap.push(Reverse((next_key, index)));
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(sorted: &mut Sorted) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let (mut key, mut payload) = (Vec::new(), Vec::new());
        while sorted.next_into(&mut key, &mut payload).expect("read") {
            out.push((key.clone(), payload.clone()));
        }
        out
    }

    /// Pseudo-random records, with many equal keys; the payload is the push order.
    fn records(n: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut state = 0x9e37_79b9_u32;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let key = format!("k{}", state % 97).into_bytes();
                (key, i.to_be_bytes().to_vec())
            })
            .collect()
    }

    fn expected(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut sorted = records.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal keys keep push order
        sorted
    }

    #[test]
    fn records_that_fit_in_memory_come_back_sorted_and_stable_without_a_file() {
        let dir = tempfile::tempdir().expect("dir");
        let spill_dir = dir.path().join("spill");
        let input = records(1_000);
        let mut sorter = SpillSorter::new(spill_dir.clone(), 1 << 20);
        for (key, payload) in &input {
            sorter.push(key, payload).expect("push");
        }
        assert_eq!(sorter.runs(), 0);
        assert_eq!(
            drain(&mut sorter.finish().expect("finish")),
            expected(&input)
        );
        assert!(!spill_dir.exists(), "nothing was spilled");
    }

    #[test]
    fn many_spilled_runs_merge_into_one_sorted_stable_sequence() {
        let dir = tempfile::tempdir().expect("dir");
        let input = records(5_000);
        let mut sorter = SpillSorter::new(dir.path().to_owned(), 4 * 1024);
        for (key, payload) in &input {
            sorter.push(key, payload).expect("push");
        }
        assert!(sorter.runs() > 20, "{} runs", sorter.runs());
        assert_eq!(
            drain(&mut sorter.finish().expect("finish")),
            expected(&input)
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            0,
            "runs are anonymous files: nothing is left in the folder"
        );
    }

    #[test]
    fn a_spilled_run_holds_no_record_in_plaintext() {
        let dir = tempfile::tempdir().expect("dir");
        let mut sorter = SpillSorter::new(dir.path().to_owned(), 256);
        for n in 0..50u32 {
            let key = format!("PROV#P#PAT#MRN{n:04}");
            sorter
                .push(key.as_bytes(), b"Ada Lovelace, a private note")
                .unwrap();
        }
        assert!(sorter.runs() > 1);
        for (file, _) in &sorter.runs {
            let mut bytes = Vec::new();
            let mut file = file.try_clone().unwrap();
            file.seek(SeekFrom::Start(0)).unwrap();
            file.read_to_end(&mut bytes).unwrap();
            // The clone shares the run's offset: put it back for the merge.
            file.seek(SeekFrom::Start(0)).unwrap();
            assert!(!bytes.is_empty());
            for secret in [&b"Lovelace"[..], b"MRN00"] {
                assert!(!bytes.windows(secret.len()).any(|window| window == secret));
            }
        }
        let mut sorted = sorter.finish().unwrap();
        assert_eq!(drain(&mut sorted).len(), 50);
    }

    #[test]
    fn an_empty_sorter_yields_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let sorter = SpillSorter::new(dir.path().to_owned(), 16);
        assert!(drain(&mut sorter.finish().expect("finish")).is_empty());
    }

    #[test]
    fn empty_keys_and_payloads_survive_a_spill() {
        let dir = tempfile::tempdir().expect("dir");
        let mut sorter = SpillSorter::new(dir.path().to_owned(), 1);
        sorter.push(b"b", b"").expect("push");
        sorter.push(b"", b"x").expect("push");
        sorter.push(b"a", b"yy").expect("push");
        assert_eq!(sorter.runs(), 2, "each push spilled the record before it");
        assert_eq!(
            drain(&mut sorter.finish().expect("finish")),
            vec![
                (b"".to_vec(), b"x".to_vec()),
                (b"a".to_vec(), b"yy".to_vec()),
                (b"b".to_vec(), b"".to_vec()),
            ]
        );
    }
}

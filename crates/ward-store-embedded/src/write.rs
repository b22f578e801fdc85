//! The write side inside one redb write transaction: the item table and the index tables
//! together, replacing and removing items with their index entries, and the batch insert
//! of `put_many_if_absent` through redb's cursors.

use std::cmp::Ordering;
use std::ops::Bound;

use ward_store::{
    INDEXES, Item, Key, PutOutcome, StoreError, Value, index_key_attributes, item_is_expired,
};

use crate::codec::{AttributeDictionary, decode_item, join_parts};
use crate::{INDEX_TABLES, ITEMS, store_error};

/// The item table and the index tables of one write transaction.
pub(crate) struct WriteTables<'txn> {
    pub(crate) items: redb::Table<'txn, &'static [u8], &'static [u8]>,
    pub(crate) indexes: Vec<(&'static str, redb::Table<'txn, &'static [u8], ()>)>,
    pub(crate) dictionary: &'txn AttributeDictionary,
}

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(
        txn: &'txn redb::WriteTransaction,
        dictionary: &'txn AttributeDictionary,
    ) -> Result<Self, StoreError> {
        let items = txn.open_table(ITEMS).map_err(store_error)?;
        let mut indexes = Vec::with_capacity(INDEXES.len());
        for (name, definition) in INDEXES.iter().zip(INDEX_TABLES) {
            indexes.push((*name, txn.open_table(definition).map_err(store_error)?));
        }
        Ok(Self {
            items,
            indexes,
            dictionary,
        })
    }

    /// Writes `item` at `key`, replacing any older item and its index entries.
    pub(crate) fn replace(
        &mut self,
        key: &Key,
        key_bytes: &[u8],
        encoded: &[u8],
        item: &Item,
    ) -> Result<(), StoreError> {
        let old = self
            .items
            .insert(key_bytes, encoded)
            .map_err(store_error)?
            .map(|guard| decode_item(guard.value(), &key.pk, &key.sk, self.dictionary))
            .transpose()?;
        for (name, index) in &mut self.indexes {
            if let Some(old) = &old
                && let Some(entry) = index_entry(name, old, key)
            {
                index.remove(entry.as_slice()).map_err(store_error)?;
            }
            if let Some(entry) = index_entry(name, item, key) {
                index.insert(entry.as_slice(), ()).map_err(store_error)?;
            }
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, key: &Key, key_bytes: &[u8]) -> Result<(), StoreError> {
        let old = self
            .items
            .remove(key_bytes)
            .map_err(store_error)?
            .map(|guard| decode_item(guard.value(), &key.pk, &key.sk, self.dictionary))
            .transpose()?;
        if let Some(old) = old {
            for (name, index) in &mut self.indexes {
                if let Some(entry) = index_entry(name, &old, key) {
                    index.remove(entry.as_slice()).map_err(store_error)?;
                }
            }
        }
        Ok(())
    }

    /// [`Table::put_many_if_absent`] for `prepared` taken in `order` (ascending keys, equal
    /// keys in the order given). Inserts go through one cursor per table, which redb
    /// buffers into runs and packs into full leaves: a run of new keys written one `insert`
    /// at a time would leave every leaf half full (each split divides a leaf in the middle,
    /// and nothing is ever inserted left of the split again).
    pub(crate) fn put_sorted_if_absent(
        &mut self,
        prepared: &[PreparedPut],
        order: &[usize],
        now: i64,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let mut outcomes = vec![PutOutcome::Written; prepared.len()];
        let mut written = Vec::with_capacity(prepared.len());
        let mut expired = Vec::new();
        let first = &prepared[order[0]].key_bytes;
        let mut cursor = self
            .items
            .lower_bound_mut(Bound::Included(first.as_slice()))
            .map_err(store_error)?;
        let mut next_stored = NextStored::default();
        let mut previous: Option<usize> = None;
        for &position in order {
            let put = &prepared[position];
            if let Some(earlier) = previous
                && prepared[earlier].key_bytes == put.key_bytes
            {
                // The same key earlier in this call: what it left is what exists now.
                outcomes[position] = match &outcomes[earlier] {
                    PutOutcome::Written => {
                        let written = &prepared[earlier];
                        let item = decode_item(
                            &written.encoded,
                            &written.key.pk,
                            &written.key.sk,
                            self.dictionary,
                        )?;
                        PutOutcome::Exists(item)
                    }
                    exists => exists.clone(),
                };
                continue;
            }
            previous = Some(position);
            let key = put.key_bytes.as_slice();
            if next_stored.compare(&mut cursor, key)? == Ordering::Greater {
                cursor.close().map_err(store_error)?;
                cursor = self
                    .items
                    .lower_bound_mut(Bound::Included(key))
                    .map_err(store_error)?;
                next_stored = NextStored::default();
            }
            if next_stored.compare(&mut cursor, key)? == Ordering::Equal {
                let existing = match cursor.peek_next().map_err(store_error)? {
                    Some((_, value)) => {
                        decode_item(value.value(), &put.key.pk, &put.key.sk, self.dictionary)?
                    }
                    None => return Err(StoreError::Internal("cursor lost its entry".into())),
                };
                if !item_is_expired(&existing, now) {
                    outcomes[position] = PutOutcome::Exists(existing);
                    continue;
                }
                cursor.remove_next().map_err(store_error)?;
                next_stored = NextStored::default();
                expired.push((existing, &put.key));
            }
            cursor
                .insert_before(put.key_bytes.as_slice(), put.encoded.as_slice())
                .map_err(store_error)?;
            written.push(put);
        }
        cursor.close().map_err(store_error)?;
        for (position, (name, index)) in self.indexes.iter_mut().enumerate() {
            for (old, key) in &expired {
                if let Some(entry) = index_entry(name, old, key) {
                    index.remove(entry.as_slice()).map_err(store_error)?;
                }
            }
            let mut entries: Vec<&[u8]> = written
                .iter()
                .filter_map(|put| put.index_entries[position].as_deref())
                .collect();
            entries.sort_unstable();
            entries.dedup();
            let Some(first) = entries.first() else {
                continue;
            };
            let mut cursor = index
                .lower_bound_mut(Bound::Included(*first))
                .map_err(store_error)?;
            let mut next_stored = NextStored::default();
            for &entry in &entries {
                if next_stored.compare(&mut cursor, entry)? == Ordering::Greater {
                    cursor.close().map_err(store_error)?;
                    cursor = index
                        .lower_bound_mut(Bound::Included(entry))
                        .map_err(store_error)?;
                    next_stored = NextStored::default();
                }
                if next_stored.compare(&mut cursor, entry)? == Ordering::Less {
                    cursor.insert_before(entry, ()).map_err(store_error)?;
                }
            }
            cursor.close().map_err(store_error)?;
        }
        Ok(outcomes)
    }
}

/// One item of a [`Table::put_many_if_absent`] call, checked and encoded.
pub(crate) struct PreparedPut {
    pub(crate) key: Key,
    pub(crate) key_bytes: Vec<u8>,
    pub(crate) encoded: Vec<u8>,
    /// The item's entry in each index of [`INDEXES`], if it is in it.
    pub(crate) index_entries: [Option<Vec<u8>>; INDEXES.len()],
}

/// The key of the first stored entry after a cursor's gap, read once per gap: inserting
/// into the gap does not change it, and redb answers a peek inside an open run of inserts
/// with a search from the root. Keys are visited in ascending order.
#[derive(Default)]
pub(crate) struct NextStored(Option<Option<Vec<u8>>>);

impl NextStored {
    /// `key` against that entry: `Less` (absent, and its place is the gap; also when no
    /// entry follows), `Equal` (stored) or `Greater` (stored entries lie between: the
    /// cursor must seek `key`, and this be reset).
    pub(crate) fn compare<V: redb::Value + 'static>(
        &mut self,
        cursor: &mut redb::CursorMut<'_, &'static [u8], V>,
        key: &[u8],
    ) -> Result<Ordering, StoreError> {
        if self.0.is_none() {
            let next = cursor.peek_next().map_err(store_error)?;
            self.0 = Some(next.map(|(next_key, _)| next_key.value().to_vec()));
        }
        Ok(match &self.0 {
            Some(Some(next_key)) => key.cmp(next_key.as_slice()),
            _ => Ordering::Less,
        })
    }
}

pub(crate) fn index_entry(index: &str, item: &Item, key: &Key) -> Option<Vec<u8>> {
    let (pk_attribute, sk_attribute) = index_key_attributes(index)?;
    match (item.get(pk_attribute), item.get(sk_attribute)) {
        (Some(Value::S(index_pk)), Some(Value::S(index_sk))) => {
            Some(join_parts(&[index_pk, index_sk, &key.pk, &key.sk]))
        }
        _ => None,
    }
}

//! Byte encodings: ordered keys and a compact item format.
//!
//! Keys: `pk 0x00 sk` for items, `index_pk 0x00 index_sk 0x00 pk 0x00 sk` for index
//! entries. Key attributes may not hold NUL, so byte order of the encoding is (pk, sk)
//! order and a partition is one contiguous range `[pk 0x00, pk 0x01)`.
//! Items: a format byte, a count, then (name, tagged value) pairs with varint lengths. `PK`
//! and `SK` are not stored (the key holds them); frequent attribute names are stored as one
//! byte (`NAMES`; the list may only ever be appended to, or stored items change meaning).

use ward_store::{Item, Name, PK, SK, StoreError, Value};

const FORMAT_V1: u8 = 1;
/// Marks a name stored in full (length, then bytes).
const NAME_IN_FULL: u8 = 0;
/// Attribute names coded as one byte, `0x80 | position` (a name byte < 0x80 starts a
/// length), supplied by whoever opens the store: the adapter knows no schema. The list is
/// recorded in the file when it is created and may only ever be appended to, or stored
/// items would change meaning (`EmbeddedTable::open` refuses another list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeDictionary {
    names: Vec<&'static str>,
    /// `(name, code)` by name length: a lookup compares only names of the right length.
    by_len: Vec<Vec<(&'static str, u8)>>,
}

impl AttributeDictionary {
    /// The most names a dictionary codes.
    pub const MAX_NAMES: usize = 128;

    /// A dictionary of these names, in this order; `None` if there are more than
    /// [`Self::MAX_NAMES`], or one repeats, is empty, or names a key attribute.
    pub fn new(names: &[&'static str]) -> Option<Self> {
        if names.len() > Self::MAX_NAMES {
            return None;
        }
        let mut by_len: Vec<Vec<(&'static str, u8)>> = Vec::new();
        for (code, name) in names.iter().enumerate() {
            if name.is_empty() || *name == PK || *name == SK || names[..code].contains(name) {
                return None;
            }
            if by_len.len() <= name.len() {
                by_len.resize_with(name.len() + 1, Vec::new);
            }
            by_len[name.len()].push((name, code as u8));
        }
        Some(Self {
            names: names.to_vec(),
            by_len,
        })
    }

    /// The names, in code order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The code of a name (its position in the list). Every attribute of every stored item
    /// goes through here, so it compares only names of the same length.
    fn code(&self, name: &str) -> Option<u8> {
        self.by_len
            .get(name.len())?
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, code)| *code)
    }

    fn name(&self, code: u8) -> Option<&'static str> {
        self.names.get(usize::from(code)).copied()
    }
}

const TAG_S: u8 = 1;
const TAG_N: u8 = 2;
const TAG_B: u8 = 3;
const TAG_TRUE: u8 = 4;
const TAG_FALSE: u8 = 5;
const TAG_NULL: u8 = 6;
const TAG_L: u8 = 7;
const TAG_M: u8 = 8;
const MAX_DEPTH: usize = 32;

/// Refuses key parts that would break the ordered encoding.
pub fn check_key_part(part: &str) -> Result<(), StoreError> {
    if part.as_bytes().contains(&0) {
        return Err(StoreError::InvalidRequest(
            "key attributes may not contain NUL".into(),
        ));
    }
    if part.len() > 2048 {
        return Err(StoreError::InvalidRequest(
            "key attributes are at most 2048 bytes".into(),
        ));
    }
    Ok(())
}

/// `p0 0x00 p1 0x00 ...` (no trailing separator).
pub fn join_parts(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// Splits an encoded key back into its parts.
pub fn split_parts(bytes: &[u8]) -> Result<Vec<&str>, StoreError> {
    bytes
        .split(|b| *b == 0)
        .map(|part| std::str::from_utf8(part).map_err(|_| corrupt("key is not UTF-8")))
        .collect()
}

/// Encodes an item (without its key attributes).
pub fn encode_item(item: &Item, dictionary: &AttributeDictionary) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(FORMAT_V1);
    let attributes = item.iter().filter(|(name, _)| *name != PK && *name != SK);
    put_len(&mut out, attributes.clone().count());
    for (name, value) in attributes {
        match dictionary.code(name) {
            Some(code) => out.push(0x80 | code),
            None => {
                out.push(NAME_IN_FULL);
                put_bytes(&mut out, name.as_bytes());
            }
        }
        encode_value(&mut out, value);
    }
    out
}

/// Decodes an item written by [`encode_item`], putting its key back.
pub fn decode_item(
    bytes: &[u8],
    pk: &str,
    sk: &str,
    dictionary: &AttributeDictionary,
) -> Result<Item, StoreError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(1)?[0] != FORMAT_V1 {
        return Err(corrupt("unknown item format"));
    }
    let n_attributes = reader.len()?;
    let mut item = Item::new();
    for _ in 0..n_attributes {
        let name = match reader.bytes.get(reader.at) {
            Some(&byte) if byte & 0x80 != 0 => {
                reader.at += 1;
                let known = dictionary.name(byte & 0x7f);
                Name::Borrowed(known.ok_or_else(|| corrupt("unknown attribute code"))?)
            }
            Some(&NAME_IN_FULL) => {
                reader.at += 1;
                Name::Owned(reader.string()?)
            }
            _ => return Err(corrupt("bad attribute name")),
        };
        let value = reader.value(0)?;
        item.insert(name, value);
    }
    if reader.at != bytes.len() {
        return Err(corrupt("trailing bytes after item"));
    }
    item.insert(PK.into(), Value::s(pk));
    item.insert(SK.into(), Value::s(sk));
    Ok(item)
}

fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::S(text) => {
            out.push(TAG_S);
            put_bytes(out, text.as_bytes());
        }
        Value::N(text) => {
            out.push(TAG_N);
            put_bytes(out, text.as_bytes());
        }
        Value::B(bytes) => {
            out.push(TAG_B);
            put_bytes(out, bytes);
        }
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Null => out.push(TAG_NULL),
        Value::L(values) => {
            out.push(TAG_L);
            put_len(out, values.len());
            for value in values {
                encode_value(out, value);
            }
        }
        Value::M(map) => {
            out.push(TAG_M);
            put_len(out, map.len());
            for (name, value) in map {
                put_bytes(out, name.as_bytes());
                encode_value(out, value);
            }
        }
    }
}

/// LEB128: 7 bits a byte, high bit set on all but the last.
fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("stored item is unreadable: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| corrupt("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn len(&mut self) -> Result<usize, StoreError> {
        let mut len: usize = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(len);
            }
        }
        Err(corrupt("length too long"))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let len = self.len()?;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| corrupt("text is not UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, StoreError> {
        if depth > MAX_DEPTH {
            return Err(corrupt("nested too deeply"));
        }
        let tag = self.take(1)?[0];
        Ok(match tag {
            TAG_S => Value::S(self.string()?),
            TAG_N => Value::N(self.string()?),
            TAG_B => {
                let len = self.len()?;
                Value::B(self.take(len)?.to_vec())
            }
            TAG_TRUE => Value::Bool(true),
            TAG_FALSE => Value::Bool(false),
            TAG_NULL => Value::Null,
            TAG_L => {
                let n_values = self.len()?;
                let mut values = Vec::with_capacity(n_values.min(1024));
                for _ in 0..n_values {
                    values.push(self.value(depth + 1)?);
                }
                Value::L(values)
            }
            TAG_M => {
                let n_entries = self.len()?;
                let mut map = std::collections::BTreeMap::new();
                for _ in 0..n_entries {
                    let name = self.string()?;
                    map.insert(name, self.value(depth + 1)?);
                }
                Value::M(map)
            }
            _ => return Err(corrupt("unknown value tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dictionary() -> AttributeDictionary {
        AttributeDictionary::new(&["GSI1PK", "GSI1SK", "entity", "version"]).unwrap()
    }

    #[test]
    fn truncated_or_garbage_bytes_are_errors_not_panics() {
        let dictionary = dictionary();
        let mut item = Item::new();
        item.insert("PK".into(), Value::s("a"));
        item.insert("L".into(), Value::L(vec![Value::n(1), Value::Null]));
        item.insert("SK".into(), Value::s("b"));
        item.insert("x".repeat(300).into(), Value::s("long name"));
        item.insert("version".into(), Value::n(3));
        let bytes = encode_item(&item, &dictionary);
        assert_eq!(decode_item(&bytes, "a", "b", &dictionary).unwrap(), item);
        for cut in 0..bytes.len() {
            assert!(decode_item(&bytes[..cut], "a", "b", &dictionary).is_err());
        }
        assert!(decode_item(&[1, 255, 255, 255, 255, 255, 9], "a", "b", &dictionary).is_err());
        assert!(
            decode_item(&[2, 0], "a", "b", &dictionary).is_err(),
            "unknown format"
        );
    }

    #[test]
    fn name_codes_are_the_positions_in_the_list() {
        let dictionary = dictionary();
        for (position, name) in dictionary.names().iter().enumerate() {
            assert_eq!(dictionary.code(name), Some(position as u8), "{name}");
            assert_eq!(dictionary.name(position as u8), Some(*name));
        }
        assert_eq!(dictionary.code("GSI1P"), None);
        assert_eq!(dictionary.code("notAName"), None);
        assert_eq!(dictionary.name(4), None);
        let mut item = Item::new();
        item.insert("entity".into(), Value::s("VISIT"));
        let coded = encode_item(&item, &dictionary);
        let in_full = encode_item(&item, &AttributeDictionary::default());
        assert_eq!(
            coded.len() + 1 + "entity".len(),
            in_full.len(),
            "a coded name is one byte; a name in full, a marker, its length and its bytes"
        );
        assert!(
            AttributeDictionary::new(&["a", "a"]).is_none()
                && AttributeDictionary::new(&["PK"]).is_none()
                && AttributeDictionary::new(&[""]).is_none()
        );
    }

    #[test]
    fn partition_prefixes_do_not_interleave() {
        let a = join_parts(&["P#1", "Z"]);
        let b = join_parts(&["P#10", "A"]);
        assert!(a < b);
    }
}

//! The sealed form of one attribute value.
//!
//! `B` bytes: `0x57 0x02 FLAGS KEY-ID(8, big-endian) NONCE(12) CIPHERTEXT TAG(16)`.
//! The plaintext is the value in a small self-describing encoding ([`encode`]), LZ4
//! compressed first when it is longer than [`COMPRESS_OVER`] (flag bit 0). The associated
//! data is `ward/field/v2`, then the partition key, sort key and attribute name (each
//! length-prefixed), the flags and the data key's id: a sealed value copied to
//! another item or attribute, or with a flipped byte anywhere, does not open.

use std::collections::BTreeMap;

use rand::RngCore as _;
use ring::aead::{Aad, LessSafeKey, Nonce};
use ward_store::Value;

use crate::ProtectError;

const MAGIC: u8 = 0x57;
const FORMAT: u8 = 0x02;
/// The second byte of fields prepared for sealing and not yet sealed (never stored).
const PREPARED: u8 = 0xf2;
const COMPRESSED: u8 = 0x01;
const HEADER_LEN: usize = 3 + 8 + 12;
const TAG_LEN: usize = 16;
/// Plaintexts longer than this are compressed before they are sealed.
pub const COMPRESS_OVER: usize = 1024;
/// The largest plaintext a sealed value may decompress to (a bound against hostile input).
pub const MAX_PLAINTEXT: usize = 4 * 1024 * 1024;

/// Whether `value` has the sealed form (it may still fail to open).
pub fn is_sealed(value: &Value) -> bool {
    matches!(value, Value::B(bytes) if bytes.len() >= HEADER_LEN + TAG_LEN && bytes[0] == MAGIC && bytes[1] == FORMAT)
}

/// The associated data of one item's sealed values: the prefix (format, partition key, sort
/// key) is built once per item, and each attribute's tail (name, flags, key id) is
/// written after it in the same buffer.
pub struct ItemAad {
    buffer: Vec<u8>,
    prefix: usize,
}

impl ItemAad {
    /// The associated data of the item keyed `pk`/`sk`.
    pub fn new(pk: &str, sk: &str) -> Self {
        let mut aad = Self {
            buffer: Vec::with_capacity(64 + pk.len() + sk.len()),
            prefix: 0,
        };
        aad.reset(pk, sk);
        aad
    }

    /// The same buffer, for the item keyed `pk`/`sk` (one buffer for a batch of items).
    pub fn reset(&mut self, pk: &str, sk: &str) {
        self.buffer.clear();
        self.buffer.extend_from_slice(b"ward/field/v2");
        for part in [pk, sk] {
            self.buffer
                .extend_from_slice(&(part.len() as u32).to_be_bytes());
            self.buffer.extend_from_slice(part.as_bytes());
        }
        self.prefix = self.buffer.len();
    }

    fn of(&mut self, attribute: &str, flags: u8, key_id: u64) -> Aad<&[u8]> {
        self.buffer.truncate(self.prefix);
        self.buffer
            .extend_from_slice(&(attribute.len() as u32).to_be_bytes());
        self.buffer.extend_from_slice(attribute.as_bytes());
        self.buffer.push(flags);
        self.buffer.extend_from_slice(&key_id.to_be_bytes());
        Aad::from(&self.buffer[..])
    }
}

/// Seals `value` as attribute `attribute` of the item keyed `pk`/`sk`.
pub fn seal(
    key: &LessSafeKey,
    key_id: u64,
    pk: &str,
    sk: &str,
    attribute: &str,
    value: &Value,
) -> Result<Value, ProtectError> {
    seal_in(key, key_id, &mut ItemAad::new(pk, sk), attribute, value)
}

/// [`seal`], with the item's associated data built once for all its attributes.
pub fn seal_in(
    key: &LessSafeKey,
    key_id: u64,
    aad: &mut ItemAad,
    attribute: &str,
    value: &Value,
) -> Result<Value, ProtectError> {
    seal_encoded(
        key,
        key_id,
        aad,
        attribute,
        encoded_len_hint(value),
        |out| encode(value, out),
    )
}

/// Stable one-byte codes of the attribute names a sealed map holds: a field is named in
/// the sealed value by its code (one byte) rather than by its name (four bytes of length
/// and the name, for every field of every item: on a visit record, more bytes than its
/// values). A code is an index in the list; the list may only grow at its end (a code,
/// once written, names its attribute for good).
#[derive(Debug, Clone, Default)]
pub struct FieldCodes {
    names: Vec<&'static str>,
}

/// The code of a field without one: its name follows.
const NAMED: u8 = 0xff;

impl FieldCodes {
    /// Codes `0..` for `names`, in this order (at most 255).
    pub fn new(names: &[&'static str]) -> Self {
        assert!(names.len() < usize::from(NAMED), "at most 255 field codes");
        Self {
            names: names.to_vec(),
        }
    }

    fn code(&self, name: &str) -> Option<u8> {
        self.names
            .iter()
            .position(|known| known.len() == name.len() && *known == name)
            .map(|at| at as u8)
    }

    fn name(&self, code: u8) -> Option<&'static str> {
        self.names.get(usize::from(code)).copied()
    }
}

/// Seals `fields` together as one map value, attribute `attribute` of the item: what the
/// protected table stores for all the protected attributes of one item (one cipher call,
/// one header and tag). Each field is named by its code in `codes` (or by its name, when
/// it has none), each length is a varint. Opens, by [`open_fields_in`], as [`Value::M`].
pub fn seal_fields<'a>(
    key: &LessSafeKey,
    key_id: u64,
    aad: &mut ItemAad,
    attribute: &str,
    fields: impl ExactSizeIterator<Item = (&'a str, &'a Value)> + Clone,
    codes: &FieldCodes,
) -> Result<Value, ProtectError> {
    seal_prepared(key, key_id, aad, attribute, prepare_fields(fields, codes))
}

/// What [`seal_fields`] seals, before it is sealed: the header's room and the fields'
/// encoding (compressed where large). Needs no key, so it can be made ahead, on another
/// thread; [`seal_prepared`] seals it in place.
pub fn prepare_fields<'a>(
    fields: impl ExactSizeIterator<Item = (&'a str, &'a Value)> + Clone,
    codes: &FieldCodes,
) -> Prepared {
    let hint = fields
        .clone()
        .map(|(_, value)| 2 + encoded_len_hint(value))
        .sum::<usize>()
        + 2;
    prepare_encoded(hint, |out| {
        out.push(b'c');
        push_varint(out, fields.len() as u64);
        for (name, value) in fields {
            match codes.code(name) {
                Some(code) => out.push(code),
                None => {
                    out.push(NAMED);
                    push_varint(out, name.len() as u64);
                    out.extend_from_slice(name.as_bytes());
                }
            }
            encode_compact(value, out);
        }
    })
}

/// Fields encoded for sealing ([`prepare_fields`]): plaintext, never to be stored.
pub struct Prepared(Vec<u8>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared(..)")
    }
}

impl Prepared {
    /// The bytes, to carry in an item until sealed (see [`Prepared::from_bytes`]).
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The same, noting `count` in the room of the key id (which sealing fills).
    pub fn noting(mut self, count: u64) -> Self {
        self.0[3..11].copy_from_slice(&count.to_be_bytes());
        self
    }

    /// What [`Prepared::noting`] noted.
    pub fn noted(&self) -> u64 {
        u64::from_be_bytes(self.0[3..11].try_into().expect("eight bytes"))
    }

    /// What [`Prepared::into_bytes`] gave, if it is that.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= HEADER_LEN && bytes[0] == MAGIC && bytes[1] == PREPARED)
            .then_some(Self(bytes))
    }
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (at, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * at);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[at + 1..]));
        }
    }
    None
}

/// The compact encoding of a value (what [`seal_fields`] writes): [`encode`]'s, with
/// upper-case tags and varint lengths and counts.
fn encode_compact(value: &Value, out: &mut Vec<u8>) {
    let bytes = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        out.push(tag);
        push_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    };
    match value {
        Value::S(text) => bytes(out, b'S', text.as_bytes()),
        Value::N(text) => bytes(out, b'N', text.as_bytes()),
        Value::B(raw) => bytes(out, b'B', raw),
        Value::Bool(true) => out.push(b't'),
        Value::Bool(false) => out.push(b'f'),
        Value::Null => out.push(b'z'),
        Value::L(values) => {
            out.push(b'L');
            push_varint(out, values.len() as u64);
            for value in values {
                encode_compact(value, out);
            }
        }
        Value::M(map) => {
            out.push(b'M');
            push_varint(out, map.len() as u64);
            for (name, value) in map {
                push_varint(out, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
                encode_compact(value, out);
            }
        }
    }
}

fn seal_encoded(
    key: &LessSafeKey,
    key_id: u64,
    aad: &mut ItemAad,
    attribute: &str,
    hint: usize,
    encode_into: impl FnOnce(&mut Vec<u8>),
) -> Result<Value, ProtectError> {
    seal_prepared(
        key,
        key_id,
        aad,
        attribute,
        prepare_encoded(hint, encode_into),
    )
}

/// The header's room (marked as not yet sealed), then what `encode_into` writes,
/// compressed if it is large.
fn prepare_encoded(hint: usize, encode_into: impl FnOnce(&mut Vec<u8>)) -> Prepared {
    let mut out = Vec::with_capacity(HEADER_LEN + hint + TAG_LEN);
    out.extend_from_slice(&[MAGIC, PREPARED, 0]);
    out.extend_from_slice(&[0; 8 + 12]);
    encode_into(&mut out);
    if out.len() - HEADER_LEN > COMPRESS_OVER {
        let compressed = lz4_flex::compress_prepend_size(&out[HEADER_LEN..]);
        out.truncate(HEADER_LEN);
        out.extend_from_slice(&compressed);
        out[2] = COMPRESSED;
    }
    Prepared(out)
}

/// Seals `prepared` in place with data key `key_id`, as attribute `attribute` of the item
/// that `aad` names.
pub fn seal_prepared(
    key: &LessSafeKey,
    key_id: u64,
    aad: &mut ItemAad,
    attribute: &str,
    prepared: Prepared,
) -> Result<Value, ProtectError> {
    let Prepared(mut out) = prepared;
    let flags = out[2];
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    out[1] = FORMAT;
    out[3..11].copy_from_slice(&key_id.to_be_bytes());
    out[11..HEADER_LEN].copy_from_slice(&nonce);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            aad.of(attribute, flags, key_id),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| ProtectError::Crypto("sealing an attribute"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(Value::B(out))
}

/// Room for a value's encoding, for the common flat values (a nested one grows the buffer).
fn encoded_len_hint(value: &Value) -> usize {
    match value {
        Value::S(text) | Value::N(text) => 5 + text.len(),
        Value::B(raw) => 5 + raw.len(),
        _ => 64,
    }
}

/// The id of the data key a sealed value names.
pub fn key_id(sealed: &[u8]) -> Option<u64> {
    sealed
        .get(3..11)
        .map(|bytes| u64::from_be_bytes(bytes.try_into().expect("eight bytes")))
}

/// Opens what [`seal`] made, for the same item key and attribute.
pub fn open(
    key: &LessSafeKey,
    pk: &str,
    sk: &str,
    attribute: &str,
    sealed: &[u8],
) -> Result<Value, ProtectError> {
    open_in(key, &mut ItemAad::new(pk, sk), attribute, sealed)
}

/// [`open`], with the item's associated data built once for all its attributes.
pub fn open_in(
    key: &LessSafeKey,
    aad: &mut ItemAad,
    attribute: &str,
    sealed: &[u8],
) -> Result<Value, ProtectError> {
    open_with(key, aad, attribute, sealed, None)
}

/// Opens what [`seal_fields`] made (or a map [`seal`] made), with the codes it was sealed
/// with.
pub fn open_fields_in(
    key: &LessSafeKey,
    aad: &mut ItemAad,
    attribute: &str,
    sealed: &[u8],
    codes: &FieldCodes,
) -> Result<Value, ProtectError> {
    open_with(key, aad, attribute, sealed, Some(codes))
}

fn open_with(
    key: &LessSafeKey,
    aad: &mut ItemAad,
    attribute: &str,
    sealed: &[u8],
    codes: Option<&FieldCodes>,
) -> Result<Value, ProtectError> {
    let broken = |why: &str| ProtectError::Integrity(format!("attribute `{attribute}` {why}"));
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != MAGIC || sealed[1] != FORMAT {
        return Err(broken("is not sealed data"));
    }
    let flags = sealed[2];
    let key_id = key_id(sealed).expect("length checked");
    let nonce = Nonce::try_assume_unique_for_key(&sealed[11..HEADER_LEN])
        .map_err(|_| ProtectError::Crypto("nonce"))?;
    let mut body = sealed[HEADER_LEN..].to_vec();
    let plain = key
        .open_in_place(nonce, aad.of(attribute, flags, key_id), &mut body)
        .map_err(|_| {
            broken("failed its integrity check (changed, or moved from another item or attribute)")
        })?;
    let decompressed;
    let plain: &[u8] = if flags & COMPRESSED != 0 {
        let declared = plain
            .get(..4)
            .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("four bytes")) as usize)
            .ok_or_else(|| broken("has a truncated compressed body"))?;
        if declared > MAX_PLAINTEXT {
            return Err(broken("declares a body larger than any Ward writes"));
        }
        decompressed = lz4_flex::decompress_size_prepended(plain)
            .map_err(|_| broken("has a compressed body that does not decompress"))?;
        &decompressed
    } else {
        plain
    };
    let (value, rest) =
        decode_with(plain, 0, codes).ok_or_else(|| broken("holds an unreadable value"))?;
    if !rest.is_empty() {
        return Err(broken("holds bytes after its value"));
    }
    Ok(value)
}

/// The plaintext encoding: one tag byte, then the payload (strings, numbers and bytes
/// length-prefixed; lists and maps counted).
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    let bytes = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    match value {
        Value::S(text) => bytes(out, b's', text.as_bytes()),
        Value::N(text) => bytes(out, b'n', text.as_bytes()),
        Value::B(raw) => bytes(out, b'b', raw),
        Value::Bool(true) => out.push(b't'),
        Value::Bool(false) => out.push(b'f'),
        Value::Null => out.push(b'z'),
        Value::L(values) => {
            out.push(b'l');
            out.extend_from_slice(&(values.len() as u32).to_be_bytes());
            for value in values {
                encode(value, out);
            }
        }
        Value::M(map) => {
            out.push(b'm');
            out.extend_from_slice(&(map.len() as u32).to_be_bytes());
            for (name, value) in map {
                out.extend_from_slice(&(name.len() as u32).to_be_bytes());
                out.extend_from_slice(name.as_bytes());
                encode(value, out);
            }
        }
    }
}

/// Reads one value of [`encode`]; `None` if the bytes are not one (or nest too deep).
pub fn decode(bytes: &[u8], depth: usize) -> Option<(Value, &[u8])> {
    decode_with(bytes, depth, None)
}

/// Reads one value of [`encode`] or of the compact encoding (a coded map, `c`, only with
/// `codes`); `None` if the bytes are not one (or nest too deep).
pub fn decode_with<'a>(
    bytes: &'a [u8],
    depth: usize,
    codes: Option<&FieldCodes>,
) -> Option<(Value, &'a [u8])> {
    fn take_counted(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = take_varint(bytes)?;
        let len = usize::try_from(len).ok()?;
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    fn take(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let rest = bytes.get(4..)?;
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    if depth > 32 {
        return None;
    }
    let (&tag, rest) = bytes.split_first()?;
    let text = |raw: &[u8]| String::from_utf8(raw.to_vec()).ok();
    Some(match tag {
        b'S' => {
            let (raw, rest) = take_counted(rest)?;
            (Value::S(text(raw)?), rest)
        }
        b'N' => {
            let (raw, rest) = take_counted(rest)?;
            (Value::N(text(raw)?), rest)
        }
        b'B' => {
            let (raw, rest) = take_counted(rest)?;
            (Value::B(raw.to_vec()), rest)
        }
        b'L' => {
            let (count, mut rest) = take_varint(rest)?;
            let count = usize::try_from(count).ok()?;
            let mut values = Vec::with_capacity(count.min(rest.len()));
            for _ in 0..count {
                let (value, after) = decode_with(rest, depth + 1, codes)?;
                values.push(value);
                rest = after;
            }
            (Value::L(values), rest)
        }
        b'M' | b'c' => {
            let (count, mut rest) = take_varint(rest)?;
            let mut map = BTreeMap::new();
            for _ in 0..count {
                let (name, after) = if tag == b'c' {
                    let (&code, after) = rest.split_first()?;
                    if code == NAMED {
                        let (name, after) = take_counted(after)?;
                        (text(name)?, after)
                    } else {
                        (codes?.name(code)?.to_owned(), after)
                    }
                } else {
                    let (name, after) = take_counted(rest)?;
                    (text(name)?, after)
                };
                let (value, after) = decode_with(after, depth + 1, codes)?;
                map.insert(name, value);
                rest = after;
            }
            (Value::M(map), rest)
        }
        b's' => {
            let (raw, rest) = take(rest)?;
            (Value::S(text(raw)?), rest)
        }
        b'n' => {
            let (raw, rest) = take(rest)?;
            (Value::N(text(raw)?), rest)
        }
        b'b' => {
            let (raw, rest) = take(rest)?;
            (Value::B(raw.to_vec()), rest)
        }
        b't' => (Value::Bool(true), rest),
        b'f' => (Value::Bool(false), rest),
        b'z' => (Value::Null, rest),
        b'l' => {
            let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let mut rest = &rest[4..];
            let mut values = Vec::with_capacity(count.min(rest.len()));
            for _ in 0..count {
                let (value, after) = decode_with(rest, depth + 1, codes)?;
                values.push(value);
                rest = after;
            }
            (Value::L(values), rest)
        }
        b'm' => {
            let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let mut rest = &rest[4..];
            let mut map = BTreeMap::new();
            for _ in 0..count {
                let (name, after) = take(rest)?;
                let (value, after) = decode_with(after, depth + 1, codes)?;
                map.insert(text(name)?, value);
                rest = after;
            }
            (Value::M(map), rest)
        }
        _ => return None,
    })
}

//! A visit row: the five CSV fields, validated, and its content hash.
//!
//! Identity is (provider, MRN, UTC instant). The content hash covers what makes two rows
//! with the same identity "the same visit" (the instant, not the offset it was written
//! in), so a re-sent row is a duplicate and a changed one a conflict.

use sha2::{Digest, Sha256};

use crate::ids::Mrn;
use crate::time::{ProviderTimeZone, TimeError, UtcInstant, VisitTime};

/// The longest first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The default longest doctor's note, in characters.
pub const DEFAULT_MAX_NOTES_CHARS: usize = 10_000;

/// The CSV columns, by their canonical names.
pub mod columns {
    /// `medical_record_number`
    pub const MRN: &str = "medical_record_number";
    /// `date_time`
    pub const DATE_TIME: &str = "date_time";
    /// `first_name`
    pub const FIRST_NAME: &str = "first_name";
    /// `last_name`
    pub const LAST_NAME: &str = "last_name";
    /// `doctors_notes` (optional)
    pub const DOCTORS_NOTES: &str = "doctors_notes";
    /// Columns a file must have.
    pub const REQUIRED: [&str; 4] = [MRN, DATE_TIME, FIRST_NAME, LAST_NAME];
}

/// A field that failed validation: which column, and why in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column} {reason}")]
pub struct FieldError {
    /// The canonical column name.
    pub column: &'static str,
    /// Why, in words a clerk understands (e.g. "is empty").
    pub reason: String,
    /// Whether the same value could pass when checked later: a visit more than a day
    /// ahead of the time of processing is the one such rule.
    pub depends_on_now: bool,
}

impl FieldError {
    fn new(column: &'static str, reason: impl ToString) -> Self {
        Self {
            column,
            reason: reason.to_string(),
            depends_on_now: false,
        }
    }
}

/// The rules a row is checked against.
#[derive(Debug, Clone)]
pub struct VisitRules {
    /// Reads `date_time` values that have no offset; without it they are refused.
    pub zone: Option<ProviderTimeZone>,
    /// The longest doctor's note, in characters.
    pub max_notes_chars: usize,
    /// The time of processing: a visit may be at most one day after it.
    pub now: UtcInstant,
}

impl VisitRules {
    /// Default rules at the given instant.
    pub fn at(now: UtcInstant) -> Self {
        Self {
            zone: None,
            max_notes_chars: DEFAULT_MAX_NOTES_CHARS,
            now,
        }
    }
}

/// The raw cells of one row (before trimming).
#[derive(Debug, Clone, Copy)]
pub struct VisitFields<'a> {
    /// `medical_record_number`
    pub mrn: &'a str,
    /// `date_time`
    pub date_time: &'a str,
    /// `first_name`
    pub first_name: &'a str,
    /// `last_name`
    pub last_name: &'a str,
    /// `doctors_notes`, empty when the column is absent
    pub doctors_notes: &'a str,
}

/// A validated visit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitRow {
    /// The patient.
    pub mrn: Mrn,
    /// When the visit happened.
    pub time: VisitTime,
    /// First name, trimmed.
    pub first_name: String,
    /// Last name, trimmed.
    pub last_name: String,
    /// Doctor's notes, trimmed; may be empty.
    pub doctors_notes: String,
}

impl VisitRow {
    /// Validates one row; the first failing field (in column order) is reported.
    pub fn parse(fields: VisitFields<'_>, rules: &VisitRules) -> Result<Self, FieldError> {
        let mrn = Mrn::parse(fields.mrn.trim()).map_err(|e| FieldError::new(columns::MRN, e))?;
        let time =
            VisitTime::parse(fields.date_time, rules.zone.as_ref(), rules.now).map_err(|e| {
                FieldError {
                    depends_on_now: e == TimeError::InFuture,
                    ..FieldError::new(columns::DATE_TIME, e)
                }
            })?;
        let first_name = parse_name(fields.first_name, columns::FIRST_NAME)?;
        let last_name = parse_name(fields.last_name, columns::LAST_NAME)?;
        let doctors_notes = fields.doctors_notes.trim();
        let n_chars = doctors_notes.chars().count();
        if n_chars > rules.max_notes_chars {
            return Err(FieldError::new(
                columns::DOCTORS_NOTES,
                format!(
                    "is {n_chars} characters long; the limit is {}",
                    rules.max_notes_chars
                ),
            ));
        }
        if let Some(found) = first_forbidden_control(doctors_notes) {
            return Err(FieldError::new(
                columns::DOCTORS_NOTES,
                format!("contains a control character (U+{:04X})", found as u32),
            ));
        }
        Ok(Self {
            mrn,
            time,
            first_name,
            last_name,
            doctors_notes: doctors_notes.to_owned(),
        })
    }

    /// A hex SHA-256 prefix (128 bits) of the visit's content: MRN, instant, names, notes.
    /// The notes are stored exactly as sent, but hashed with each CRLF line break as LF,
    /// so a file re-exported on another operating system holds duplicates, not conflicts.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.mrn.as_str(),
            &self.time.instant().sortable(),
            &self.first_name,
            &self.last_name,
        ] {
            hasher.update(part.as_bytes());
            // No validated field can hold NUL, so it separates fields unambiguously.
            hasher.update([0u8]);
        }
        // A lone CR is refused by `parse`, so every CR here starts a CRLF.
        for piece in self.doctors_notes.split('\r') {
            hasher.update(piece.as_bytes());
        }
        hasher.update([0u8]);
        hex::encode(&hasher.finalize()[..16])
    }
}

fn parse_name(raw: &str, column: &'static str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(FieldError::new(column, "is empty"));
    }
    let n_chars = name.chars().count();
    if n_chars > MAX_NAME_CHARS {
        return Err(FieldError::new(
            column,
            format!("is {n_chars} characters long; the limit is {MAX_NAME_CHARS}"),
        ));
    }
    if let Some(found) = name.chars().find(|c| c.is_control()) {
        return Err(FieldError::new(
            column,
            format!("contains a control character (U+{:04X})", found as u32),
        ));
    }
    Ok(name.to_owned())
}

/// Tabs and line breaks (LF, or CR directly before LF) are allowed in notes.
fn first_forbidden_control(text: &str) -> Option<char> {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' | '\n' => {}
            '\r' if chars.peek() == Some(&'\n') => {}
            c if c.is_control() => return Some(c),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> VisitRules {
        VisitRules::at(UtcInstant::parse_rfc3339("2026-01-01T00:00:00Z").unwrap())
    }

    fn fields<'a>(mrn: &'a str, first: &'a str, notes: &'a str) -> VisitFields<'a> {
        VisitFields {
            mrn,
            date_time: "2025-03-26T10:30:00-07:00",
            first_name: first,
            last_name: "Doe",
            doctors_notes: notes,
        }
    }

    #[test]
    fn valid_row_is_trimmed_and_kept_as_sent() {
        let row =
            VisitRow::parse(fields(" MRN1 ", " John ", " fever,\r\n\tmild "), &rules()).unwrap();
        assert_eq!(row.mrn.as_str(), "MRN1");
        assert_eq!(row.first_name, "John");
        assert_eq!(row.doctors_notes, "fever,\r\n\tmild");
        assert_eq!(row.time.as_sent(), "2025-03-26T10:30:00-07:00");
    }

    #[test]
    fn each_field_names_its_column() {
        let err = VisitRow::parse(fields("MRN#1", "John", ""), &rules()).unwrap_err();
        assert_eq!(err.column, "medical_record_number");
        let err = VisitRow::parse(fields("MRN1", "  ", ""), &rules()).unwrap_err();
        assert_eq!(
            (err.column, err.reason.as_str()),
            ("first_name", "is empty")
        );
        let long = "x".repeat(101);
        let err = VisitRow::parse(fields("MRN1", &long, ""), &rules()).unwrap_err();
        assert_eq!(err.reason, "is 101 characters long; the limit is 100");
        let err = VisitRow::parse(fields("MRN1", "Jo\u{7}hn", ""), &rules()).unwrap_err();
        assert_eq!(err.reason, "contains a control character (U+0007)");
        let err = VisitRow::parse(fields("MRN1", "John", "a\rb"), &rules()).unwrap_err();
        assert_eq!(err.column, "doctors_notes");
        let notes = "n".repeat(10_001);
        let err = VisitRow::parse(fields("MRN1", "John", &notes), &rules()).unwrap_err();
        assert_eq!(err.reason, "is 10001 characters long; the limit is 10000");
    }

    #[test]
    fn content_hash_ignores_the_line_break_convention_only() {
        let crlf = VisitRow::parse(fields("MRN1", "John", "fever,\r\nmild\r\n"), &rules()).unwrap();
        let lf = VisitRow::parse(fields("MRN1", "John", "fever,\nmild\n"), &rules()).unwrap();
        let other = VisitRow::parse(fields("MRN1", "John", "fever,mild"), &rules()).unwrap();
        assert_eq!(
            crlf.doctors_notes, "fever,\r\nmild",
            "stored as sent (trimmed)"
        );
        assert_eq!(crlf.content_hash(), lf.content_hash());
        assert_ne!(crlf.content_hash(), other.content_hash());
        // The unchanged form for notes without CR (hashes stored before this rule hold).
        let mut hasher = Sha256::new();
        for part in [
            "MRN1",
            &lf.time.instant().sortable(),
            "John",
            "Doe",
            "fever,\nmild",
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        assert_eq!(lf.content_hash(), hex::encode(&hasher.finalize()[..16]));
    }

    #[test]
    fn content_hash_ignores_offset_but_not_content() {
        let a = VisitRow::parse(fields("MRN1", "John", "x"), &rules()).unwrap();
        let mut utc = fields("MRN1", "John", "x");
        utc.date_time = "2025-03-26T17:30:00Z";
        let b = VisitRow::parse(utc, &rules()).unwrap();
        let c = VisitRow::parse(fields("MRN1", "John", "y"), &rules()).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.content_hash().len(), 32);
    }
}

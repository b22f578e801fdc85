//! Identifiers: provider, medical record number, clinician, clinic, and the time-ordered
//! ids Ward chooses (uploads, runs, appointments, clinical records, documents, bills).
//!
//! Every identifier that becomes part of a table key excludes `#` (the key separator) and
//! `/` (the object path separator), so no value can forge another key or path.

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value was empty after trimming.
    #[error("is empty")]
    Empty,
    /// The value was longer than allowed.
    #[error("is longer than {max} characters")]
    TooLong {
        /// The longest allowed value, in characters.
        max: usize,
    },
    /// The value holds a character outside the allowed set.
    #[error("may only contain letters, digits, '.', '_' and '-' (found {found:?})")]
    BadCharacter {
        /// The first character that is not allowed.
        found: char,
    },
}

/// Checks the rule of a text identifier in a key (1-64 characters of
/// `A-Z a-z 0-9 . _ -`), the rule of [`Mrn`], [`ClinicianId`] and [`ClinicName`].
pub fn check_key_identifier(value: &str) -> Result<(), IdError> {
    check_id(value, 64, true)
}

fn check_id(value: &str, max: usize, allow_dot: bool) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(found) = value.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || (allow_dot && *c == '.'))
    }) {
        return Err(IdError::BadCharacter { found });
    }
    if value.len() > max {
        return Err(IdError::TooLong { max });
    }
    Ok(())
}

/// A tenant: a hospital or clinic group. 1-64 characters of `A-Z a-z 0-9 _ -`.
///
/// Comes from the caller's credentials or from an object key Ward wrote, never from a
/// request body or a file's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(String);

impl ProviderId {
    /// The longest provider id, in characters.
    pub const MAX_LEN: usize = 64;

    /// Parses a provider id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_id(value, Self::MAX_LEN, false)?;
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Display` and `AsRef<str>` of an identifier that wraps its text.
macro_rules! text_of {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A text identifier that becomes part of a key: 1-64 characters of `A-Z a-z 0-9 . _ -`.
macro_rules! key_identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest value, in characters.
            pub const MAX_LEN: usize = 64;

            #[doc = concat!("Parses ", $what, " (the caller trims).")]
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_id(value, Self::MAX_LEN, true)?;
                Ok(Self(value.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        text_of!($name);
    };
}

key_identifier!(
    /// A medical record number: the provider's own patient id, 1-64 characters of
    /// `A-Z a-z 0-9 . _ -`.
    Mrn,
    "an MRN"
);
key_identifier!(
    /// A clinician's id, chosen by the provider: 1-64 characters of `A-Z a-z 0-9 . _ -`.
    ClinicianId,
    "a clinician id"
);
key_identifier!(
    /// A built-in user's sign-in name, unique within its provider: 1-64 characters of
    /// `A-Z a-z 0-9 . _ -`.
    UserId,
    "a user id"
);
key_identifier!(
    /// A clinic's name as the provider writes it (the clinic lists are keyed by it): 1-64
    /// characters of `A-Z a-z 0-9 . _ -`.
    ClinicName,
    "a clinic name"
);

/// An id Ward chose: `{UTC yyyymmddThhmmssZ}-{16 lowercase hex}`, where the hex is the
/// microsecond within that second (5 digits) then 44 random bits, so ids sort by creation
/// time and no client can pick or predict one. Each kind of entity has its own type of
/// this form ([`UploadId`], [`RunId`], [`AppointmentId`], [`ClinicalRecordId`],
/// [`DocumentId`], [`BillId`]); code over any of them takes this trait.
pub trait TimeOrderedId: fmt::Display {
    /// The id as text.
    fn as_str(&self) -> &str;

    /// The whole-second UTC instant the id starts with.
    fn instant(&self) -> crate::UtcInstant {
        let b = self.as_str();
        let text = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &b[0..4],
            &b[4..6],
            &b[6..8],
            &b[9..11],
            &b[11..13],
            &b[13..15]
        );
        // The form was checked by `parse`/`new`; an impossible date (month 13) cannot be
        // built by `new` and reads as the epoch.
        crate::UtcInstant::parse_rfc3339(&text).unwrap_or(crate::UtcInstant::from_unix_nanos(0))
    }
}

fn new_time_ordered(created: crate::UtcInstant, random: u64) -> String {
    let micros = created.subsec_nanos() / 1000;
    let random = random & ((1 << 44) - 1);
    format!("{}-{micros:05x}{random:011x}", created.compact_seconds())
}

fn parse_time_ordered(value: &str) -> Result<String, IdError> {
    let bytes = value.as_bytes();
    let well_formed = bytes.len() == 33
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'Z'
        && bytes[16] == b'-'
        && bytes[17..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !well_formed {
        return Err(
            match value
                .chars()
                .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
            {
                Some(found) => IdError::BadCharacter { found },
                None if value.is_empty() => IdError::Empty,
                None => IdError::TooLong { max: 33 },
            },
        );
    }
    Ok(value.to_owned())
}

macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Builds a new id from the creation instant and random bits (the low 44 are
            /// used).
            pub fn new(created: crate::UtcInstant, random: u64) -> Self {
                Self(new_time_ordered(created, random))
            }

            /// Parses an id received from a caller.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                parse_time_ordered(value).map(Self)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The whole-second UTC instant the id starts with.
            pub fn instant(&self) -> crate::UtcInstant {
                TimeOrderedId::instant(self)
            }
        }

        impl TimeOrderedId for $name {
            fn as_str(&self) -> &str {
                &self.0
            }
        }

        text_of!($name);
    };
}

time_ordered_id!(
    /// An upload's id (see [`TimeOrderedId`]).
    UploadId
);
time_ordered_id!(
    /// An analytics run's id (see [`TimeOrderedId`]); a run a facility upload started has
    /// the upload's id ([`RunId::of_upload`]).
    RunId
);
time_ordered_id!(
    /// An appointment's id: its start instant, then random bits.
    AppointmentId
);
time_ordered_id!(
    /// A clinical record's id: its visit's instant, then random bits.
    ClinicalRecordId
);
time_ordered_id!(
    /// A document's id: its creation instant, then random bits.
    DocumentId
);
time_ordered_id!(
    /// A bill's id: its issue instant, then random bits.
    BillId
);

impl RunId {
    /// The run a facility upload starts: the upload's own id, so a retried upload queues
    /// the same run.
    pub fn of_upload(upload: &UploadId) -> Self {
        Self(upload.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrn_refuses_key_separator_and_accepts_dots() {
        assert_eq!(
            Mrn::parse("MRN#1"),
            Err(IdError::BadCharacter { found: '#' })
        );
        assert_eq!(Mrn::parse("a/b"), Err(IdError::BadCharacter { found: '/' }));
        assert_eq!(Mrn::parse(""), Err(IdError::Empty));
        assert_eq!(
            Mrn::parse(&"a".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
        assert_eq!(Mrn::parse("MRN-12.3_4").unwrap().as_str(), "MRN-12.3_4");
    }

    #[test]
    fn provider_id_refuses_dots() {
        assert!(ProviderId::parse("PROV.1").is_err());
        assert_eq!(ProviderId::parse("PROV001").unwrap().to_string(), "PROV001");
    }

    #[test]
    fn upload_id_round_trips_and_refuses_forgeries() {
        let instant = crate::UtcInstant::from_unix_nanos(1_700_000_000_000_001_000);
        let id = UploadId::new(instant, 0xdead_beef);
        assert_eq!(id.as_str(), "20231114T221320Z-00001000deadbeef");
        let later = crate::UtcInstant::from_unix_nanos(1_700_000_000_000_002_000);
        assert!(
            UploadId::new(later, 0).as_str() > UploadId::new(instant, u64::MAX).as_str(),
            "ids of one second sort by microsecond, whatever the random part"
        );
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        assert!(UploadId::parse("../../etc/passwd").is_err());
        assert!(UploadId::parse("20231114T221320Z-00000000DEADBEEF").is_err());
        assert_eq!(
            id.instant(),
            crate::UtcInstant::from_unix_nanos(1_700_000_000_000_000_000)
        );
    }
}

/// The name a provider gave its own file (`visits_march.csv`), kept for the audit trail.
/// 1-255 characters, no control characters and no path separators. Never used in a key
/// or an object path: Ward names stored objects itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceFileName(String);

impl SourceFileName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 255;

    /// Parses a client's file name: at most [`SourceFileName::MAX_CHARS`] as sent, kept
    /// trimmed.
    pub fn parse(value: &str) -> Result<Self, FileNameError> {
        if value.chars().count() > Self::MAX_CHARS {
            return Err(FileNameError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(FileNameError::Empty);
        }
        if let Some(found) = value
            .chars()
            .find(|c| c.is_control() || matches!(c, '/' | '\\'))
        {
            return Err(FileNameError::BadCharacter { found });
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// Nothing but white space.
    #[error("is empty")]
    Empty,
    /// Too long.
    #[error("is longer than {max} characters")]
    TooLong {
        /// The longest allowed name, in characters.
        max: usize,
    },
    /// A control character or a path separator.
    #[error(
        "must be a file's own name, without control characters or '/' and '\\' (found {found:?})"
    )]
    BadCharacter {
        /// The first character that is not allowed.
        found: char,
    },
}

#[cfg(test)]
mod file_name_tests {
    use super::*;

    #[test]
    fn a_file_name_is_a_name_not_a_path() {
        assert_eq!(
            SourceFileName::parse(" visits_march 2025.csv ")
                .unwrap()
                .as_str(),
            "visits_march 2025.csv"
        );
        assert_eq!(
            SourceFileName::parse("données é.csv").unwrap().as_str(),
            "données é.csv"
        );
        assert_eq!(SourceFileName::parse("  "), Err(FileNameError::Empty));
        assert!(matches!(
            SourceFileName::parse("../etc/passwd"),
            Err(FileNameError::BadCharacter { found: '/' })
        ));
        assert!(matches!(
            SourceFileName::parse("a\\b.csv"),
            Err(FileNameError::BadCharacter { found: '\\' })
        ));
        assert!(matches!(
            SourceFileName::parse("a\nb.csv"),
            Err(FileNameError::BadCharacter { found: '\n' })
        ));
        assert_eq!(
            SourceFileName::parse(&"x".repeat(256)),
            Err(FileNameError::TooLong { max: 255 })
        );
        assert!(SourceFileName::parse(&"é".repeat(255)).is_ok());
    }
}

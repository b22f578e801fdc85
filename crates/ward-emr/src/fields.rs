//! Reading a JSON body into typed values while naming every invalid field.
//!
//! A [`Check`] walks one JSON object: each accessor takes the field's name and a parser,
//! records `field -> reason` when the value is missing, of the wrong type or out of range,
//! and returns the typed value otherwise. Unknown fields are refused too (a typo such as
//! `dateOfBrith` must not be silently dropped). The caller builds its entity only when the
//! check collected no error, so an entity value is always a valid one.

use serde_json::{Map, Value};
use ward_domain::UtcInstant;

/// One invalid field: its JSON path (`address.country`, `diagnoses[1].code`) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field's path in the request body.
    pub field: String,
    /// Why, in plain words.
    pub reason: String,
}

/// Collects field errors while reading objects.
#[derive(Debug, Default)]
pub struct Check {
    /// Every problem found so far.
    pub errors: Vec<FieldError>,
}

/// One object being read: its fields and its path prefix.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Obj<'a> {
    /// The body's top-level object, or a field error when it is not one.
    pub fn root(check: &mut Check, body: &'a Value) -> Option<Self> {
        match body {
            Value::Object(map) => Some(Self {
                map,
                prefix: String::new(),
            }),
            _ => {
                check.fail("body", "must be a JSON object");
                None
            }
        }
    }

    /// The full path of a field of this object.
    pub fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Check {
    /// The most field errors one answer lists; past them, one more entry says so.
    pub const MAX_ERRORS: usize = 50;
    /// The longest field path an error repeats, in characters (a hostile body can name a
    /// field of any length).
    pub const MAX_FIELD_CHARS: usize = 200;

    /// Records a problem (the first [`Check::MAX_ERRORS`] of them; the field's path
    /// shortened to [`Check::MAX_FIELD_CHARS`]).
    pub fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        match self.errors.len() {
            n if n < Self::MAX_ERRORS => {
                let field: String = field.into();
                let field = if field.chars().count() > Self::MAX_FIELD_CHARS {
                    let kept: String = field.chars().take(Self::MAX_FIELD_CHARS).collect();
                    format!("{kept}...")
                } else {
                    field
                };
                self.errors.push(FieldError {
                    field,
                    reason: reason.into(),
                });
            }
            n if n == Self::MAX_ERRORS => self.errors.push(FieldError {
                field: "body".into(),
                reason: format!(
                    "has more invalid fields; only the first {} are listed",
                    Self::MAX_ERRORS
                ),
            }),
            _ => {}
        }
    }

    /// Refuses fields of `obj` that are not in `known`.
    pub fn only(&mut self, obj: &Obj<'_>, known: &[&str]) {
        for name in obj.map.keys() {
            if !known.contains(&name.as_str()) {
                self.fail(obj.path(name), "is not a known field");
            }
        }
    }

    /// A field read with `parse`: `None` (and an error when `required`) if it is absent or
    /// null, `None` and an error if `parse` refuses it.
    pub fn field<T>(
        &mut self,
        obj: &Obj<'_>,
        name: &str,
        required: bool,
        parse: impl FnOnce(&mut Self, &str, &Value) -> Result<T, String>,
    ) -> Option<T> {
        let path = obj.path(name);
        match obj.map.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(path, "is required");
                }
                None
            }
            Some(value) => match parse(self, &path, value) {
                Ok(parsed) => Some(parsed),
                Err(reason) => {
                    if !reason.is_empty() {
                        self.fail(path, reason);
                    }
                    None
                }
            },
        }
    }

    /// A nested object read by `read`; `None` if it is absent or has errors.
    pub fn object<T>(
        &mut self,
        obj: &Obj<'_>,
        name: &str,
        required: bool,
        read: impl FnOnce(&mut Self, &Obj<'_>) -> Option<T>,
    ) -> Option<T> {
        self.field(obj, name, required, |check, path, value| match value {
            Value::Object(map) => {
                let inner = Obj {
                    map,
                    prefix: format!("{path}."),
                };
                let before = check.errors.len();
                let parsed = read(check, &inner);
                match parsed {
                    Some(parsed) if check.errors.len() == before => Ok(parsed),
                    // Errors are already recorded for the inner fields.
                    _ => Err(String::new()),
                }
            }
            _ => Err("must be an object".into()),
        })
    }

    /// A list of at most `max` elements, each read by `item`.
    pub fn list<T>(
        &mut self,
        obj: &Obj<'_>,
        name: &str,
        max: usize,
        mut item: impl FnMut(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        self.field(obj, name, false, |check, path, value| match value {
            Value::Array(values) if values.len() > max => {
                Err(format!("has more than {max} elements"))
            }
            Value::Array(values) => {
                let before = check.errors.len();
                let parsed: Vec<T> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, value)| item(check, &format!("{path}[{i}]"), value))
                    .collect();
                if check.errors.len() == before {
                    Ok(parsed)
                } else {
                    Err(String::new())
                }
            }
            _ => Err("must be a list".into()),
        })
    }

    /// An element of a list that must be an object, read by `read`.
    pub fn element<T>(
        &mut self,
        path: &str,
        value: &Value,
        read: impl FnOnce(&mut Self, &Obj<'_>) -> Option<T>,
    ) -> Option<T> {
        match value {
            Value::Object(map) => {
                let inner = Obj {
                    map,
                    prefix: format!("{path}."),
                };
                let before = self.errors.len();
                let parsed = read(self, &inner);
                parsed.filter(|_| self.errors.len() == before)
            }
            _ => {
                self.fail(path, "must be an object");
                None
            }
        }
    }

    /// A string element of a list (1..=`max` characters after trimming).
    pub fn element_text(&mut self, path: &str, value: &Value, max: usize) -> Option<String> {
        match text(max)(self, path, value) {
            Ok(text) => Some(text),
            Err(reason) => {
                self.fail(path, reason);
                None
            }
        }
    }
}

/// A field parser.
pub type Parser<T> = Box<dyn FnOnce(&mut Check, &str, &Value) -> Result<T, String>>;

/// A string of 1..=`max` characters after trimming, without control characters.
pub fn text(max: usize) -> Parser<String> {
    Box::new(move |_, _, value| {
        let Value::String(raw) = value else {
            return Err("must be a string".into());
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.chars().count() > max {
            return Err(format!("is longer than {max} characters"));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err("holds a control character".into());
        }
        Ok(trimmed.to_owned())
    })
}

/// One of `allowed` (exact spelling).
pub fn one_of(allowed: &'static [&'static str]) -> Parser<&'static str> {
    Box::new(move |_, _, value| {
        let Value::String(raw) = value else {
            return Err(format!("must be one of {}", allowed.join(", ")));
        };
        allowed
            .iter()
            .find(|a| **a == raw)
            .copied()
            .ok_or_else(|| format!("must be one of {}", allowed.join(", ")))
    })
}

/// An integer in `min..=max`.
pub fn integer(min: i64, max: i64) -> Parser<i64> {
    Box::new(move |_, _, value| match value.as_i64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(format!("must be between {min} and {max}")),
        None => Err("must be a whole number".into()),
    })
}

/// A number in `min..=max`.
pub fn number(min: f64, max: f64) -> Parser<f64> {
    Box::new(move |_, _, value| match value.as_f64() {
        Some(n) if n >= min && n <= max => Ok(n),
        Some(_) => Err(format!("must be between {min} and {max}")),
        None => Err("must be a number".into()),
    })
}

/// `true` or `false`.
pub fn boolean() -> Parser<bool> {
    Box::new(|_, _, value| {
        value
            .as_bool()
            .ok_or_else(|| "must be true or false".into())
    })
}

/// An identifier that can be part of a key (1-64 of `A-Z a-z 0-9 . _ -`), read with its
/// type's `parse` (`Mrn::parse`, `ClinicianId::parse`, `ClinicName::parse`).
pub fn identifier<T: 'static>(parse: fn(&str) -> Result<T, ward_domain::IdError>) -> Parser<T> {
    Box::new(move |_, _, value| {
        let Value::String(raw) = value else {
            return Err("must be a string".into());
        };
        parse(raw).map_err(|e| e.to_string())
    })
}

/// A calendar date `YYYY-MM-DD` from 1900-01-01 up to `latest` (days since the epoch).
pub fn date(latest: Option<i32>) -> Parser<String> {
    Box::new(move |_, _, value| {
        let Value::String(raw) = value else {
            return Err("must be a date (YYYY-MM-DD)".into());
        };
        let days = ward_domain::time::parse_date(raw)
            .ok_or_else(|| "must be a real date written YYYY-MM-DD".to_owned())?;
        if days < ward_domain::time::parse_date("1900-01-01").unwrap_or(i32::MIN) {
            return Err("is before 1900".into());
        }
        if latest.is_some_and(|latest| days > latest) {
            return Err("is in the future".into());
        }
        Ok(raw.clone())
    })
}

/// An RFC 3339 timestamp with an explicit offset.
pub fn instant() -> Parser<UtcInstant> {
    Box::new(|_, _, value| {
        let Value::String(raw) = value else {
            return Err("must be an RFC 3339 timestamp with an offset".into());
        };
        UtcInstant::parse_rfc3339(raw).map_err(|e| e.to_string())
    })
}

/// An email address (one `@`, a dotted domain, no spaces); kept as sent, compared
/// lower-cased.
pub fn email() -> Parser<String> {
    Box::new(|_, _, value| {
        let Value::String(raw) = value else {
            return Err("must be an email address".into());
        };
        let raw = raw.trim();
        let well_formed = raw.len() <= 254
            && raw.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            })
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
        if well_formed {
            Ok(raw.to_owned())
        } else {
            Err("must be an email address such as name@example.org".into())
        }
    })
}

/// A phone number in E.164: `+`, then 8 to 15 digits, the first not 0.
pub fn phone() -> Parser<String> {
    Box::new(|_, _, value| {
        let Value::String(raw) = value else {
            return Err("must be a phone number in E.164 form, such as +14155550123".into());
        };
        let digits = raw.strip_prefix('+').unwrap_or("");
        if (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(raw.clone())
        } else {
            Err("must be a phone number in E.164 form, such as +14155550123".into())
        }
    })
}

/// A time of day `HH:MM` (24-hour), as minutes since midnight.
pub fn time_of_day() -> Parser<u32> {
    Box::new(|_, _, value| {
        let parsed = value.as_str().and_then(|raw| {
            let (h, m) = raw.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        });
        parsed.ok_or_else(|| "must be a time of day written HH:MM".into())
    })
}

/// Whether an ICD-10-CM code has the code's form: a letter, a digit, a letter or digit,
/// then optionally a dot and one to four letters or digits (`I25.9`, `S72.001A`, `U07.1`).
pub fn is_icd10cm_form(code: &str) -> bool {
    let bytes = code.as_bytes();
    if bytes.len() < 3 {
        return false;
    }
    let category = bytes[0].is_ascii_uppercase()
        && bytes[1].is_ascii_digit()
        && (bytes[2].is_ascii_digit() || bytes[2].is_ascii_uppercase());
    let extension = match &bytes[3..] {
        [] => true,
        [b'.', rest @ ..] => {
            (1..=4).contains(&rest.len())
                && rest
                    .iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        }
        _ => false,
    };
    category && extension
}

/// The active ISO 4217 currency codes.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND \
BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB \
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY \
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR \
MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF \
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS \
UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// An ISO 4217 currency code (`USD`, `EUR`, `QAR`).
pub fn currency() -> Parser<String> {
    Box::new(|_, _, value| match value.as_str() {
        Some(code) if code.len() == 3 && ISO_4217.split(' ').any(|known| known == code) => {
            Ok(code.to_owned())
        }
        _ => Err("must be an ISO 4217 currency code such as USD".into()),
    })
}

/// An ISO 3166-1 alpha-2 country code form (two capital letters).
pub fn country() -> Parser<String> {
    Box::new(|_, _, value| match value.as_str() {
        Some(code) if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) => {
            Ok(code.to_owned())
        }
        _ => Err("must be a two-letter ISO 3166 country code such as US".into()),
    })
}

/// A lower-case SHA-256 hex digest (64 characters).
pub fn sha256_hex() -> Parser<String> {
    Box::new(|_, _, value| match value.as_str() {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex.to_owned())
        }
        _ => Err("must be a SHA-256 digest as 64 lower-case hex characters".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd10cm_form() {
        for good in ["I25.9", "S72.001A", "U07.1", "E11", "Z00.00", "A0B.1"] {
            assert!(is_icd10cm_form(good), "{good}");
        }
        for bad in [
            "",
            "I2",
            "125.9",
            "I25.",
            "I25.12345",
            "i25.9",
            "I25-9",
            "IX5.9",
        ] {
            assert!(!is_icd10cm_form(bad), "{bad}");
        }
    }

    #[test]
    fn every_invalid_field_is_named_with_its_path() {
        let body = serde_json::json!({
            "name": "",
            "phone": "0044 1234",
            "nested": {"currency": "XXX", "extra": 1},
            "items": [{"code": "ok"}, {"code": 5}],
            "typo": true
        });
        let mut check = Check::default();
        let root = Obj::root(&mut check, &body).unwrap();
        check.only(&root, &["name", "phone", "nested", "items", "missing"]);
        check.field(&root, "name", true, text(10));
        check.field(&root, "phone", true, phone());
        check.field(&root, "missing", true, text(10));
        check.object(&root, "nested", true, |check, obj| {
            check.only(obj, &["currency"]);
            check.field(obj, "currency", true, currency())
        });
        check.list(&root, "items", 5, |check, path, value| {
            check.element(path, value, |check, obj| {
                check.field(obj, "code", true, text(10))
            })
        });
        let fields: Vec<&str> = check.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "typo",
                "name",
                "phone",
                "missing",
                "nested.extra",
                "nested.currency",
                "items[1].code"
            ]
        );
    }
}

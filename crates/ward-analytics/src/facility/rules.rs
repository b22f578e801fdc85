//! The field rules of a facility record: ids, states, ZIP codes, dates, counts and texts,
//! each refusing with the field's path and why.

use serde_json::Value;

use super::parse_date;
use crate::record::{Accreditation, Lab};

#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<(String, String)>,
}

type Check<T> = fn(&Value) -> Result<T, String>;

impl Checker {
    pub(super) fn fail(&mut self, field: &str, reason: &str) {
        self.problems.push((field.to_owned(), reason.to_owned()));
    }

    pub(super) fn required<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        name: &str,
        check: Check<T>,
    ) -> Option<T> {
        self.required_in(object, name, name, check)
    }

    pub(super) fn required_in<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        field: &str,
        name: &str,
        check: Check<T>,
    ) -> Option<T> {
        match object.get(name) {
            None | Some(Value::Null) => {
                self.fail(field, "is required");
                None
            }
            Some(value) => self.run(field, value, check),
        }
    }

    pub(super) fn optional<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        name: &str,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        self.optional_in(object, name, name, check)
    }

    pub(super) fn optional_in<T>(
        &mut self,
        object: &serde_json::Map<String, Value>,
        field: &str,
        name: &str,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match object.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => self.run(field, value, check),
        }
    }

    pub(super) fn run<T>(
        &mut self,
        field: &str,
        value: &Value,
        check: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match check(value) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.problems.push((field.to_owned(), reason));
                None
            }
        }
    }

    pub(super) fn lab(&mut self, i: usize, lab: &Value) -> Option<Lab> {
        let Value::Object(lab) = lab else {
            self.fail(
                &format!("labs[{i}]"),
                "must be an object with lab_name and certifications",
            );
            return None;
        };
        let name = self.required_in(lab, &format!("labs[{i}].lab_name"), "lab_name", |v| {
            text(v, 200)
        });
        let certifications = self
            .optional_in(
                lab,
                &format!("labs[{i}].certifications"),
                "certifications",
                |v| list(v, |item| text(item, 200)),
            )
            .unwrap_or_default();
        Some(Lab {
            lab_name: name?,
            certifications,
        })
    }

    pub(super) fn accreditation(&mut self, i: usize, item: &Value) -> Option<Accreditation> {
        let Value::Object(item) = item else {
            self.fail(
                &format!("accreditations[{i}]"),
                "must be an object with accreditation_body, accreditation_id and valid_until",
            );
            return None;
        };
        let field = |name: &str| format!("accreditations[{i}].{name}");
        let body = self.required_in(
            item,
            &field("accreditation_body"),
            "accreditation_body",
            |v| text(v, 200),
        );
        let id = self.required_in(item, &field("accreditation_id"), "accreditation_id", |v| {
            text(v, 100)
        });
        let valid_until = self.required_in(item, &field("valid_until"), "valid_until", date);
        Some(Accreditation {
            accreditation_body: body?,
            accreditation_id: id?,
            valid_until: valid_until?,
        })
    }
}

pub(super) fn text(value: &Value, max_chars: usize) -> Result<String, String> {
    match value {
        Value::String(text) => checked_text(text, max_chars).map(str::to_owned),
        other => Err(format!("must be a string, not {}", type_name(other))),
    }
}

/// The text, trimmed, if it is not empty and not too long.
pub(super) fn checked_text(text: &str, max_chars: usize) -> Result<&str, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err("is empty".into())
    } else if text.len() > max_chars && text.chars().count() > max_chars {
        Err(format!("is longer than {max_chars} characters"))
    } else {
        Ok(trimmed)
    }
}

pub(super) fn list<T>(
    value: &Value,
    item: impl Fn(&Value) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let Value::Array(items) = value else {
        return Err(format!("must be an array, not {}", type_name(value)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, value)| item(value).map_err(|reason| format!("item {i} {reason}")))
        .collect()
}

pub(super) fn facility_id(value: &Value) -> Result<String, String> {
    let Value::String(id) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    checked_id(id).map(str::to_owned)
}

pub(super) fn checked_id(id: &str) -> Result<&str, String> {
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if well_formed {
        Ok(id)
    } else {
        Err("must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit".into())
    }
}

pub(super) fn count(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(number) => match number.as_i64() {
            Some(n) if n >= 0 => Ok(n),
            Some(_) => Err("must not be negative".into()),
            None if number.as_u64().is_some() => Err("is too large".into()),
            None => Err("must be a whole number".into()),
        },
        other => Err(format!(
            "must be a non-negative integer, not {}",
            type_name(other)
        )),
    }
}

/// USPS codes: the states, DC, and the inhabited territories.
pub(super) const STATES: [&str; 56] = [
    "AK", "AL", "AR", "AS", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "GU", "HI", "IA", "ID",
    "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MP", "MS", "MT", "NC", "ND",
    "NE", "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "PR", "RI", "SC", "SD", "TN", "TX",
    "UT", "VA", "VI", "VT", "WA", "WI", "WV", "WY",
];

pub(super) fn state_code(value: &Value) -> Result<String, String> {
    let Value::String(code) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    checked_state(code).map(str::to_owned)
}

/// The code in capitals, if it is a known one.
pub(super) fn checked_state(code: &str) -> Result<&'static str, String> {
    let code = code.trim().as_bytes();
    let known = match code {
        [a, b] => {
            let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
            std::str::from_utf8(&upper)
                .ok()
                .and_then(|upper| STATES.binary_search(&upper).ok())
        }
        _ => None,
    };
    known
        .map(|at| STATES[at])
        .ok_or_else(|| "is not a known two-letter state or territory code".into())
}

pub(super) fn zip_code(value: &Value) -> Result<String, String> {
    let Value::String(zip) = value else {
        return Err(format!("must be a string, not {}", type_name(value)));
    };
    checked_zip(zip).map(str::to_owned)
}

pub(super) fn checked_zip(zip: &str) -> Result<&str, String> {
    let b = zip.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let ok = (b.len() == 5 && digits(0..5))
        || (b.len() == 10 && digits(0..5) && b[5] == b'-' && digits(6..10));
    if ok {
        Ok(zip)
    } else {
        Err("must be a ZIP code (12345 or 12345-6789)".into())
    }
}

pub(super) fn date(value: &Value) -> Result<i32, String> {
    let Value::String(text) = value else {
        return Err(format!(
            "must be a date (YYYY-MM-DD), not {}",
            type_name(value)
        ));
    };
    parse_date(text).ok_or_else(|| "must be a real date written YYYY-MM-DD".into())
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

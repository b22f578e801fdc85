//! The sealed form of an item's protected fields: named by one-byte codes (or in full when
//! a field has none), lengths as varints; the earlier form, every field named in full,
//! still opens.

use std::collections::BTreeMap;

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ward_protect::envelope::{self, FieldCodes, ItemAad};
use ward_store::Value;

fn key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap())
}

fn visit_fields() -> Vec<(&'static str, Value)> {
    vec![
        (
            "doctorsNotes",
            Value::s("BP 130/85, advised low sodium diet"),
        ),
        ("firstName", Value::s("Noah")),
        ("lastName", Value::s("O'Brien")),
        ("medicalRecordNumber", Value::s("MRN0000040")),
        ("sourceFileName", Value::s("visits.csv")),
    ]
}

fn sealed(fields: &[(&'static str, Value)], codes: &FieldCodes) -> Vec<u8> {
    let Value::B(bytes) = envelope::seal_fields(
        &key(),
        9,
        &mut ItemAad::new("PK", "SK"),
        "#sealed",
        fields.iter().map(|(name, value)| (*name, value)),
        codes,
    )
    .unwrap() else {
        panic!("sealed values are bytes")
    };
    bytes
}

fn opened(bytes: &[u8], codes: &FieldCodes) -> BTreeMap<String, Value> {
    match envelope::open_fields_in(
        &key(),
        &mut ItemAad::new("PK", "SK"),
        "#sealed",
        bytes,
        codes,
    )
    .unwrap()
    {
        Value::M(map) => map,
        other => panic!("{other:?}"),
    }
}

fn as_map(fields: &[(&'static str, Value)]) -> BTreeMap<String, Value> {
    fields
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

#[test]
fn fields_with_codes_take_a_byte_each_and_open_as_they_were() {
    let fields = visit_fields();
    let codes = FieldCodes::new(&[
        "medicalRecordNumber",
        "firstName",
        "lastName",
        "doctorsNotes",
        "sourceFileName",
    ]);
    let coded = sealed(&fields, &codes);
    let named = sealed(&fields, &FieldCodes::default());
    assert_eq!(opened(&coded, &codes), as_map(&fields));
    assert_eq!(opened(&named, &codes), as_map(&fields));
    let names: usize = fields.iter().map(|(name, _)| name.len()).sum();
    assert!(
        coded.len() + names <= named.len(),
        "coded {} bytes, named {} bytes",
        coded.len(),
        named.len()
    );
    // Some fields coded, others named: both open.
    let some = FieldCodes::new(&["firstName"]);
    assert_eq!(opened(&sealed(&fields, &some), &some), as_map(&fields));
    // A code the reader does not know is an error, not a guess.
    assert!(
        envelope::open_fields_in(
            &key(),
            &mut ItemAad::new("PK", "SK"),
            "#sealed",
            &coded,
            &FieldCodes::default()
        )
        .is_err()
    );
}

#[test]
fn a_map_sealed_in_the_earlier_form_every_field_named_in_full_still_opens() {
    // What stores of sealed form 4 written before the codes hold: the map encoded by
    // `encode` (four-byte lengths, names in full), sealed the same way.
    let fields = visit_fields();
    let earlier = envelope::seal_in(
        &key(),
        9,
        &mut ItemAad::new("PK", "SK"),
        "#sealed",
        &Value::M(as_map(&fields)),
    )
    .unwrap();
    let Value::B(bytes) = earlier else {
        panic!("sealed values are bytes")
    };
    let codes = FieldCodes::new(&["firstName"]);
    assert_eq!(opened(&bytes, &codes), as_map(&fields));
}

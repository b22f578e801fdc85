//! The keys of a store written before encryption at rest, rewritten to today's layout: an
//! MRN becomes its patient's pseudonym wherever a key, an index key or an object path held
//! it, and an email claim is named by the address's blind index instead of its plain
//! SHA-256. Everything else of an item (its attributes, which the protected table seals
//! on the way in) is unchanged.
//!
//! The old layout (commit `4866ee4`, `git show 4866ee4:crates/ward-domain/src/key_layout.rs`):
//!
//! | where | before | now |
//! |---|---|---|
//! | a patient's partition | `PROV#{p}#PAT#{mrn}` | `PROV#{p}#PAT#{patient key}` |
//! | access log (`GSI2PK`) | `PROV#{p}#PAT#{mrn}#ACCESSLOG` | `PROV#{p}#PAT#{patient key}#ACCESSLOG` |
//! | care index (`GSI1SK`) | `PATIENT#{mrn}` | `PATIENT#{patient key}` |
//! | records by upload (`GSI1SK`) | `PAT#{mrn}#{instant}` | `PAT#{patient key}#{instant}` |
//! | a clinic's patients (`GSI2`) | shard of the MRN, sort key the MRN | shard and sort key of the patient key |
//! | email claim | `PROV#{p}#EMAIL#{sha256 of the address}` | `PROV#{p}#EMAIL#{blind index}` |
//! | document bytes | `{p}/documents/{mrn}/{id}` | `{p}/documents/{patient key}/{id}` |

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use ward_domain::key_layout::{self as keys, EMR_INDEX_SHARDS};
use ward_domain::{Mrn, ProviderId, Pseudonyms};
use ward_store::{Item, PK, SK, Value};

const GSI1PK: &str = "GSI1PK";
const GSI1SK: &str = "GSI1SK";
const GSI2PK: &str = "GSI2PK";
const GSI2SK: &str = "GSI2SK";

/// The old email claims' names, each to its new one: `(provider, sha256 hex of the
/// lower-cased address)` to the address's blind index. Built from the profiles that hold
/// the addresses; no address is kept.
#[derive(Debug, Default)]
pub struct EmailClaims {
    renamed: HashMap<(String, String), String>,
}

impl EmailClaims {
    /// Notes the address of a profile (`item`, when it is a patient's or clinician's
    /// profile with an email in its `data`).
    pub fn note(&mut self, item: &Item, pseudonyms: &Pseudonyms) {
        let (Some(pk), Some(sk)) = (text(item, PK), text(item, SK)) else {
            return;
        };
        if sk != keys::PATIENT_PROFILE_SK {
            return;
        }
        let Some(provider) = provider_of(pk) else {
            return;
        };
        let Some(data) = text(item, "data") else {
            return;
        };
        let Ok(serde_json::Value::Object(data)) = serde_json::from_str(data) else {
            return;
        };
        let Some(email) = data.get("email").and_then(serde_json::Value::as_str) else {
            return;
        };
        let lower = email.to_lowercase();
        let old = hex::encode(Sha256::digest(lower.as_bytes()));
        self.renamed.insert(
            (provider.as_str().to_owned(), old),
            pseudonyms.email(&provider, &lower),
        );
    }
}

/// Why an item could not be rewritten: what it is, never its patient data.
#[derive(Debug)]
pub struct RekeyError {
    provider: String,
    what: &'static str,
    why: &'static str,
}

impl std::fmt::Display for RekeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "an item of provider {} ({}) {}",
            self.provider, self.what, self.why
        )
    }
}

impl std::error::Error for RekeyError {}

/// What became of one item.
#[derive(Debug)]
pub enum Rekeyed {
    /// Stored under these keys (maybe the same ones).
    Item(Item),
    /// An email claim no profile holds the address of (its owner was changed or deleted
    /// and the claim was left behind): not carried over.
    OrphanClaim,
}

/// `item` of the old layout in today's.
pub fn rekey(
    mut item: Item,
    pseudonyms: &Pseudonyms,
    claims: &EmailClaims,
) -> Result<Rekeyed, RekeyError> {
    let Some(pk) = text(&item, PK).map(str::to_owned) else {
        return Ok(Rekeyed::Item(item));
    };
    let Some(provider) = provider_of(&pk) else {
        return Ok(Rekeyed::Item(item));
    };
    let fail = |what, why| RekeyError {
        provider: provider.as_str().to_owned(),
        what,
        why,
    };
    if let Some(old) = pk.strip_prefix(&format!("PROV#{provider}#EMAIL#")) {
        return match claims
            .renamed
            .get(&(provider.as_str().to_owned(), old.to_owned()))
        {
            Some(index) => {
                set(&mut item, PK, keys::email_claim_pk(&provider, index));
                Ok(Rekeyed::Item(item))
            }
            None => Ok(Rekeyed::OrphanClaim),
        };
    }
    if let Some(new) =
        patient_partition(&pk, &provider, pseudonyms).map_err(|why| fail("its partition", why))?
    {
        set(&mut item, PK, new);
    }
    if let Some(gsi2pk) = text(&item, GSI2PK).map(str::to_owned) {
        if let Some(new) = patient_partition(&gsi2pk, &provider, pseudonyms)
            .map_err(|why| fail("its access-log entry", why))?
        {
            set(&mut item, GSI2PK, new);
        } else if let Some(clinic) = clinic_of_patients_index(&gsi2pk, &provider) {
            let mrn =
                text(&item, GSI2SK).ok_or_else(|| fail("its clinic entry", "has no sort key"))?;
            let patient = patient_key(mrn, &provider, pseudonyms)
                .map_err(|why| fail("its clinic entry", why))?;
            let shard = keys::shard_of(&patient, EMR_INDEX_SHARDS);
            let clinic = ward_domain::ClinicName::parse(clinic)
                .map_err(|_| fail("its clinic entry", "names no clinic"))?;
            set(
                &mut item,
                GSI2PK,
                keys::clinic_patients_pk(&provider, &clinic, shard),
            );
            set(&mut item, GSI2SK, patient);
        }
    }
    if let (Some(gsi1pk), Some(gsi1sk)) = (text(&item, GSI1PK), text(&item, GSI1SK)) {
        let care = gsi1pk.starts_with(&format!("PROV#{provider}#CLIN#"));
        let by_upload = gsi1pk.starts_with(&format!("PROV#{provider}#UPLOAD#"));
        let new = if let (true, Some(mrn)) = (care, gsi1sk.strip_prefix(keys::CARE_INDEX_SK_PREFIX))
        {
            let patient = patient_key(mrn, &provider, pseudonyms)
                .map_err(|why| fail("its care-index entry", why))?;
            Some(format!("{}{patient}", keys::CARE_INDEX_SK_PREFIX))
        } else if let (true, Some(rest)) = (by_upload, gsi1sk.strip_prefix("PAT#")) {
            let (mrn, instant) = rest
                .split_once('#')
                .ok_or_else(|| fail("its upload-index entry", "has no time"))?;
            let patient = patient_key(mrn, &provider, pseudonyms)
                .map_err(|why| fail("its upload-index entry", why))?;
            Some(format!("PAT#{patient}#{instant}"))
        } else {
            None
        };
        if let Some(new) = new {
            set(&mut item, GSI1SK, new);
        }
    }
    Ok(Rekeyed::Item(item))
}

/// The object path of the old layout in today's (a document's names its patient).
pub fn object_path(path: &str, pseudonyms: &Pseudonyms) -> Result<String, RekeyError> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [provider_id, folder, mrn, document] if *folder == keys::DOCUMENTS_FOLDER => {
            let fail = |why| RekeyError {
                provider: (*provider_id).to_owned(),
                what: "a document's object",
                why,
            };
            let provider = ProviderId::parse(provider_id).map_err(|_| fail("names no provider"))?;
            let patient = patient_key(mrn, &provider, pseudonyms).map_err(fail)?;
            Ok(format!(
                "{provider}/{}/{patient}/{document}",
                keys::DOCUMENTS_FOLDER
            ))
        }
        _ => Ok(path.to_owned()),
    }
}

/// `PROV#{p}#PAT#{mrn}` (or that and `#...`) with the MRN replaced by the patient key;
/// `None` for any other text.
fn patient_partition(
    text: &str,
    provider: &ProviderId,
    pseudonyms: &Pseudonyms,
) -> Result<Option<String>, &'static str> {
    let prefix = format!("PROV#{provider}#PAT#");
    let Some(rest) = text.strip_prefix(&prefix) else {
        return Ok(None);
    };
    let (mrn, tail) = match rest.split_once('#') {
        Some((mrn, tail)) => (mrn, Some(tail)),
        None => (rest, None),
    };
    let patient = patient_key(mrn, provider, pseudonyms)?;
    Ok(Some(match tail {
        Some(tail) => format!("{prefix}{patient}#{tail}"),
        None => format!("{prefix}{patient}"),
    }))
}

/// The clinic of `PROV#{p}#CLINIC#{clinic}#PATIENTS#S{nn}`.
fn clinic_of_patients_index<'a>(text: &'a str, provider: &ProviderId) -> Option<&'a str> {
    let rest = text.strip_prefix(&format!("PROV#{provider}#CLINIC#"))?;
    let (clinic, tail) = rest.split_once('#')?;
    tail.starts_with("PATIENTS#S").then_some(clinic)
}

fn patient_key(
    mrn: &str,
    provider: &ProviderId,
    pseudonyms: &Pseudonyms,
) -> Result<String, &'static str> {
    let mrn = Mrn::parse(mrn).map_err(|_| "names a patient by something that is not an MRN")?;
    Ok(pseudonyms.patient(provider, &mrn).as_str().to_owned())
}

fn provider_of(pk: &str) -> Option<ProviderId> {
    let rest = pk.strip_prefix("PROV#")?;
    let id = rest.split('#').next()?;
    ProviderId::parse(id).ok()
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_s)
}

fn set(item: &mut Item, name: &'static str, value: String) {
    item.insert(name.into(), Value::s(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&'static str, &str)]) -> Item {
        pairs
            .iter()
            .map(|(name, value)| ((*name).into(), Value::s(*value)))
            .collect()
    }

    fn pseudonyms() -> Pseudonyms {
        Pseudonyms::new(&[9; 32])
    }

    fn rekeyed(old: Item, claims: &EmailClaims) -> Item {
        match rekey(old, &pseudonyms(), claims).unwrap() {
            Rekeyed::Item(item) => item,
            Rekeyed::OrphanClaim => panic!("not a claim"),
        }
    }

    #[test]
    fn every_old_key_naming_a_patient_names_its_pseudonym_instead() {
        let p = ProviderId::parse("PROV001").unwrap();
        let patient = pseudonyms()
            .patient(&p, &Mrn::parse("MRN0000005").unwrap())
            .as_str()
            .to_owned();
        let claims = EmailClaims::default();
        let visit = rekeyed(
            item(&[
                (PK, "PROV#PROV001#PAT#MRN0000005"),
                (SK, "VISIT#2024-01-01T00:00:00.000000000Z"),
                (
                    GSI1PK,
                    "PROV#PROV001#UPLOAD#20250326T181500Z-0123456789abcdef#S03",
                ),
                (GSI1SK, "PAT#MRN0000005#2024-01-01T00:00:00.000000000Z"),
                ("firstName", "Ann"),
            ]),
            &claims,
        );
        assert_eq!(
            text(&visit, PK),
            Some(format!("PROV#PROV001#PAT#{patient}").as_str())
        );
        assert_eq!(
            text(&visit, GSI1SK),
            Some(format!("PAT#{patient}#2024-01-01T00:00:00.000000000Z").as_str())
        );
        assert_eq!(text(&visit, "firstName"), Some("Ann"));
        let care = rekeyed(
            item(&[
                (PK, "PROV#PROV001#PAT#MRN0000005"),
                (SK, "ACCESS#DR001#CARE"),
                (GSI1PK, "PROV#PROV001#CLIN#DR001"),
                (GSI1SK, "PATIENT#MRN0000005"),
            ]),
            &claims,
        );
        assert_eq!(
            text(&care, GSI1SK),
            Some(format!("PATIENT#{patient}").as_str())
        );
        let event = rekeyed(
            item(&[
                (PK, "PROV#PROV001#AUDIT#2026-12-03#S00"),
                (SK, "2026-12-03T14:24:28.873810073Z#0eea24fdbc4da248"),
                (GSI2PK, "PROV#PROV001#PAT#MRN0000005#ACCESSLOG"),
                (GSI2SK, "2026-12-03T14:24:28.873810073Z#0eea24fdbc4da248"),
            ]),
            &claims,
        );
        assert_eq!(text(&event, PK), Some("PROV#PROV001#AUDIT#2026-12-03#S00"));
        assert_eq!(
            text(&event, GSI2PK),
            Some(format!("PROV#PROV001#PAT#{patient}#ACCESSLOG").as_str())
        );
        let profile = rekeyed(
            item(&[
                (PK, "PROV#PROV001#PAT#MRN0000005"),
                (SK, "PROFILE"),
                (GSI2PK, "PROV#PROV001#CLINIC#NORTH#PATIENTS#S07"),
                (GSI2SK, "MRN0000005"),
            ]),
            &claims,
        );
        let clinic = ward_domain::ClinicName::parse("NORTH").unwrap();
        assert_eq!(
            text(&profile, GSI2PK),
            Some(
                keys::clinic_patients_pk(&p, &clinic, keys::shard_of(&patient, EMR_INDEX_SHARDS))
                    .as_str()
            )
        );
        assert_eq!(text(&profile, GSI2SK), Some(patient.as_str()));
        for old in [&visit, &care, &event, &profile] {
            for (_, value) in old.iter() {
                assert!(!format!("{value:?}").contains("MRN0000005"), "{old:?}");
            }
        }
        assert_eq!(
            object_path(
                "PROV001/documents/MRN0000005/20260101T000000Z-00",
                &pseudonyms()
            )
            .unwrap(),
            format!("PROV001/documents/{patient}/20260101T000000Z-00")
        );
        assert_eq!(
            object_path("PROV001/completed/x.csv", &pseudonyms()).unwrap(),
            "PROV001/completed/x.csv"
        );
    }

    #[test]
    fn an_email_claim_is_named_by_the_blind_index_of_its_owners_address() {
        let names = pseudonyms();
        let mut claims = EmailClaims::default();
        claims.note(
            &item(&[
                (PK, "PROV#PROV001#PAT#MRN0000005"),
                (SK, "PROFILE"),
                ("data", r#"{"email":"Ann@Example.org","firstName":"Ann"}"#),
            ]),
            &names,
        );
        let old_hash = hex::encode(Sha256::digest(b"ann@example.org"));
        let claim = rekeyed(
            item(&[
                (PK, &format!("PROV#PROV001#EMAIL#{old_hash}")),
                (SK, "EMAIL"),
            ]),
            &claims,
        );
        let p = ProviderId::parse("PROV001").unwrap();
        assert_eq!(
            text(&claim, PK),
            Some(keys::email_claim_pk(&p, &names.email(&p, "ann@example.org")).as_str())
        );
        let orphan = item(&[(PK, "PROV#PROV001#EMAIL#00ff"), (SK, "EMAIL")]);
        assert!(matches!(
            rekey(orphan, &names, &claims).unwrap(),
            Rekeyed::OrphanClaim
        ));
    }

    #[test]
    fn a_key_that_names_no_mrn_is_an_error_that_names_no_patient_data() {
        let bad = item(&[(PK, "PROV#PROV001#PAT#not an mrn!"), (SK, "PROFILE")]);
        let error = rekey(bad, &pseudonyms(), &EmailClaims::default()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("PROV001") && text.contains("not an MRN"),
            "{text}"
        );
        assert!(!text.contains("not an mrn!"), "{text}");
    }
}

//! Where the EMR's items live: the keys of a patient's partition and profile (naming the
//! patient by its pseudonym), of an email's claim (by its blind index) and of a
//! clinician's profile.

use ward_domain::key_layout as keys;
use ward_domain::{ClinicianId, Mrn, ProviderId, Pseudonyms};
use ward_store::{Item, Key, PK, SK, Value};

use crate::model::Kind;

pub(super) fn email_claim(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    email: &str,
    owner: Kind,
    owner_id: &str,
) -> Item {
    let mut item = Item::new();
    item.insert(
        PK.into(),
        Value::s(keys::email_claim_pk(
            provider,
            &pseudonyms.email(provider, email),
        )),
    );
    item.insert(SK.into(), Value::s(keys::EMAIL_CLAIM_SK));
    item.insert("entity".into(), Value::s("EMAIL_CLAIM"));
    item.insert("owner".into(), Value::s(owner.as_str()));
    item.insert("ownerId".into(), Value::s(owner_id));
    item
}

pub(super) fn email_claim_key(pseudonyms: &Pseudonyms, provider: &ProviderId, email: &str) -> Key {
    Key::new(
        keys::email_claim_pk(provider, &pseudonyms.email(provider, email)),
        keys::EMAIL_CLAIM_SK,
    )
}

/// A patient's partition: its key names the patient by pseudonym.
pub(super) fn patient_pk(pseudonyms: &Pseudonyms, provider: &ProviderId, mrn: &Mrn) -> String {
    keys::patient_pk(provider, &pseudonyms.patient(provider, mrn))
}

pub(super) fn patient_key(pseudonyms: &Pseudonyms, provider: &ProviderId, mrn: &Mrn) -> Key {
    Key::new(
        patient_pk(pseudonyms, provider, mrn),
        keys::PATIENT_PROFILE_SK,
    )
}

pub(super) fn clinician_key(provider: &ProviderId, clinician: &ClinicianId) -> Key {
    Key::new(
        keys::clinician_pk(provider, clinician),
        keys::CLINICIAN_PROFILE_SK,
    )
}

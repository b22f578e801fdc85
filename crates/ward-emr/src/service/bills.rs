//! Bills with their services, filed under their issue time.

use serde_json::Value as Json;
use ward_domain::{BillId, Mrn, ProviderId, Pseudonyms, TimeOrderedId};
use ward_store::WriteOp;

use super::children::{Changing, NewChild};
use super::{Draft, Emr, EmrError, child_draft, random_bits};
use crate::model::{self, Kind};

/// A new bill.
pub(super) fn new_bill(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    body: &Json,
) -> Result<NewChild, EmrError> {
    let bill = model::parse(body, model::bill).map_err(EmrError::Invalid)?;
    let id = BillId::new(bill.instant(), random_bits());
    Ok(NewChild::alone(bill_draft(
        pseudonyms, provider, mrn, &id, &bill,
    )))
}

/// A changed bill: its issue time is fixed.
pub(super) fn changed_bill(
    item: &Changing<'_>,
    if_match: i64,
    patch: &Json,
) -> Result<(Draft, Vec<WriteOp>), EmrError> {
    let after = Emr::patched(
        item.current,
        patch,
        if_match,
        &[("issuedAt", "a bill is filed under its issue time")],
    )?;
    let bill = model::parse(&after, model::bill).map_err(EmrError::Invalid)?;
    Ok((
        bill_draft(item.pseudonyms, item.provider, item.mrn, item.id, &bill),
        vec![],
    ))
}

fn bill_draft(
    pseudonyms: &Pseudonyms,
    provider: &ProviderId,
    mrn: &Mrn,
    id: &impl TimeOrderedId,
    bill: &model::Bill,
) -> Draft {
    child_draft(
        pseudonyms,
        provider,
        mrn,
        Kind::Bill,
        id,
        serde_json::to_value(bill).unwrap_or_default(),
        None,
        None,
        vec![],
    )
}

//! A payment, as an appointment or a bill records it.

use serde::Serialize;

use crate::fields::{Check, Obj, currency, integer, one_of};

/// Payment states.
pub const PAYMENT_STATUSES: &[&str] = &["PENDING", "PAID", "WAIVED", "REFUNDED"];
/// Payment methods.
pub const PAYMENT_METHODS: &[&str] = &["INSURANCE", "CARD", "CASH", "BANK_TRANSFER", "OTHER"];

/// An amount in a currency's minor units (cents): `12050` + `USD` is $120.50.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    amount_minor: i64,
    currency: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
}

/// The largest amount accepted, in minor units.
pub(super) const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

pub(super) fn payment(check: &mut Check, obj: &Obj<'_>) -> Option<Payment> {
    check.only(obj, &["amountMinor", "currency", "status", "method"]);
    let amount_minor = check.field(obj, "amountMinor", true, integer(0, MAX_AMOUNT_MINOR));
    let currency = check.field(obj, "currency", true, currency());
    let status = check.field(obj, "status", true, one_of(PAYMENT_STATUSES));
    let method = check.field(obj, "method", false, one_of(PAYMENT_METHODS));
    Some(Payment {
        amount_minor: amount_minor?,
        currency: currency?,
        status: status?,
        method,
    })
}

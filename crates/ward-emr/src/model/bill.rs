//! A bill with its services.

use serde::Serialize;
use ward_domain::{AppointmentId, UtcInstant};

use super::entity_id;
use super::payment::MAX_AMOUNT_MINOR;
use crate::fields::{Check, Obj, currency, date, instant, integer, one_of, text};

/// Bill states.
pub const BILL_STATUSES: &[&str] = &["DRAFT", "ISSUED", "PAID", "VOID", "REFUNDED"];

/// A service billed: a line of a bill.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    code: String,
    description: String,
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_minor: Option<i64>,
}

/// A bill of a patient.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bill {
    /// When the bill was issued (UTC, RFC 3339): its time.
    pub issued_at: String,
    amount_minor: i64,
    currency: String,
    status: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::as_optional_text"
    )]
    appointment_id: Option<AppointmentId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<Service>,
}

impl Bill {
    /// The issue instant.
    pub fn instant(&self) -> UtcInstant {
        UtcInstant::parse_rfc3339(&self.issued_at).unwrap_or(UtcInstant::from_unix_nanos(0))
    }
}

/// Reads a bill body; service lines that carry amounts must add up to the bill's amount.
pub fn bill(check: &mut Check, obj: &Obj<'_>) -> Option<Bill> {
    check.only(
        obj,
        &[
            "issuedAt",
            "amountMinor",
            "currency",
            "status",
            "appointmentId",
            "services",
        ],
    );
    let issued_at = check.field(obj, "issuedAt", true, instant());
    let amount_minor = check.field(obj, "amountMinor", true, integer(0, MAX_AMOUNT_MINOR));
    let currency = check.field(obj, "currency", true, currency());
    let status = check.field(obj, "status", true, one_of(BILL_STATUSES));
    let appointment_id = check.field(obj, "appointmentId", false, entity_id(AppointmentId::parse));
    let services = check.list(obj, "services", 100, |check, path, value| {
        check.element(path, value, |check, obj| {
            check.only(obj, &["code", "description", "date", "amountMinor"]);
            let code = check.field(obj, "code", true, text(20));
            let description = check.field(obj, "description", true, text(500));
            let date = check.field(obj, "date", true, date(None));
            let amount_minor = check.field(obj, "amountMinor", false, integer(0, MAX_AMOUNT_MINOR));
            Some(Service {
                code: code?,
                description: description?,
                date: date?,
                amount_minor,
            })
        })
    });
    let services = services.unwrap_or_default();
    let amount_minor = amount_minor?;
    if !services.is_empty() && services.iter().all(|s| s.amount_minor.is_some()) {
        let sum: i64 = services.iter().filter_map(|s| s.amount_minor).sum();
        if sum != amount_minor {
            check.fail(
                obj.path("amountMinor"),
                format!("is {amount_minor} but the services add up to {sum}"),
            );
            return None;
        }
    }
    Some(Bill {
        issued_at: issued_at?.rfc3339_seconds(),
        amount_minor,
        currency: currency?,
        status: status?,
        appointment_id,
        services,
    })
}

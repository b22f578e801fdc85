//! One policy, deny by default: which principal may call which route, in one table.
//!
//! Every route of the router has exactly one [`Rule`] (a test fails otherwise), and the
//! [`Principal`](crate::principal::Principal) extractor looks the request's route up before
//! any handler runs: a route without a rule is refused, a provider route refuses the
//! operator, an operator route refuses a provider's credentials, and a role the rule does
//! not name is refused with 403. Row-level rules (which patients a clinician reaches, a
//! patient's own partition) are applied where each read builds its key range, not here.
//!
//! The roles are those of SPEC section 5. Today a provider's API key acts as
//! [`Role::ProviderAdmin`]; the credentials that carry the other roles (users, OIDC tokens,
//! scoped keys) come with the access issue, and this table already says what each may do.

/// A provider user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything of its provider, users and keys included.
    ProviderAdmin,
    /// Clinical data of the patients it is related to.
    Clinician,
    /// Patients' demographics and appointments, uploads; no clinical content.
    FrontDesk,
    /// Bills and demographics; no clinical content.
    Billing,
    /// One patient: its own items, and who accessed them.
    Patient,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 5] = [
        Self::ProviderAdmin,
        Self::Clinician,
        Self::FrontDesk,
        Self::Billing,
        Self::Patient,
    ];

    /// The role's name in tokens, keys and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderAdmin => "provider_admin",
            Self::Clinician => "clinician",
            Self::FrontDesk => "front_desk",
            Self::Billing => "billing",
            Self::Patient => "patient",
        }
    }
}

/// Who a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    /// No credential: health, readiness, metrics, the OpenAPI document.
    Anyone,
    /// The URL's own signature is the credential (the signed upload and document
    /// endpoints), checked by the handler.
    SignedUrl,
    /// The platform operator only (tenants, dead letters; never patient data).
    Operator,
    /// A provider's principals with one of these roles.
    Roles(&'static [Role]),
}

/// One route's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The HTTP method, lower case.
    pub method: &'static str,
    /// The route template, as in the OpenAPI document.
    pub route: &'static str,
    /// Who may call it.
    pub admits: Admits,
}

use Role::{Billing, Clinician, FrontDesk, Patient, ProviderAdmin};

const ADMIN: &[Role] = &[ProviderAdmin];
/// Everyone of a provider, the patient included (a patient only ever reaches its own).
const EVERYONE: &[Role] = &[ProviderAdmin, Clinician, FrontDesk, Billing, Patient];
/// The provider's staff.
const STAFF: &[Role] = &[ProviderAdmin, Clinician, FrontDesk, Billing];
/// Who files and reads clinical content.
const CLINICAL: &[Role] = &[ProviderAdmin, Clinician];
/// Clinical content, and the patient's own.
const CLINICAL_AND_PATIENT: &[Role] = &[ProviderAdmin, Clinician, Patient];
/// Who receives uploads and registers patients.
const DESK: &[Role] = &[ProviderAdmin, FrontDesk];
/// Who books and changes appointments.
const SCHEDULING: &[Role] = &[ProviderAdmin, Clinician, FrontDesk];
/// Who sees a clinic's or a clinician's appointments.
const SCHEDULES: &[Role] = &[ProviderAdmin, Clinician, FrontDesk];
/// Who bills, and the patient's own bills.
const BILLS: &[Role] = &[ProviderAdmin, Billing, Patient];
/// Who may change a patient's demographics (a patient its own contact details).
const DEMOGRAPHICS_WRITE: &[Role] = &[ProviderAdmin, FrontDesk, Patient];

const fn rule(method: &'static str, route: &'static str, admits: Admits) -> Rule {
    Rule {
        method,
        route,
        admits,
    }
}

const fn roles(method: &'static str, route: &'static str, roles: &'static [Role]) -> Rule {
    rule(method, route, Admits::Roles(roles))
}

/// The policy: one rule per route.
pub const POLICY: &[Rule] = &[
    rule("get", "/healthz", Admits::Anyone),
    rule("get", "/readyz", Admits::Anyone),
    rule("get", "/metrics", Admits::Anyone),
    rule("get", "/v1/openapi.json", Admits::Anyone),
    // CSV uploads and their visits.
    roles("post", "/v1/uploads", DESK),
    roles("get", "/v1/uploads", DESK),
    roles("get", "/v1/uploads/{uploadId}", DESK),
    roles("get", "/v1/uploads/{uploadId}/errors.csv", DESK),
    roles("get", "/v1/uploads/{uploadId}/records", ADMIN),
    rule(
        "put",
        "/v1/upload-objects/{providerId}/{uploadId}",
        Admits::SignedUrl,
    ),
    roles("get", "/v1/patients/{mrn}/records", EVERYONE),
    // Facility analytics.
    roles("post", "/v1/analytics/runs", ADMIN),
    roles("get", "/v1/analytics/runs", ADMIN),
    roles("get", "/v1/analytics/runs/{runId}", ADMIN),
    roles("get", "/v1/analytics/runs/{runId}/results/{file}", ADMIN),
    roles("post", "/v1/analytics/sql", ADMIN),
    // Patients.
    roles("post", "/v1/patients", DESK),
    roles("get", "/v1/patients", STAFF),
    roles("get", "/v1/patients/{mrn}", EVERYONE),
    roles("patch", "/v1/patients/{mrn}", DEMOGRAPHICS_WRITE),
    roles("get", "/v1/patients/{mrn}/timeline", EVERYONE),
    // A patient's items.
    roles("post", "/v1/patients/{mrn}/appointments", SCHEDULING),
    roles("get", "/v1/patients/{mrn}/appointments", EVERYONE),
    roles("get", "/v1/patients/{mrn}/appointments/{id}", EVERYONE),
    roles("patch", "/v1/patients/{mrn}/appointments/{id}", SCHEDULING),
    roles("post", "/v1/patients/{mrn}/clinical-records", CLINICAL),
    roles(
        "get",
        "/v1/patients/{mrn}/clinical-records",
        CLINICAL_AND_PATIENT,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/clinical-records/{id}",
        CLINICAL_AND_PATIENT,
    ),
    roles(
        "patch",
        "/v1/patients/{mrn}/clinical-records/{id}",
        CLINICAL,
    ),
    roles("post", "/v1/patients/{mrn}/documents", CLINICAL),
    roles("get", "/v1/patients/{mrn}/documents", CLINICAL_AND_PATIENT),
    roles(
        "get",
        "/v1/patients/{mrn}/documents/{id}",
        CLINICAL_AND_PATIENT,
    ),
    roles("patch", "/v1/patients/{mrn}/documents/{id}", CLINICAL),
    roles("post", "/v1/patients/{mrn}/documents/{id}/check", CLINICAL),
    roles(
        "get",
        "/v1/patients/{mrn}/documents/{id}/content",
        CLINICAL_AND_PATIENT,
    ),
    roles(
        "post",
        "/v1/patients/{mrn}/bills",
        &[ProviderAdmin, Billing],
    ),
    roles("get", "/v1/patients/{mrn}/bills", BILLS),
    roles("get", "/v1/patients/{mrn}/bills/{id}", BILLS),
    roles(
        "patch",
        "/v1/patients/{mrn}/bills/{id}",
        &[ProviderAdmin, Billing],
    ),
    rule(
        "put",
        "/v1/document-objects/{providerId}/documents/{mrn}/{id}",
        Admits::SignedUrl,
    ),
    rule(
        "get",
        "/v1/document-objects/{providerId}/documents/{mrn}/{id}",
        Admits::SignedUrl,
    ),
    // Clinicians, clinics and the lists across patients.
    roles("post", "/v1/clinicians", ADMIN),
    roles("get", "/v1/clinicians", EVERYONE),
    roles("get", "/v1/clinicians/{id}", EVERYONE),
    roles("patch", "/v1/clinicians/{id}", ADMIN),
    roles("get", "/v1/clinicians/{id}/appointments", SCHEDULES),
    roles("get", "/v1/clinicians/{id}/clinical-records", CLINICAL),
    roles("get", "/v1/clinics/{clinic}/appointments", SCHEDULES),
    roles("get", "/v1/clinics/{clinic}/patients", STAFF),
    roles("get", "/v1/clinical-records", CLINICAL),
    roles("get", "/v1/documents", CLINICAL),
    roles("get", "/v1/audit", ADMIN),
    // The platform.
    rule("post", "/v1/admin/providers", Admits::Operator),
    rule(
        "post",
        "/v1/admin/providers/{providerId}/keys",
        Admits::Operator,
    ),
    rule("get", "/v1/admin/dlq", Admits::Operator),
    rule("post", "/v1/admin/dlq/{jobId}/replay", Admits::Operator),
];

/// The rule of a request's route (`method` in any case; `route` as the router names it,
/// whatever its parameters are called), if the policy has one.
pub fn rule_for(method: &str, route: &str) -> Option<&'static Rule> {
    let shape = route_shape(route);
    POLICY
        .iter()
        .find(|rule| rule.method.eq_ignore_ascii_case(method) && route_shape(rule.route) == shape)
}

/// A route template with its parameter names left out (`/v1/uploads/{}`), so the router's
/// `{upload_id}` and the document's `{uploadId}` compare equal.
fn route_shape(route: &str) -> String {
    let mut shape = String::with_capacity(route.len());
    let mut in_parameter = false;
    for c in route.chars() {
        match c {
            '{' => {
                in_parameter = true;
                shape.push('{');
            }
            '}' => {
                in_parameter = false;
                shape.push('}');
            }
            _ if in_parameter => {}
            c => shape.push(c),
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admits(method: &str, route: &str, role: Role) -> bool {
        match rule_for(method, route).map(|rule| rule.admits) {
            Some(Admits::Roles(roles)) => roles.contains(&role),
            _ => false,
        }
    }

    #[test]
    fn every_route_has_exactly_one_rule_and_every_rule_a_route() {
        for (method, route) in crate::ROUTES {
            let rules = POLICY
                .iter()
                .filter(|rule| rule.method == *method && rule.route == *route)
                .count();
            assert_eq!(rules, 1, "{method} {route}");
        }
        for rule in POLICY {
            assert!(
                crate::ROUTES.contains(&(rule.method, rule.route)),
                "{} {} is not a route",
                rule.method,
                rule.route
            );
        }
        assert!(rule_for("GET", "/v1/uploads/{upload_id}").is_some());
        assert!(rule_for("DELETE", "/v1/uploads/{upload_id}").is_none());
    }

    #[test]
    fn no_clinical_content_reaches_front_desk_or_billing_and_the_operator_sees_no_patient() {
        for (method, route) in crate::ROUTES {
            let clinical = route.contains("clinical-records")
                || route.contains("/documents")
                || route.ends_with("/records") && route.starts_with("/v1/uploads");
            if clinical {
                for role in [Role::FrontDesk, Role::Billing] {
                    assert!(
                        !admits(method, route, role),
                        "{} {method} {route}",
                        role.as_str()
                    );
                }
            }
            if route.contains("patients") || route.contains("clinic") || route.contains("audit") {
                assert_ne!(
                    rule_for(method, route).map(|rule| rule.admits),
                    Some(Admits::Operator),
                    "{method} {route}"
                );
            }
        }
        // A patient changes no clinical record, bill or appointment, and lists no one else.
        for (method, route) in crate::ROUTES {
            if *method != "get" && route.starts_with("/v1/patients/{mrn}/") {
                assert!(!admits(method, route, Role::Patient), "{method} {route}");
            }
        }
        assert!(!admits("get", "/v1/patients", Role::Patient));
        assert!(!admits("get", "/v1/audit", Role::Clinician));
    }

    #[test]
    fn the_provider_admin_reaches_every_provider_route() {
        for rule in POLICY {
            if let Admits::Roles(roles) = rule.admits {
                assert!(
                    roles.contains(&Role::ProviderAdmin),
                    "{} {}",
                    rule.method,
                    rule.route
                );
            }
        }
    }
}

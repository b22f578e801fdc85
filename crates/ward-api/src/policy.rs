//! One policy, deny by default: which principal may call which route, in one table.
//!
//! Every route of the router has exactly one [`Rule`] (a test fails otherwise), and the
//! [`Principal`](crate::principal::Principal) extractor looks the request's route up before
//! any handler runs: a route without a rule is refused, a provider route refuses the
//! operator, an operator route refuses a provider's credentials, and a role the rule does
//! not name is refused with 403. Row-level rules (which patients a clinician reaches, a
//! patient's own partition) are applied where each read builds its key range, not here.
//!
//! The roles are those of SPEC section 5. A provider's full API key acts as
//! [`Role::ProviderAdmin`]; a scoped key (a machine client) has no role, only its
//! [`Scope`]s, and reaches a route whose rule names one of them. The credentials that carry
//! the other roles (users, OIDC tokens) come with the rest of the access issue; this table
//! already says what each may do.

pub use ward_domain::Role;

/// What a machine client's key may do (a scoped key has scopes, no role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Ask for upload URLs and send files.
    UploadsWrite,
    /// Follow uploads: status, report, error list.
    UploadsRead,
    /// Read CSV visit records.
    RecordsRead,
    /// Read patients' demographics and lists of patients.
    PatientsRead,
    /// Register patients and change their demographics.
    PatientsWrite,
    /// Read the EMR: appointments, clinical records, documents, bills, clinicians, the
    /// timeline and the lists across patients.
    EmrRead,
    /// Write the EMR.
    EmrWrite,
    /// Facility analytics: runs, results, ad hoc SQL.
    Analytics,
    /// Read the audit trail.
    AuditRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 9] = [
        Self::UploadsWrite,
        Self::UploadsRead,
        Self::RecordsRead,
        Self::PatientsRead,
        Self::PatientsWrite,
        Self::EmrRead,
        Self::EmrWrite,
        Self::Analytics,
        Self::AuditRead,
    ];

    /// The scope as keys name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UploadsWrite => "uploads:write",
            Self::UploadsRead => "uploads:read",
            Self::RecordsRead => "records:read",
            Self::PatientsRead => "patients:read",
            Self::PatientsWrite => "patients:write",
            Self::EmrRead => "emr:read",
            Self::EmrWrite => "emr:write",
            Self::Analytics => "analytics",
            Self::AuditRead => "audit:read",
        }
    }

    /// The scope named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
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
    /// Any authenticated caller (`GET /v1/me`).
    Authenticated,
    /// A provider's principals with one of these roles, and scoped keys with this scope
    /// (`None`: no scoped key).
    Provider {
        /// The roles it admits.
        roles: &'static [Role],
        /// The scope it admits.
        scope: Option<Scope>,
    },
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
/// Who reads every patient's demographics (the lists across patients).
const DEMOGRAPHICS: &[Role] = &[ProviderAdmin, FrontDesk, Billing];
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

const fn roles(
    method: &'static str,
    route: &'static str,
    roles: &'static [Role],
    scope: Scope,
) -> Rule {
    rule(
        method,
        route,
        Admits::Provider {
            roles,
            scope: Some(scope),
        },
    )
}

/// A route for roles only (no scoped key reaches it).
const fn roles_only(method: &'static str, route: &'static str, roles: &'static [Role]) -> Rule {
    rule(method, route, Admits::Provider { roles, scope: None })
}

/// The policy: one rule per route.
pub const POLICY: &[Rule] = &[
    rule("get", "/healthz", Admits::Anyone),
    rule("get", "/readyz", Admits::Anyone),
    rule("get", "/metrics", Admits::Anyone),
    rule("get", "/v1/openapi.json", Admits::Anyone),
    // CSV uploads and their visits.
    roles("post", "/v1/uploads", DESK, Scope::UploadsWrite),
    roles("get", "/v1/uploads", DESK, Scope::UploadsRead),
    roles("get", "/v1/uploads/{uploadId}", DESK, Scope::UploadsRead),
    roles(
        "get",
        "/v1/uploads/{uploadId}/errors.csv",
        DESK,
        Scope::UploadsRead,
    ),
    roles(
        "get",
        "/v1/uploads/{uploadId}/records",
        ADMIN,
        Scope::RecordsRead,
    ),
    rule(
        "put",
        "/v1/upload-objects/{providerId}/{uploadId}",
        Admits::SignedUrl,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/records",
        EVERYONE,
        Scope::RecordsRead,
    ),
    // Facility analytics.
    roles("post", "/v1/analytics/runs", ADMIN, Scope::Analytics),
    roles("get", "/v1/analytics/runs", ADMIN, Scope::Analytics),
    roles("get", "/v1/analytics/runs/{runId}", ADMIN, Scope::Analytics),
    roles(
        "get",
        "/v1/analytics/runs/{runId}/results/{file}",
        ADMIN,
        Scope::Analytics,
    ),
    roles("post", "/v1/analytics/sql", ADMIN, Scope::Analytics),
    // Patients.
    roles("post", "/v1/patients", DESK, Scope::PatientsWrite),
    roles("get", "/v1/patients", DEMOGRAPHICS, Scope::PatientsRead),
    roles("get", "/v1/patients/{mrn}", EVERYONE, Scope::PatientsRead),
    roles(
        "patch",
        "/v1/patients/{mrn}",
        DEMOGRAPHICS_WRITE,
        Scope::PatientsWrite,
    ),
    // Erasure: the provider's administrator only, never a scoped key.
    roles_only("delete", "/v1/patients/{mrn}", ADMIN),
    roles(
        "get",
        "/v1/patients/{mrn}/timeline",
        EVERYONE,
        Scope::EmrRead,
    ),
    // A patient's items.
    roles(
        "post",
        "/v1/patients/{mrn}/appointments",
        SCHEDULING,
        Scope::EmrWrite,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/appointments",
        EVERYONE,
        Scope::EmrRead,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/appointments/{id}",
        EVERYONE,
        Scope::EmrRead,
    ),
    roles(
        "patch",
        "/v1/patients/{mrn}/appointments/{id}",
        SCHEDULING,
        Scope::EmrWrite,
    ),
    roles(
        "post",
        "/v1/patients/{mrn}/clinical-records",
        CLINICAL,
        Scope::EmrWrite,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/clinical-records",
        CLINICAL_AND_PATIENT,
        Scope::EmrRead,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/clinical-records/{id}",
        CLINICAL_AND_PATIENT,
        Scope::EmrRead,
    ),
    roles(
        "patch",
        "/v1/patients/{mrn}/clinical-records/{id}",
        CLINICAL,
        Scope::EmrWrite,
    ),
    roles(
        "post",
        "/v1/patients/{mrn}/documents",
        CLINICAL,
        Scope::EmrWrite,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/documents",
        CLINICAL_AND_PATIENT,
        Scope::EmrRead,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/documents/{id}",
        CLINICAL_AND_PATIENT,
        Scope::EmrRead,
    ),
    roles(
        "patch",
        "/v1/patients/{mrn}/documents/{id}",
        CLINICAL,
        Scope::EmrWrite,
    ),
    roles(
        "post",
        "/v1/patients/{mrn}/documents/{id}/check",
        CLINICAL,
        Scope::EmrWrite,
    ),
    roles(
        "get",
        "/v1/patients/{mrn}/documents/{id}/content",
        CLINICAL_AND_PATIENT,
        Scope::EmrRead,
    ),
    roles(
        "post",
        "/v1/patients/{mrn}/bills",
        &[ProviderAdmin, Billing],
        Scope::EmrWrite,
    ),
    roles("get", "/v1/patients/{mrn}/bills", BILLS, Scope::EmrRead),
    roles(
        "get",
        "/v1/patients/{mrn}/bills/{id}",
        BILLS,
        Scope::EmrRead,
    ),
    roles(
        "patch",
        "/v1/patients/{mrn}/bills/{id}",
        &[ProviderAdmin, Billing],
        Scope::EmrWrite,
    ),
    rule(
        "put",
        "/v1/document-objects/{providerId}/documents/{patientKey}/{id}",
        Admits::SignedUrl,
    ),
    rule(
        "get",
        "/v1/document-objects/{providerId}/documents/{patientKey}/{id}",
        Admits::SignedUrl,
    ),
    // Clinicians, clinics and the lists across patients.
    roles("post", "/v1/clinicians", ADMIN, Scope::EmrWrite),
    roles("get", "/v1/clinicians", EVERYONE, Scope::EmrRead),
    roles("get", "/v1/clinicians/{id}", EVERYONE, Scope::EmrRead),
    roles("patch", "/v1/clinicians/{id}", ADMIN, Scope::EmrWrite),
    roles(
        "get",
        "/v1/clinicians/{id}/appointments",
        SCHEDULES,
        Scope::EmrRead,
    ),
    roles(
        "get",
        "/v1/clinicians/{id}/clinical-records",
        CLINICAL,
        Scope::EmrRead,
    ),
    roles(
        "get",
        "/v1/clinicians/{id}/patients",
        SCHEDULES,
        Scope::PatientsRead,
    ),
    // The lists across a provider's patients: not for clinicians (they list from their
    // own partition, above) nor patients.
    roles(
        "get",
        "/v1/clinics/{clinic}/appointments",
        DESK,
        Scope::EmrRead,
    ),
    roles(
        "get",
        "/v1/clinics/{clinic}/patients",
        DEMOGRAPHICS,
        Scope::PatientsRead,
    ),
    roles("get", "/v1/clinical-records", ADMIN, Scope::EmrRead),
    roles("get", "/v1/documents", ADMIN, Scope::EmrRead),
    roles("get", "/v1/audit", ADMIN, Scope::AuditRead),
    // Who the caller is; a patient's access log; a provider's users and keys.
    rule("get", "/v1/me", Admits::Authenticated),
    roles_only("get", "/v1/me/access-log", &[Patient]),
    rule("post", "/v1/login", Admits::Anyone),
    roles_only("post", "/v1/users", ADMIN),
    roles_only("get", "/v1/users", ADMIN),
    roles_only("get", "/v1/users/{userId}", ADMIN),
    roles_only("patch", "/v1/users/{userId}", ADMIN),
    roles_only("delete", "/v1/users/{userId}", ADMIN),
    // Break-glass: a clinician opens a grant; the administrator reviews them.
    roles_only("post", "/v1/patients/{mrn}/break-glass", &[Clinician]),
    roles("get", "/v1/break-glass", ADMIN, Scope::AuditRead),
    roles_only("post", "/v1/keys", ADMIN),
    roles_only("get", "/v1/keys", ADMIN),
    roles_only("delete", "/v1/keys/{keyId}", ADMIN),
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
            Some(Admits::Provider { roles, .. }) => roles.contains(&role),
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
    fn scoped_keys_reach_only_routes_of_their_scopes_and_never_the_keys() {
        for rule in POLICY {
            if rule.route.starts_with("/v1/keys") {
                assert!(
                    matches!(rule.admits, Admits::Provider { scope: None, .. }),
                    "{} {}",
                    rule.method,
                    rule.route
                );
            }
            if let Admits::Provider {
                scope: Some(scope), ..
            } = rule.admits
            {
                let writes = rule.method != "get";
                let write_scope = matches!(
                    scope,
                    Scope::UploadsWrite | Scope::PatientsWrite | Scope::EmrWrite | Scope::Analytics
                );
                assert!(
                    !writes || write_scope,
                    "{} {} with {scope:?}",
                    rule.method,
                    rule.route
                );
            }
        }
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("everything"), None);
    }

    /// Routes of one role's own: a patient's access log, a clinician's break-glass (the
    /// administrator reaches every patient anyway, and reads the audit trail).
    const PERSONAL: &[&str] = &["/v1/me/access-log", "/v1/patients/{mrn}/break-glass"];

    #[test]
    fn the_provider_admin_reaches_every_provider_route_but_the_personal_ones() {
        for rule in POLICY {
            if PERSONAL.contains(&rule.route) {
                assert!(
                    matches!(rule.admits, Admits::Provider { roles, scope: None } if roles.len() == 1),
                    "{}",
                    rule.route
                );
                continue;
            }
            if let Admits::Provider { roles, .. } = rule.admits {
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

//! Ward's HTTP API: the axum router, authentication, RFC 9457 errors, the OpenAPI document.
//!
//! Owns: turning HTTP requests into calls on the ingest pipeline and the table, and
//! answers into JSON. Deliberately does not: know which store or object store is behind
//! the ports (it never names redb or the AWS SDK), or log URIs (they can carry MRNs): logs
//! name the matched route template only.

mod admin;
mod analytics;
pub mod cursors;
mod documents;
mod emergency;
mod emr;
mod keys;
mod paging;
pub mod policy;
pub mod principal;
pub mod problem;
mod reads;
mod records;
pub mod signing;
mod uploads;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ward_ingest::IngestContext;
use ward_store::Table;

pub use problem::ApiError;
pub use signing::{ServerUploadUrls, UploadSigner};

/// The OpenAPI document served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Every route: method and path template, as in the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/uploads"),
    ("get", "/v1/uploads"),
    ("get", "/v1/uploads/{uploadId}"),
    ("get", "/v1/uploads/{uploadId}/errors.csv"),
    ("get", "/v1/uploads/{uploadId}/records"),
    ("put", "/v1/upload-objects/{providerId}/{uploadId}"),
    ("get", "/v1/patients/{mrn}/records"),
    ("post", "/v1/analytics/runs"),
    ("get", "/v1/analytics/runs"),
    ("get", "/v1/analytics/runs/{runId}"),
    ("get", "/v1/analytics/runs/{runId}/results/{file}"),
    ("post", "/v1/analytics/sql"),
    ("post", "/v1/patients"),
    ("get", "/v1/patients"),
    ("get", "/v1/patients/{mrn}"),
    ("patch", "/v1/patients/{mrn}"),
    ("delete", "/v1/patients/{mrn}"),
    ("get", "/v1/patients/{mrn}/timeline"),
    ("post", "/v1/patients/{mrn}/appointments"),
    ("get", "/v1/patients/{mrn}/appointments"),
    ("get", "/v1/patients/{mrn}/appointments/{id}"),
    ("patch", "/v1/patients/{mrn}/appointments/{id}"),
    ("post", "/v1/patients/{mrn}/clinical-records"),
    ("get", "/v1/patients/{mrn}/clinical-records"),
    ("get", "/v1/patients/{mrn}/clinical-records/{id}"),
    ("patch", "/v1/patients/{mrn}/clinical-records/{id}"),
    ("post", "/v1/patients/{mrn}/documents"),
    ("get", "/v1/patients/{mrn}/documents"),
    ("get", "/v1/patients/{mrn}/documents/{id}"),
    ("patch", "/v1/patients/{mrn}/documents/{id}"),
    ("post", "/v1/patients/{mrn}/documents/{id}/check"),
    ("get", "/v1/patients/{mrn}/documents/{id}/content"),
    ("post", "/v1/patients/{mrn}/bills"),
    ("get", "/v1/patients/{mrn}/bills"),
    ("get", "/v1/patients/{mrn}/bills/{id}"),
    ("patch", "/v1/patients/{mrn}/bills/{id}"),
    (
        "put",
        "/v1/document-objects/{providerId}/documents/{patientKey}/{id}",
    ),
    (
        "get",
        "/v1/document-objects/{providerId}/documents/{patientKey}/{id}",
    ),
    ("post", "/v1/clinicians"),
    ("get", "/v1/clinicians"),
    ("get", "/v1/clinicians/{id}"),
    ("patch", "/v1/clinicians/{id}"),
    ("get", "/v1/clinicians/{id}/appointments"),
    ("get", "/v1/clinicians/{id}/patients"),
    ("get", "/v1/clinicians/{id}/clinical-records"),
    ("get", "/v1/clinics/{clinic}/appointments"),
    ("get", "/v1/clinics/{clinic}/patients"),
    ("get", "/v1/clinical-records"),
    ("get", "/v1/documents"),
    ("get", "/v1/audit"),
    ("get", "/v1/me"),
    ("get", "/v1/me/access-log"),
    ("post", "/v1/login"),
    ("post", "/v1/users"),
    ("get", "/v1/users"),
    ("get", "/v1/users/{userId}"),
    ("patch", "/v1/users/{userId}"),
    ("delete", "/v1/users/{userId}"),
    ("post", "/v1/patients/{mrn}/break-glass"),
    ("get", "/v1/break-glass"),
    ("post", "/v1/keys"),
    ("get", "/v1/keys"),
    ("delete", "/v1/keys/{keyId}"),
    ("post", "/v1/admin/providers"),
    ("post", "/v1/admin/providers/{providerId}/keys"),
    ("get", "/v1/admin/dlq"),
    ("post", "/v1/admin/dlq/{jobId}/replay"),
];

/// Settings the API needs.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The base URL clients reach the server at (for upload URLs), e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// How long an upload URL stays valid.
    pub upload_url_ttl_seconds: i64,
    /// The largest file accepted, in bytes.
    pub max_upload_bytes: u64,
    /// How long a break-glass grant lasts, in minutes.
    pub break_glass_minutes: i64,
    /// How long a built-in user's token lives, in seconds.
    pub token_ttl_seconds: i64,
    /// The OpenID provider whose bearer tokens are accepted, if any.
    pub oidc: Option<ward_identity::OidcSettings>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            upload_url_ttl_seconds: 15 * 60,
            max_upload_bytes: 1024 * 1024 * 1024,
            break_glass_minutes: ward_emr::DEFAULT_BREAK_GLASS_MINUTES,
            token_ttl_seconds: ward_identity::tokens::TOKEN_TTL_SECONDS,
            oidc: None,
        }
    }
}

/// Shared state of all routes.
#[derive(Clone)]
pub struct AppState {
    /// The pipeline (table, objects, queue).
    pub ctx: Arc<IngestContext>,
    /// The table (same as `ctx.table`).
    pub table: Arc<dyn Table>,
    /// Providers and their API keys.
    pub tenants: ward_ports::Tenants,
    /// Every read of stored visits.
    pub visits: ward_ports::VisitRepository,
    /// Verifies the signed PUT endpoint's URLs; `None` where clients upload elsewhere (S3).
    pub signer: Option<UploadSigner>,
    /// Makes upload URLs.
    pub upload_urls: Arc<dyn ward_ports::UploadUrls>,
    /// SHA-256 hex of the operator key.
    pub operator_key_hash: String,
    /// Settings.
    pub settings: Arc<ApiSettings>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The EMR model (patients, clinicians, appointments, records, documents, bills).
    pub emr: ward_emr::Emr,
    /// People: built-in users, their logins and tokens, the OpenID provider.
    pub identity: ward_identity::Identity,
    /// Tags the page cursors clients get, and checks those they send.
    pub cursors: Arc<cursors::CursorSeal>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Prometheus counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_2xx: AtomicU64,
    requests_4xx: AtomicU64,
    requests_5xx: AtomicU64,
    uploads_received: AtomicU64,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    let mut emr_routes = Router::new()
        .route(
            "/v1/patients",
            post(emr::create_patient).get(emr::find_patients),
        )
        .route(
            "/v1/patients/{mrn}",
            get(emr::get_patient)
                .patch(emr::patch_patient)
                .delete(emr::erase_patient),
        )
        .route("/v1/patients/{mrn}/timeline", get(emr::timeline))
        .route(
            "/v1/patients/{mrn}/documents/{id}/check",
            post(documents::check),
        )
        .route(
            "/v1/patients/{mrn}/documents/{id}/content",
            get(documents::content),
        )
        .route(
            "/v1/document-objects/{provider_id}/documents/{patient_key}/{id}",
            put(documents::receive).get(documents::send),
        )
        .route(
            "/v1/clinicians",
            post(emr::create_clinician).get(emr::list_clinicians),
        )
        .route(
            "/v1/clinicians/{id}",
            get(emr::get_clinician).patch(emr::patch_clinician),
        )
        .route(
            "/v1/clinics/{clinic}/appointments",
            get(emr::clinic_appointments),
        )
        .route("/v1/clinics/{clinic}/patients", get(emr::clinic_patients))
        .route("/v1/clinicians/{id}/patients", get(emr::clinician_patients))
        .route("/v1/clinical-records", get(emr::records_by_type))
        .route("/v1/documents", get(emr::documents_by_type))
        .route("/v1/audit", get(emr::audit));
    for (segment, kind) in emr::PATIENT_COLLECTIONS {
        emr_routes = emr::collection_routes(emr_routes, segment, kind);
    }
    Router::new()
        .merge(emr_routes)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/uploads", post(uploads::create).get(uploads::list))
        .route("/v1/uploads/{upload_id}", get(uploads::show))
        .route(
            "/v1/uploads/{upload_id}/errors.csv",
            get(uploads::errors_csv),
        )
        .route("/v1/uploads/{upload_id}/records", get(records::by_upload))
        .route(
            "/v1/upload-objects/{provider_id}/{upload_id}",
            put(uploads::receive),
        )
        .route("/v1/patients/{mrn}/records", get(records::by_patient))
        .route(
            "/v1/analytics/runs",
            post(analytics::start).get(analytics::list),
        )
        .route("/v1/analytics/runs/{run_id}", get(analytics::show))
        .route(
            "/v1/analytics/runs/{run_id}/results/{file}",
            get(analytics::result_file),
        )
        .route("/v1/analytics/sql", post(analytics::sql))
        .route("/v1/me", get(keys::me))
        .route("/v1/me/access-log", get(emergency::access_log))
        .route("/v1/login", post(users::login))
        .route("/v1/users", post(users::create).get(users::list))
        .route(
            "/v1/users/{user_id}",
            get(users::show).patch(users::change).delete(users::delete),
        )
        .route("/v1/patients/{mrn}/break-glass", post(emergency::open))
        .route("/v1/break-glass", get(emergency::sessions))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{key_id}", axum::routing::delete(keys::revoke))
        .route("/v1/admin/providers", post(admin::create_provider))
        .route(
            "/v1/admin/providers/{provider_id}/keys",
            post(admin::rotate_key),
        )
        .route("/v1/admin/dlq", get(admin::list_dead))
        .route("/v1/admin/dlq/{job_id}/replay", post(admin::replay))
        .fallback(|| async { ApiError::NotFound("the route") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            cursors::sealed_cursors,
        ))
        .layer(middleware::from_fn(problem::problem_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let counter = match status.as_u16() {
        200..=399 => &state.metrics.requests_2xx,
        400..=499 => &state.metrics.requests_4xx,
        _ => &state.metrics.requests_5xx,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if status == axum::http::StatusCode::NOT_FOUND || status == axum::http::StatusCode::FORBIDDEN {
        tracing::warn!(%method, route, status = status.as_u16(), "request refused");
    } else {
        tracing::info!(%method, route, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    }
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    let probe = ward_store::Key::new("PLATFORM#READY", "PROBE");
    match state.table.get(&probe).await {
        Ok(_) => "ready".into_response(),
        Err(_) => ApiError::Unavailable.into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> String {
    let m = &state.metrics;
    format!(
        "# TYPE ward_http_requests_total counter\n\
         ward_http_requests_total{{class=\"2xx\"}} {}\n\
         ward_http_requests_total{{class=\"4xx\"}} {}\n\
         ward_http_requests_total{{class=\"5xx\"}} {}\n\
         # TYPE ward_uploads_received_total counter\n\
         ward_uploads_received_total {}\n\
         # TYPE ward_ingest_rows_total counter\n\
         ward_ingest_rows_total {}\n",
        m.requests_2xx.load(Ordering::Relaxed),
        m.requests_4xx.load(Ordering::Relaxed),
        m.requests_5xx.load(Ordering::Relaxed),
        m.uploads_received.load(Ordering::Relaxed),
        state.ctx.progress_rows.load(Ordering::Relaxed),
    )
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON,
    )
        .into_response()
}

//! The one API error type: every variant maps to a status and a stable problem `type` in
//! one `match` (RFC 9457 problem details). A 5xx body says nothing internal.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use ward_store::StoreError;

/// Everything a route can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown credentials.
    #[error("a valid API key is required (Authorization: Bearer KEY)")]
    Unauthorized,
    /// The caller is known, and the policy does not let it do this.
    #[error("this caller may not do this: {0}")]
    Forbidden(&'static str),
    /// The resource does not exist for this caller (also used for other providers' data).
    #[error("{0} was not found")]
    NotFound(&'static str),
    /// A request field is invalid.
    #[error("{field} {reason}")]
    Invalid {
        /// The field (query parameter, path segment or body field).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Several body fields are invalid; each is named.
    #[error("the request has {} invalid field(s)", .0.len())]
    Fields(Vec<ward_emr::FieldError>),
    /// `If-Match` names an older version.
    #[error(
        "the resource has changed since it was read (now version {current}); read it again and retry"
    )]
    PreconditionFailed {
        /// The stored version.
        current: i64,
    },
    /// An update without `If-Match`.
    #[error("updates need an If-Match header with the ETag of the version read")]
    PreconditionRequired,
    /// The upload URL's signature does not match.
    #[error("the upload URL's signature is not valid for this request")]
    BadSignature,
    /// The upload URL has expired.
    #[error("the upload URL has expired; ask for a new one")]
    UrlExpired,
    /// A file was already sent to this URL.
    #[error("a file was already uploaded to this URL; ask for a new one")]
    AlreadyUploaded,
    /// The body is larger than allowed.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The resource is not ready yet.
    #[error("{0}")]
    NotReady(&'static str),
    /// A conflicting resource exists.
    #[error("{0}")]
    Conflict(String),
    /// This build of Ward lacks the feature.
    #[error("{0}")]
    NotBuilt(&'static str),
    /// Ad hoc SQL that was refused, does not plan, or ran too long.
    #[error("{detail}")]
    Sql {
        /// The problem type's slug.
        kind: &'static str,
        /// Why, from the SQL engine.
        detail: String,
    },
    /// Too much of the caller's (or the server's) work is running; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// The body is not of a media type the route takes.
    #[error("the body must be sent as {0} (Content-Type)")]
    UnsupportedMediaType(&'static str),
    /// A login with a wrong provider, user name or password (never which).
    #[error("the provider, user name or password is wrong")]
    LoginFailed,
    /// Too many failed logins for the account or the address.
    #[error("too many failed logins; retry after {0} seconds")]
    LoginThrottled(i64),
    /// The patient was erased: its data is gone for good.
    #[error("the patient was erased ({0}); its records are gone for good")]
    Gone(String),
    /// A dependency is temporarily unavailable.
    #[error("the service is temporarily unavailable; try again")]
    Unavailable,
    /// Anything else; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            Self::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid-request"),
            Self::Fields(_) => (StatusCode::BAD_REQUEST, "invalid-request"),
            Self::PreconditionFailed { .. } => {
                (StatusCode::PRECONDITION_FAILED, "precondition-failed")
            }
            Self::PreconditionRequired => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition-required")
            }
            Self::BadSignature => (StatusCode::FORBIDDEN, "signature-invalid"),
            Self::UrlExpired => (StatusCode::FORBIDDEN, "url-expired"),
            Self::AlreadyUploaded => (StatusCode::CONFLICT, "already-uploaded"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "upload-too-large"),
            Self::NotReady(_) => (StatusCode::CONFLICT, "not-ready"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::NotBuilt(_) => (StatusCode::NOT_IMPLEMENTED, "not-built"),
            Self::Sql { kind, .. } if *kind == "sql-timeout" => {
                (StatusCode::UNPROCESSABLE_ENTITY, "sql-timeout")
            }
            Self::Sql { kind, .. } => (StatusCode::BAD_REQUEST, kind),
            Self::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            Self::LoginFailed => (StatusCode::UNAUTHORIZED, "login-failed"),
            Self::LoginThrottled(_) => (StatusCode::TOO_MANY_REQUESTS, "login-throttled"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// A field error.
    pub fn invalid(field: &'static str, reason: impl ToString) -> Self {
        Self::Invalid {
            field,
            reason: reason.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug) = self.status_and_type();
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut body = json!({
            "type": format!("urn:ward:problem:{slug}"),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": shortened(&self.to_string()),
        });
        match &self {
            Self::Invalid { field, reason } => {
                body["field"] = json!(field);
                body["errors"] = json!([{ "field": field, "reason": shortened(reason) }]);
            }
            Self::Fields(errors) => body["errors"] = json!(errors),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, Self::Busy(_) | Self::Unavailable) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if let Self::LoginThrottled(seconds) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds.max(&1).to_owned()),
            );
        }
        response
    }
}

impl From<ward_ports::TenantError> for ApiError {
    fn from(error: ward_ports::TenantError) -> Self {
        match error {
            ward_ports::TenantError::Exists(provider) => {
                Self::Conflict(format!("provider {provider} already exists"))
            }
            ward_ports::TenantError::NotFound => Self::NotFound("the provider"),
            ward_ports::TenantError::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidRequest(message) if message.contains("cursor") => {
                Self::invalid("cursor", "is not valid for this request")
            }
            StoreError::Unavailable(_) => Self::Unavailable,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<object_store::Error> for ApiError {
    fn from(error: object_store::Error) -> Self {
        Self::Internal(format!("object storage: {error}"))
    }
}

/// Refuses a body not sent as `application/json` or another `+json` type (a merge patch as
/// `application/merge-patch+json`) with 415.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let media_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media_type.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType("application/json")),
    }
}

/// The longest text of a framework error that a problem repeats (its `detail`).
const MAX_ECHOED_CHARS: usize = 300;

/// Makes every error answer a problem document: an answer of 400 or more whose body is not
/// one already (axum's own answers to a query string or path segment that does not parse,
/// a method a route does not take, a body it cannot read) gets one with the same status,
/// and keeps its headers (`Allow` on a 405). A 5xx body is replaced by a generic detail.
pub async fn problem_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let (slug, detail, field) = framework_problem(status, &method, &parts.headers, &text);
    let mut body = json!({
        "type": format!("urn:ward:problem:{slug}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(field) = field {
        body["errors"] = json!([{ "field": field, "reason": body["detail"] }]);
        body["field"] = json!(field);
    }
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// The problem type, detail and (where the text names one) field of a framework answer.
fn framework_problem(
    status: StatusCode,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    text: &str,
) -> (&'static str, String, Option<String>) {
    let text = shortened(text.trim());
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = headers
                .get(axum::http::header::ALLOW)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            (
                "method-not-allowed",
                format!("this route does not take {method}; it takes {allowed}"),
                None,
            )
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "the body must be sent as application/json (Content-Type)".into(),
            None,
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("too-large", "the request body is too large".into(), None)
        }
        status if status.is_server_error() => ("internal", "internal error".into(), None),
        StatusCode::NOT_FOUND => ("not-found", "the route was not found".into(), None),
        _ => {
            if let Some(rest) = text.strip_prefix("Failed to deserialize query string: ") {
                let (field, reason) = rest.split_once(": ").unwrap_or(("query", rest));
                let field = field.to_owned();
                (
                    "invalid-request",
                    format!("query parameter {field}: {reason}"),
                    Some(field),
                )
            } else if text.contains("URL") || text.contains("path") {
                (
                    "invalid-request",
                    format!("a path segment is not valid: {text}"),
                    Some("path".into()),
                )
            } else if text.is_empty() {
                ("invalid-request", "the request is not valid".into(), None)
            } else {
                ("invalid-request", first_lowercase(&text), None)
            }
        }
    }
}

fn first_lowercase(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `text` cut to [`MAX_ECHOED_CHARS`] characters, saying so.
pub fn shortened(text: &str) -> String {
    if text.chars().count() <= MAX_ECHOED_CHARS {
        return text.to_owned();
    }
    let kept: String = text.chars().take(MAX_ECHOED_CHARS).collect();
    format!("{kept}... (shortened)")
}

/// Reads the small JSON body of a non-EMR request (an upload, a run, a query, a provider)
/// as `T`: `None` when the body is empty (no bytes at all) and `optional`; sent as JSON (else 415); no field
/// may be `null` (leave it out for its default: the document's types have no null); a
/// number written with a zero fraction (`6.0`) is that integer.
pub(crate) fn small_json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    optional: bool,
    what: &str,
) -> Result<Option<T>, ApiError> {
    if optional && body.is_empty() {
        return Ok(None);
    }
    require_json(headers)?;
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("is not valid JSON: {e}")))?;
    let serde_json::Value::Object(fields) = &mut value else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    {
        for (name, field) in fields.iter_mut() {
            if field.is_null() {
                return Err(ApiError::Invalid {
                    field: "body",
                    reason: format!("field {name} must not be null (leave it out for its default)"),
                });
            }
            if let Some(number) = field.as_f64()
                && !field.is_i64()
                && !field.is_u64()
                && number.fract() == 0.0
                && number.abs() < 9.0e15
            {
                *field = serde_json::Value::from(number as i64);
            }
        }
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ApiError::invalid("body", format!("is not a valid {what}: {e}")))
}

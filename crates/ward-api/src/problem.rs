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
            "detail": self.to_string(),
        });
        match &self {
            Self::Invalid { field, reason } => {
                body["field"] = json!(field);
                body["errors"] = json!([{ "field": field, "reason": reason }]);
            }
            Self::Fields(errors) => body["errors"] = json!(errors),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        response
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

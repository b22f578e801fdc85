//! Paging parameters: `limit` and an opaque `cursor`, read the same way on every list.

use serde::Deserialize;

use crate::ApiError;

#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
}

/// Reads an opaque page cursor from a query parameter.
pub(crate) fn cursor_of(token: Option<&str>) -> Result<Option<ward_store::Cursor>, ApiError> {
    token
        .map(ward_store::Cursor::decode)
        .transpose()
        .map_err(|_| ApiError::invalid("cursor", "is not valid for this request"))
}

pub(crate) fn limit_of(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        limit @ 1..=1000 => Ok(limit),
        _ => Err(ApiError::invalid("limit", "must be between 1 and 1000")),
    }
}

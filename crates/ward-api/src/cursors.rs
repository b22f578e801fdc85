//! Page cursors as clients see them: authenticated, and bound to the list they came from.
//!
//! Inside Ward a cursor is the store's (the last key of a page, base64url: it names
//! patients by pseudonym only). Every list answer's `nextCursor` leaves as
//! `{cursor}.{tag}`, where the tag is a truncated HMAC-SHA256, under a platform secret, of
//! the request path and the cursor; a `cursor` parameter comes back in only if its tag is
//! right for this path. A cursor a client made up, changed, or took from another list (of
//! another patient, another route) is refused as invalid before any handler reads it.
//! One layer does it for every route, so no list can forget it.

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::principal::Principal;
use crate::{ApiError, AppState};

/// Bytes of the tag (128 bits).
const TAG_BYTES: usize = 16;

/// The query parameter and the answer field that carry cursors.
const PARAMETER: &str = "cursor";
const FIELD: &str = "nextCursor";

/// The largest list answer the layer reads to tag its cursor.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Tags and checks cursors with one secret.
#[derive(Clone)]
pub struct CursorSeal {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for CursorSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSeal").finish_non_exhaustive()
    }
}

impl CursorSeal {
    /// A seal keyed by `secret` (a platform secret every instance shares, so a cursor
    /// from one server is good at another).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"),
        }
    }

    fn mac(&self, path: &str, cursor: &str) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(b"ward/cursor/v1\0");
        mac.update(path.as_bytes());
        mac.update(b"\0");
        mac.update(cursor.as_bytes());
        mac
    }

    /// `cursor` as a client sees it, for the list at `path`.
    pub fn seal(&self, path: &str, cursor: &str) -> String {
        let tag = self.mac(path, cursor).finalize().into_bytes();
        format!("{cursor}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]))
    }

    /// The cursor inside `token`, if Ward sealed it for the list at `path`.
    pub fn open<'a>(&self, path: &str, token: &'a str) -> Option<&'a str> {
        let (cursor, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        (tag.len() == TAG_BYTES)
            .then_some(())
            .and_then(|()| self.mac(path, cursor).verify_truncated_left(&tag).ok())
            .map(|()| cursor)
    }
}

/// The layer: opens the `cursor` parameter of a request, seals the `nextCursor` of its
/// answer.
pub(crate) async fn sealed_cursors(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    // A path no route serves answers 404, cursor or not.
    let routed = request.extensions().get::<MatchedPath>().is_some();
    if routed
        && let Some(query) = request.uri().query()
        && query.split('&').any(|pair| pair.starts_with("cursor="))
    {
        match opened_query(&state.cursors, &path, query)
            .and_then(|query| with_query(request.uri(), &query))
        {
            Some(uri) => *request.uri_mut() = uri,
            None => return invalid(&state, request).await,
        }
    }
    let is_read = request.method() == Method::GET;
    let response = next.run(request).await;
    if !is_read || response.status() != StatusCode::OK || !is_json(&response) {
        return response;
    }
    seal_answer(&state.cursors, &path, response).await
}

/// A bad cursor's answer: 400, but only to a caller the route admits. Anyone else gets
/// the route's own refusal (401 or 403), as without a cursor: a cursor check must not
/// answer before the credentials are checked.
async fn invalid(state: &AppState, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if let Err(refusal) = Principal::from_request_parts(&mut parts, state).await {
        return refusal.into_response();
    }
    ApiError::invalid(PARAMETER, "is not valid for this request").into_response()
}

/// The query with its cursor opened; `None` if a cursor is not Ward's for this path.
fn opened_query(seal: &CursorSeal, path: &str, query: &str) -> Option<String> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == PARAMETER && !value.is_empty() {
            out.append_pair(&name, seal.open(path, &value)?);
        } else {
            out.append_pair(&name, &value);
        }
    }
    Some(out.finish())
}

fn with_query(uri: &Uri, query: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    let path_and_query = format!("{}?{query}", uri.path());
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The answer with its `nextCursor` sealed. Only whole bodies (what a list answers) are
/// read; a streamed one passes untouched.
async fn seal_answer(seal: &CursorSeal, path: &str, response: Response) -> Response {
    use axum::body::HttpBody as _;
    let (parts, body) = response.into_parts();
    if body
        .size_hint()
        .exact()
        .is_none_or(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return ApiError::Internal("a list answer could not be read".into()).into_response();
    };
    let needle = format!("\"{FIELD}\":\"");
    if !bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
    {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(next) = answer.get_mut(FIELD)
        && let Some(cursor) = next.as_str()
    {
        *next = serde_json::Value::String(seal.seal(path, cursor));
    }
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(answer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_unchanged_and_on_its_own_list() {
        let seal = CursorSeal::new(&[9; 32]);
        let path = "/v1/patients/MRN1/appointments";
        let token = seal.seal(path, "QVBQVCMy");
        assert!(token.starts_with("QVBQVCMy."));
        assert_eq!(seal.open(path, &token), Some("QVBQVCMy"));
        // Another list, another secret, another cursor under the same tag, a changed or
        // cut tag, no tag.
        assert_eq!(seal.open("/v1/patients/MRN2/appointments", &token), None);
        assert_eq!(CursorSeal::new(&[8; 32]).open(path, &token), None);
        let (_, tag) = token.rsplit_once('.').unwrap();
        assert_eq!(seal.open(path, &format!("QVBQVCMz.{tag}")), None);
        let mut changed = token.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            seal.open(path, std::str::from_utf8(&changed).unwrap()),
            None
        );
        assert_eq!(seal.open(path, &token[..token.len() - 2]), None);
        assert_eq!(seal.open(path, "QVBQVCMy"), None);
        assert_eq!(seal.open(path, ""), None);
    }

    #[test]
    fn a_query_keeps_its_other_parameters_and_loses_a_bad_cursor() {
        let seal = CursorSeal::new(&[9; 32]);
        let token = seal.seal("/v1/uploads", "abc");
        let query = format!("limit=5&cursor={token}&order=desc");
        assert_eq!(
            opened_query(&seal, "/v1/uploads", &query).as_deref(),
            Some("limit=5&cursor=abc&order=desc")
        );
        assert_eq!(opened_query(&seal, "/v1/uploads", "cursor=abc"), None);
        // An empty cursor is the first page.
        assert_eq!(
            opened_query(&seal, "/v1/uploads", "cursor=&limit=1").as_deref(),
            Some("cursor=&limit=1")
        );
    }
}

//! Built-in users: the login that gives a short-lived token (`POST /v1/login`), and the
//! provider administrator's user routes (`/v1/users`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use ward_domain::{Link, Role, UserId, UtcInstant};
use ward_identity::{LoginError, User, UserChange, UserError, password};

use crate::principal::{ClientAddress, Principal};
use crate::problem::small_json_body;
use crate::reads::audit_admin;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoginBody {
    provider_id: String,
    user_id: String,
    password: String,
}

/// `POST /v1/login`: a built-in user's password for a short-lived bearer token.
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: LoginBody = small_json_body(&headers, &body, false, "login")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let now = UtcInstant::now();
    let result = state
        .identity
        .logins
        .login(
            &body.provider_id,
            &body.user_id,
            &body.password,
            address,
            now.unix_millis(),
        )
        .await;
    // A login of a known user is an audit event, of that user (an unknown provider or
    // user has no trail to write to).
    let attempt = match &result {
        Ok((_, user)) => Some((user, "SUCCESS")),
        Err(LoginError::WrongPassword(user)) => Some((user.as_ref(), "WRONG_PASSWORD")),
        Err(_) => None,
    };
    if let Some((user, outcome)) = attempt {
        let mut actor = ward_emr::Actor::provider_wide(
            user.provider.clone(),
            format!("user:{}", user.id),
            Some(user.role),
            "password",
        );
        actor.client_address = address.map(|ip| ip.to_string());
        state
            .emr
            .audit_log()
            .record(actor.event("LOGIN", "USER", Some(user.id.as_str()), None, outcome))
            .await;
    }
    match result {
        Ok((issued, _)) => Ok(Json(json!({
            "accessToken": issued.token,
            "tokenType": "Bearer",
            "expiresIn": issued.expires_at - now.unix_seconds(),
            "expiresAt": instant(issued.expires_at),
        }))
        .into_response()),
        Err(LoginError::Invalid | LoginError::WrongPassword(_)) => {
            tracing::warn!("login refused");
            Err(ApiError::LoginFailed)
        }
        Err(LoginError::Throttled(seconds)) => {
            tracing::warn!(retry_after = seconds, "login throttled");
            Err(ApiError::LoginThrottled(seconds))
        }
        Err(LoginError::Store(error)) => Err(error.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewUser {
    user_id: String,
    role: String,
    clinician_id: Option<String>,
    mrn: Option<String>,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ChangedUser {
    role: Option<String>,
    clinician_id: Option<String>,
    mrn: Option<String>,
    password: Option<String>,
    disabled: Option<bool>,
}

/// `POST /v1/users`: a built-in user of the caller's provider.
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    let body: NewUser = small_json_body(&headers, &body, false, "user")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let id = UserId::parse(&body.user_id).map_err(|e| ApiError::invalid("userId", e))?;
    let (role, link) = role_and_link(
        &body.role,
        body.clinician_id.as_deref(),
        body.mrn.as_deref(),
    )?;
    let hash = password::hash(&body.password)
        .await
        .map_err(|e| ApiError::invalid("password", e))?;
    let now = UtcInstant::now().unix_seconds();
    let user = state
        .identity
        .users
        .create(&provider, &id, role, link, hash, now)
        .await
        .map_err(user_error)?;
    // A user id can be a person's name: logs keep to the provider and the role (the audit
    // trail names the user).
    tracing::info!(provider_id = %provider, role = role.as_str(), "user created");
    audit_admin(&state, &principal, "CREATE", "USER", user.id.as_str()).await?;
    Ok((StatusCode::CREATED, Json(user_view(&user))).into_response())
}

/// `GET /v1/users`: the provider's users (never their hashes).
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let users = state.identity.users.list(&provider).await?;
    Ok(Json(
        json!({ "users": users.iter().map(user_view).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/users/{userId}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let id = UserId::parse(&user_id).map_err(|_| ApiError::NotFound("the user"))?;
    let user = state
        .identity
        .users
        .get(&provider, &id)
        .await?
        .ok_or(ApiError::NotFound("the user"))?;
    Ok(Json(user_view(&user)))
}

/// `PATCH /v1/users/{userId}`: a new role (with its link), password, or disabled flag.
pub(crate) async fn change(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Json_>, ApiError> {
    let provider = principal.provider()?.clone();
    let id = UserId::parse(&user_id).map_err(|_| ApiError::NotFound("the user"))?;
    let body: ChangedUser = small_json_body(&headers, &body, false, "user change")?
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let role = match &body.role {
        Some(role) => Some(role_and_link(
            role,
            body.clinician_id.as_deref(),
            body.mrn.as_deref(),
        )?),
        None if body.clinician_id.is_some() || body.mrn.is_some() => {
            return Err(ApiError::invalid(
                "role",
                "give the role with the clinician id or MRN it is linked to",
            ));
        }
        None => None,
    };
    let password_hash = match &body.password {
        Some(password) => Some(
            password::hash(password)
                .await
                .map_err(|e| ApiError::invalid("password", e))?,
        ),
        None => None,
    };
    let change = UserChange {
        role,
        password_hash,
        disabled: body.disabled,
    };
    let user = state
        .identity
        .users
        .update(&provider, &id, change)
        .await
        .map_err(user_error)?;
    tracing::info!(provider_id = %provider, role = user.role.as_str(), "user changed");
    audit_admin(&state, &principal, "UPDATE", "USER", user.id.as_str()).await?;
    Ok(Json(user_view(&user)))
}

/// `DELETE /v1/users/{userId}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let provider = principal.provider()?.clone();
    let id = UserId::parse(&user_id).map_err(|_| ApiError::NotFound("the user"))?;
    if !state.identity.users.delete(&provider, &id).await? {
        return Err(ApiError::NotFound("the user"));
    }
    tracing::info!(provider_id = %provider, "user deleted");
    audit_admin(&state, &principal, "DELETE", "USER", id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn role_and_link(
    role: &str,
    clinician: Option<&str>,
    mrn: Option<&str>,
) -> Result<(Role, Link), ApiError> {
    let role = Role::parse(role).ok_or_else(|| {
        let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        ApiError::invalid("role", format!("is not a role; use {}", known.join(", ")))
    })?;
    let link = Link::from_parts(clinician, mrn)
        .map_err(|(field, reason)| ApiError::invalid(field, reason))?;
    role.check_link(&link)
        .map_err(|reason| ApiError::invalid("role", reason))?;
    Ok((role, link))
}

fn user_error(error: UserError) -> ApiError {
    match error {
        UserError::Exists => ApiError::Conflict("a user with this id already exists".into()),
        UserError::NotFound => ApiError::NotFound("the user"),
        UserError::Link(reason) => ApiError::invalid("role", reason),
        UserError::Changed => ApiError::Conflict(error.to_string()),
        UserError::Store(error) => error.into(),
    }
}

fn instant(seconds: i64) -> String {
    UtcInstant::from_unix_nanos(i128::from(seconds) * 1_000_000_000).rfc3339_seconds()
}

fn user_view(user: &User) -> Json_ {
    json!({
        "userId": user.id.as_str(),
        "role": user.role.as_str(),
        "clinicianId": user.link.clinician().map(|id| id.as_str()),
        "mrn": user.link.mrn().map(|mrn| mrn.as_str()),
        "disabled": user.disabled,
        "createdAt": instant(user.created_at),
        "failedLogins": user.failed_logins,
    })
}

//! The one place where errors become responses.
//!
//! One family of errors per kind of endpoint:
//! - [`ApiError`] on `/oauth2/*` (RFC 6749 JSON) and protected resources (RFC 6750 challenges), and as a
//!   [`tonic::Status`] on RPCs, which the gRPC services return directly and the Connect layer maps to its JSON
//!   error form;
//! - [`PageError`] on browser routes (login, authorize): an HTML page.
//!
//! HTTP statuses are decided here, not in core: [`oauth_status`] maps an RFC 6749 error code.
//!
//! UNAUTHENTICATED is reserved for missing, invalid or expired credentials: both Flyte SDKs start
//! a (possibly browser) login when they see it, and the `flyte` SDK does the same for any message
//! containing "unauthorized" or "unauthenticated", so no other error uses that code or those words.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flyteauth_core::grant::ClientAuthError;
use flyteauth_core::oauth::{ErrorCode, OAuthError};
use flyteauth_core::token::ValidationError;
use serde::Serialize;

mod page;
pub use page::PageError;

/// Why a request carried no usable credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialProblem {
    /// No bearer token in any accepted header.
    Missing,
    /// A credential header was present but is not `Bearer <token>`.
    MalformedHeader,
    /// The token failed validation.
    Invalid(ValidationError),
}

impl CredentialProblem {
    /// Short, client-safe description.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "no bearer token was presented",
            Self::MalformedHeader => "the credential header is not of the form 'Bearer <token>'",
            Self::Invalid(ValidationError::Expired) => "the access token has expired",
            Self::Invalid(ValidationError::NotYetValid) => "the access token is not valid yet",
            Self::Invalid(ValidationError::WrongAudience) => {
                "the access token was issued for another audience"
            }
            Self::Invalid(ValidationError::WrongIssuer) => {
                "the access token was issued by another issuer"
            }
            Self::Invalid(_) => "the access token is invalid",
        }
    }

    /// Metric label for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MalformedHeader => "malformed_header",
            Self::Invalid(e) => e.reason(),
        }
    }
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Missing, invalid or expired credentials on a protected resource.
    #[error("{}", .0.description())]
    Credentials(CredentialProblem),
    /// Valid credentials without the scope the resource needs.
    #[error("the access token lacks the scope '{0}' this call requires")]
    InsufficientScope(&'static str),
    /// An OAuth 2.0 protocol error from `/oauth2/*` (RFC 6749 §5.2).
    #[error("{0}")]
    OAuth(OAuthError),
    /// The client-authentication failure of the token endpoint; `basic` says whether the client
    /// tried HTTP Basic, in which case RFC 6749 asks for a `WWW-Authenticate` challenge.
    #[error("client authentication failed")]
    ClientAuthentication {
        /// The client used the `Authorization: Basic` header.
        basic: bool,
    },
    /// The caller is known but may not do this (not a missing scope: that is [`ApiError::InsufficientScope`]).
    #[error("{0}")]
    PermissionDenied(String),
    /// A field of the request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// No such thing, or not one the caller may see (the answer does not tell which).
    #[error("{0}")]
    NotFound(String),
    /// A dependency (database, key material) failed; the detail is logged, never returned.
    #[error("internal error")]
    Internal(String),
    /// Too many failed authentications from the caller's address (or of this client from it); nothing was
    /// checked.
    #[error("too many failed authentications; try again in {retry_after} s")]
    RateLimited {
        /// Seconds until the next attempt may be made.
        retry_after: u64,
    },
    /// Too many secret checks are waiting already; try again shortly.
    #[error("the server is busy; try again in {retry_after} s")]
    Busy {
        /// Seconds after which trying again may work.
        retry_after: u64,
    },
    /// The audit event of a credential could not be committed in time, so the credential is withheld (a token
    /// is never handed out without its `token.issued` row).
    #[error("the audit trail cannot be written at the moment; try again shortly")]
    AuditUnavailable(#[from] crate::audit::AuditError),
}

/// `Retry-After` of [`ApiError::AuditUnavailable`]: about the writer's own wait, the time a database hiccup
/// takes to clear or not.
pub const AUDIT_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    /// An internal error whose detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    fn log_internal(&self) {
        if let Self::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed with an internal error");
        }
    }
}

/// `message` with the words that make the Flyte SDKs start a login defused: messages of the request errors may
/// quote what the client sent (an app named `unauthorized` is a valid client id).
fn without_login_words(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if !(lower.contains("unauthorized") || lower.contains("unauthenticated")) {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len() + 4);
    let mut rest = message;
    while let Some(start) = rest.to_ascii_lowercase().find("unauth") {
        // "un-auth…" reads the same to a person and no longer matches either word.
        out.push_str(&rest[..start + 2]);
        out.push('-');
        rest = &rest[start + 2..];
    }
    out.push_str(rest);
    out
}

impl From<ClientAuthError> for ApiError {
    fn from(e: ClientAuthError) -> Self {
        match e {
            // RFC 6749 §5.2: unreadable Basic credentials are a failed client authentication, with a challenge.
            ClientAuthError::MalformedBasic => Self::ClientAuthentication { basic: true },
            other => Self::OAuth(other.oauth_error()),
        }
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

/// RFC 6749 §5.2 error body.
#[derive(Serialize)]
struct OAuthErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    error_description: &'a str,
}

/// JSON body of errors on non-OAuth HTTP resources such as `/me`.
#[derive(Serialize)]
struct ResourceErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// The HTTP status of an OAuth error response with `code`: 401 for `invalid_client` (RFC 6749 §5.2), 500 for
/// `server_error`, 503 for `temporarily_unavailable`, 400 otherwise.
pub fn oauth_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Renders an RFC 6749 error response with the no-store headers the spec requires.
pub fn oauth_error_response(code: ErrorCode, description: &str) -> Response {
    let status = oauth_status(code);
    let body = OAuthErrorBody {
        error: code.as_str(),
        error_description: description,
    };
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

/// Marks a response as uncacheable (RFC 6749 §5.1).
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn bearer_challenge(problem: &CredentialProblem) -> HeaderValue {
    match problem {
        // RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
        CredentialProblem::Missing => HeaderValue::from_static("Bearer realm=\"flyteauth\""),
        CredentialProblem::MalformedHeader => HeaderValue::from_static(
            "Bearer realm=\"flyteauth\", error=\"invalid_request\", error_description=\"malformed authorization header\"",
        ),
        CredentialProblem::Invalid(_) => {
            HeaderValue::from_static("Bearer realm=\"flyteauth\", error=\"invalid_token\"")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_internal();
        match &self {
            Self::Credentials(problem) => {
                let error = match problem {
                    CredentialProblem::MalformedHeader => "invalid_request",
                    _ => "invalid_token",
                };
                let body = ResourceErrorBody {
                    error,
                    error_description: problem.description(),
                };
                let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, bearer_challenge(problem));
                response
            }
            Self::InsufficientScope(scope) => {
                let description = format!("the access token lacks the scope '{scope}'");
                let body = ResourceErrorBody {
                    error: "insufficient_scope",
                    error_description: &description,
                };
                let mut response = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
                let challenge = format!(
                    "Bearer realm=\"flyteauth\", error=\"insufficient_scope\", scope=\"{scope}\""
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response
            }
            Self::OAuth(e) => oauth_error_response(e.code, &e.description),
            Self::ClientAuthentication { basic } => {
                let mut response =
                    oauth_error_response(ErrorCode::InvalidClient, "client authentication failed");
                if *basic {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"flyteauth\""),
                    );
                }
                response
            }
            Self::PermissionDenied(m) => request_error(StatusCode::FORBIDDEN, "forbidden", m),
            Self::InvalidArgument(m) => {
                request_error(StatusCode::BAD_REQUEST, "invalid_argument", m)
            }
            Self::AlreadyExists(m) => request_error(StatusCode::CONFLICT, "already_exists", m),
            Self::NotFound(m) => request_error(StatusCode::NOT_FOUND, "not_found", m),
            Self::Internal(_) => oauth_error_response(
                ErrorCode::ServerError,
                "the server could not complete the request",
            ),
            // RFC 6749 has no code for a rate limit; `temporarily_unavailable` with 429 says "not now, not your
            // request's fault" to clients that only read the body.
            Self::RateLimited { retry_after } => {
                let mut response = oauth_error_response(
                    ErrorCode::TemporarilyUnavailable,
                    &format!(
                        "too many failed client authentications from this address; try again in {retry_after} s"
                    ),
                );
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                retry_after_header(&mut response, *retry_after);
                response
            }
            Self::Busy { retry_after } => {
                let mut response = oauth_error_response(
                    ErrorCode::TemporarilyUnavailable,
                    "the server is busy checking other credentials; try again shortly",
                );
                retry_after_header(&mut response, *retry_after);
                response
            }
            // RFC 6749 §5.2 `temporarily_unavailable`, status 503: the request was fine, the server could not
            // keep its record of the answer.
            Self::AuditUnavailable(_) => {
                let mut response = oauth_error_response(
                    ErrorCode::TemporarilyUnavailable,
                    "the server cannot record the issuance at the moment; try again shortly",
                );
                retry_after_header(&mut response, AUDIT_RETRY_AFTER_SECS);
                response
            }
        }
    }
}

/// Sets `Retry-After` to `secs` seconds.
pub fn retry_after_header(response: &mut Response, secs: u64) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

fn request_error(status: StatusCode, error: &str, message: &str) -> Response {
    let description = without_login_words(message);
    let body = ResourceErrorBody {
        error,
        error_description: &description,
    };
    (status, axum::Json(body)).into_response()
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.log_internal();
        match &e {
            ApiError::Credentials(problem) => tonic::Status::unauthenticated(problem.description()),
            // Not UNAUTHENTICATED: the caller is known, re-running a login would not help.
            ApiError::InsufficientScope(_) => tonic::Status::permission_denied(e.to_string()),
            ApiError::OAuth(o) => tonic::Status::invalid_argument(o.description.to_string()),
            ApiError::ClientAuthentication { .. } => {
                tonic::Status::invalid_argument("client authentication failed")
            }
            ApiError::PermissionDenied(m) => {
                tonic::Status::permission_denied(without_login_words(m))
            }
            ApiError::InvalidArgument(m) => tonic::Status::invalid_argument(without_login_words(m)),
            ApiError::AlreadyExists(m) => tonic::Status::already_exists(without_login_words(m)),
            ApiError::NotFound(m) => tonic::Status::not_found(without_login_words(m)),
            ApiError::Internal(_) => {
                tonic::Status::internal("the server could not complete the request")
            }
            ApiError::RateLimited { .. } => tonic::Status::resource_exhausted(e.to_string()),
            ApiError::Busy { .. } | ApiError::AuditUnavailable(_) => {
                tonic::Status::unavailable(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_non_credential_error_uses_words_that_trigger_a_login() {
        let errors = [
            ApiError::InsufficientScope("all"),
            ApiError::internal("db down"),
            ApiError::ClientAuthentication { basic: true },
            ApiError::PermissionDenied("no".into()),
            ApiError::InvalidArgument("client_id: 'Unauthorized' is not a slug".into()),
            ApiError::AlreadyExists("an app 'unauthenticated-bot' exists".into()),
            ApiError::NotFound("no app 'x-UNAUTHORIZED'".into()),
            ApiError::OAuth(OAuthError {
                code: ErrorCode::InvalidScope,
                description: "scope 'x' is not allowed".into(),
            }),
        ];
        for e in errors {
            let status = tonic::Status::from(e);
            assert_ne!(status.code(), tonic::Code::Unauthenticated);
            assert_ne!(status.code(), tonic::Code::Unknown);
            let message = status.message().to_lowercase();
            assert!(!message.contains("unauthorized"), "{message}");
            assert!(!message.contains("unauthenticated"), "{message}");
        }
    }

    #[test]
    fn credential_errors_are_unauthenticated_with_a_bearer_challenge() {
        for problem in [
            CredentialProblem::Missing,
            CredentialProblem::MalformedHeader,
            CredentialProblem::Invalid(ValidationError::Expired),
        ] {
            let status = tonic::Status::from(ApiError::Credentials(problem));
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            let response = ApiError::Credentials(problem).into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
    }

    #[test]
    fn oauth_codes_get_their_rfc_6749_statuses() {
        for (code, status) in [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::InvalidClient, 401),
            (ErrorCode::InvalidGrant, 400),
            (ErrorCode::UnauthorizedClient, 400),
            (ErrorCode::UnsupportedGrantType, 400),
            (ErrorCode::InvalidScope, 400),
            (ErrorCode::InvalidTarget, 400),
            (ErrorCode::ServerError, 500),
            (ErrorCode::TemporarilyUnavailable, 503),
        ] {
            assert_eq!(oauth_status(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn request_errors_get_their_codes() {
        for (e, code, http) in [
            (
                ApiError::PermissionDenied("p".into()),
                tonic::Code::PermissionDenied,
                403,
            ),
            (
                ApiError::InvalidArgument("i".into()),
                tonic::Code::InvalidArgument,
                400,
            ),
            (
                ApiError::AlreadyExists("a".into()),
                tonic::Code::AlreadyExists,
                409,
            ),
            (ApiError::NotFound("n".into()), tonic::Code::NotFound, 404),
        ] {
            let status = e.to_string();
            let response = match &e {
                ApiError::PermissionDenied(m) => ApiError::PermissionDenied(m.clone()),
                ApiError::InvalidArgument(m) => ApiError::InvalidArgument(m.clone()),
                ApiError::AlreadyExists(m) => ApiError::AlreadyExists(m.clone()),
                ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
                _ => unreachable!(),
            }
            .into_response();
            assert_eq!(response.status().as_u16(), http, "{status}");
            assert_eq!(tonic::Status::from(e).code(), code);
        }
        assert_eq!(without_login_words("x Unauthorized y"), "x Un-authorized y");
        assert_eq!(without_login_words("plain"), "plain");
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let status = tonic::Status::from(ApiError::internal("password=hunter2"));
        assert!(!status.message().contains("hunter2"));
    }
}

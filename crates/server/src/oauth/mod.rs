//! The OAuth 2.0 and OpenID Connect endpoints of the built-in authorization server.
//!
//! - [`token`]: `POST /oauth2/token` (every grant; the grants themselves are in [`crate::grants`]);
//! - [`authorize`]: `GET /oauth2/authorize` (authorization code + PKCE);
//! - [`device`]: `POST /oauth2/device/code` (device authorization, RFC 8628; the person approves at `/activate`);
//! - [`revoke`]: `POST /oauth2/revoke` (RFC 7009); [`introspect`]: `POST /oauth2/introspect` (RFC 7662);
//! - [`userinfo`]: `GET|POST /oauth2/userinfo` (OpenID Connect);
//! - here: `GET /oauth2/jwks` and the discovery documents.
//!
//! In External mode (`auth.appAuth.authServerType: External`) these endpoints stay mounted, but the discovery
//! documents advertise the external server's endpoints instead ([`crate::external`]), and tokens minted here are
//! not accepted by the protected calls (they validate the external server's tokens only).

use crate::error::ApiError;
use crate::form::{self, FormError};
use crate::listener::BodyTimeout;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flyteauth_core::grant::PresentedClient;
use flyteauth_core::oauth::{ErrorCode, OAuthError};
use std::collections::HashMap;

pub mod authorize;
pub mod device;
pub mod introspect;
pub mod revoke;
pub mod token;
pub mod userinfo;

pub use token::MAX_TOKEN_REQUEST_BYTES;

/// `GET /oauth2/jwks`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    json_document(state.jwks_json.clone(), "public, max-age=60")
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`: ours, or in External
/// mode the external server's (503 until it was fetched once).
pub async fn server_metadata(State(state): State<AppState>) -> Response {
    match state.served_metadata() {
        Some(document) => json_document(document.json.clone(), "public, max-age=300"),
        None => {
            let mut response = crate::error::oauth_error_response(
                ErrorCode::TemporarilyUnavailable,
                "the external authorization server's metadata has not been fetched yet",
            );
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    }
}

fn json_document(body: Bytes, cache: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// Any method other than POST on a POST-only OAuth endpoint.
pub async fn post_only() -> Response {
    let mut response = crate::error::oauth_error_response(
        ErrorCode::InvalidRequest,
        "this endpoint accepts only POST",
    );
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

fn invalid_request(description: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::OAuth(OAuthError::new(ErrorCode::InvalidRequest, description))
}

/// The form parameters of a POST to an OAuth endpoint: `application/x-www-form-urlencoded` only, no
/// repeated parameter (RFC 6749 §3.2), UTF-8.
pub fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid_request(
            "the request must be application/x-www-form-urlencoded",
        ));
    }
    form::parse(body).map_err(|e| match e {
        FormError::Repeated(name) => invalid_request(format!(
            "parameter '{}' is repeated",
            crate::audit::printable(&name)
        )),
        other => invalid_request(other.to_string()),
    })
}

/// The client credentials of a request to the token, revocation or introspection endpoint, as presented.
pub fn presented_client(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Option<PresentedClient>, ApiError> {
    let basic = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    PresentedClient::from_request(basic, params).map_err(ApiError::from)
}

/// The JSON answer of an OAuth endpoint (never cached, RFC 6749 §5.1), or its error in RFC 6749 form.
pub(crate) fn json_answer<T: serde::Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(answer) => {
            let mut response = axum::Json(answer).into_response();
            crate::error::no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// A body that could not be read as an RFC 6749 error: 408 when it did not arrive within the body timeout (so a
/// client knows it may retry), 413 when too large, 400 when the stream broke.
pub fn body_rejected(rejection: &BytesRejection) -> Response {
    let (status, description) = if BodyTimeout::is_cause_of(rejection) {
        (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
    } else {
        (
            rejection.status(),
            "the request body could not be read or is too large",
        )
    };
    let mut response = crate::error::oauth_error_response(ErrorCode::InvalidRequest, description);
    *response.status_mut() = status;
    response
}

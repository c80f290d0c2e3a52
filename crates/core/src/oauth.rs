//! RFC 6749 error codes (plus those of RFC 7009, RFC 8628 and OpenID Connect the endpoints use) and the error type the grants return; the server renders it once per protocol.

use std::borrow::Cow;
use std::fmt;

/// An OAuth 2.0 error code (RFC 6749 §5.2, RFC 8707 §2 for `invalid_target`, RFC 8628 §3.5 for the device
/// grant's polling answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target`: the requested audience/resource is not acceptable.
    InvalidTarget,
    /// `server_error`.
    ServerError,
    /// `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// `unsupported_response_type`: the authorization endpoint does not issue this response type.
    UnsupportedResponseType,
    /// `access_denied`: the resource owner or the server refused the request.
    AccessDenied,
    /// `unsupported_token_type` (RFC 7009 §2.2.1): revocation of this token type is not supported.
    UnsupportedTokenType,
    /// `login_required` (OpenID Connect Core §3.1.2.6): `prompt=none` was asked but nobody is signed in.
    LoginRequired,
    /// `authorization_pending` (RFC 8628 §3.5): the person has not yet approved or denied the device request;
    /// poll again after the interval.
    AuthorizationPending,
    /// `slow_down` (RFC 8628 §3.5): polled sooner than the interval allows; the interval grows by 5 seconds.
    SlowDown,
    /// `expired_token` (RFC 8628 §3.5): the device code has expired; start a new device authorization.
    ExpiredToken,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::LoginRequired => "login_required",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth 2.0 error with a human-readable description (the `error_description` member).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The code.
    pub code: ErrorCode,
    /// The description; never contains secrets.
    pub description: Cow<'static, str>,
}

impl OAuthError {
    /// An error with `code` and `description`.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let all = [
            (ErrorCode::InvalidRequest, "invalid_request", 400),
            (ErrorCode::InvalidClient, "invalid_client", 401),
            (ErrorCode::InvalidGrant, "invalid_grant", 400),
            (ErrorCode::UnauthorizedClient, "unauthorized_client", 400),
            (
                ErrorCode::UnsupportedGrantType,
                "unsupported_grant_type",
                400,
            ),
            (ErrorCode::InvalidScope, "invalid_scope", 400),
            (ErrorCode::InvalidTarget, "invalid_target", 400),
            (ErrorCode::ServerError, "server_error", 500),
            (
                ErrorCode::TemporarilyUnavailable,
                "temporarily_unavailable",
                503,
            ),
            (
                ErrorCode::UnsupportedResponseType,
                "unsupported_response_type",
                400,
            ),
            (ErrorCode::AccessDenied, "access_denied", 400),
            (
                ErrorCode::UnsupportedTokenType,
                "unsupported_token_type",
                400,
            ),
            (ErrorCode::LoginRequired, "login_required", 400),
            (
                ErrorCode::AuthorizationPending,
                "authorization_pending",
                400,
            ),
            (ErrorCode::SlowDown, "slow_down", 400),
            (ErrorCode::ExpiredToken, "expired_token", 400),
        ];
        for (code, s, _status) in all {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.to_string(), s);
        }
    }

    #[test]
    fn error_displays_code_and_description() {
        let e = OAuthError::new(ErrorCode::InvalidScope, "scope \"x\" is not registered");
        assert_eq!(
            e.to_string(),
            "invalid_scope: scope \"x\" is not registered"
        );
        let owned = OAuthError::new(ErrorCode::InvalidTarget, format!("audience {}", 1));
        assert_eq!(owned.description, "audience 1");
    }
}

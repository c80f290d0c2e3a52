//! Who is calling: bearer-token extraction and validation for every protected call.
//!
//! This is the hot path (every RPC, every `/me`): a header lookup, one signature check in
//! [`flyteauth_core::token::TokenValidator`], no database round trip.
//!
//! In External mode a token signed by a key we do not have yet triggers one (rate-limited) refetch of the
//! external server's keys and is validated once more ([`authorize_platform_call`]).

use crate::error::{ApiError, CredentialProblem};
use crate::metrics;
use crate::state::AppState;
use flyteauth_core::identity::Identity;
use flyteauth_core::token::ValidationError;
use http::{HeaderMap, HeaderName};
use std::sync::Arc;

/// The scope every platform call requires (flyteadmin's blanket authorization).
pub const PLATFORM_SCOPE: &str = "all";

/// Finds the bearer token: `authorization` first, then the deployment's custom header
/// (`flyte-authorization` by default), because the SDKs use either depending on the flow.
///
/// A header that is present but not `Bearer <token>` is reported as malformed only when no
/// other header carries a bearer token (a proxy may use `authorization: Basic …`).
pub fn bearer_token<'h>(
    headers: &'h HeaderMap,
    custom: &HeaderName,
) -> Result<&'h str, CredentialProblem> {
    let mut malformed = false;
    for name in [&http::header::AUTHORIZATION, custom] {
        for value in headers.get_all(name) {
            match parse_bearer(value.as_bytes()) {
                Some(token) => return Ok(token),
                None => malformed = true,
            }
        }
    }
    Err(if malformed {
        CredentialProblem::MalformedHeader
    } else {
        CredentialProblem::Missing
    })
}

/// `Bearer <token>` with the scheme in any case (RFC 7235 §2.1), one or more spaces after it and surrounding
/// blanks ignored. The token must be visible ASCII (RFC 6750's `b64token` is a subset); anything else in it is a
/// malformed header rather than a token to validate.
fn parse_bearer(value: &[u8]) -> Option<&str> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(b"bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii_start();
    // Every call carries a token of ~800 bytes: one pass with no early exit, which the compiler vectorizes,
    // instead of a search for spaces followed by a UTF-8 check.
    let visible = token
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if token.is_empty() || !visible {
        return None;
    }
    std::str::from_utf8(token).ok()
}

/// Validates the caller's bearer token and returns its identity. In External mode a token naming a key we do not
/// have is validated again after the external server's keys were refetched (at most once per 30 s, shared by
/// every caller); nothing waits in Self mode.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    custom: &HeaderName,
) -> Result<Arc<Identity>, ApiError> {
    match bearer_token(headers, custom) {
        Ok(token) => authenticate_token(state, token).await,
        Err(problem) => Err(credential_failure(problem)),
    }
}

/// [`authenticate`] for a bearer token already taken from the request.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Arc<Identity>, ApiError> {
    let outcome = match (state.validator.validate(token), &state.external) {
        (Err(ValidationError::UnknownKey), Some(external)) => {
            let kid = crate::external::token_kid(token);
            if external.refetch_keys_for_unknown_kid(kid.as_deref()).await {
                state.validator.validate(token)
            } else {
                Err(ValidationError::UnknownKey)
            }
        }
        (outcome, _) => outcome,
    };
    outcome.map_err(|e| credential_failure(CredentialProblem::Invalid(e)))
}

/// Counts a refused credential and makes it the request's error.
pub fn credential_failure(problem: CredentialProblem) -> ApiError {
    metrics::validation_failed(problem.reason());
    ApiError::Credentials(problem)
}

/// Authenticates a platform call: valid credentials carrying the `all` scope.
pub async fn authorize_platform_call(
    state: &AppState,
    headers: &HeaderMap,
    custom: &HeaderName,
) -> Result<Arc<Identity>, ApiError> {
    require_platform_scope(authenticate(state, headers, custom).await?)
}

/// [`authorize_platform_call`] for a bearer token already taken from the request.
pub async fn authorize_platform_token(
    state: &AppState,
    token: &str,
) -> Result<Arc<Identity>, ApiError> {
    require_platform_scope(authenticate_token(state, token).await?)
}

fn require_platform_scope(identity: Arc<Identity>) -> Result<Arc<Identity>, ApiError> {
    if identity.has_scope(PLATFORM_SCOPE) {
        Ok(identity)
    } else {
        metrics::validation_failed("insufficient_scope");
        Err(ApiError::InsufficientScope(PLATFORM_SCOPE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn custom() -> HeaderName {
        HeaderName::from_static("flyte-authorization")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "] {
            let mut map = HeaderMap::new();
            map.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
            assert_eq!(bearer_token(&map, &custom()), Ok("abc"), "{value}");
        }
    }

    #[test]
    fn custom_header_is_accepted_and_authorization_wins() {
        let map = headers(&[("flyte-authorization", "Bearer custom")]);
        assert_eq!(bearer_token(&map, &custom()), Ok("custom"));
        let map = headers(&[
            ("flyte-authorization", "Bearer custom"),
            ("authorization", "Bearer standard"),
        ]);
        assert_eq!(bearer_token(&map, &custom()), Ok("standard"));
    }

    #[test]
    fn basic_authorization_does_not_hide_a_custom_bearer() {
        let map = headers(&[
            ("authorization", "Basic dXNlcjpwdw=="),
            ("flyte-authorization", "Bearer custom"),
        ]);
        assert_eq!(bearer_token(&map, &custom()), Ok("custom"));
    }

    #[test]
    fn missing_and_malformed_are_told_apart() {
        assert_eq!(
            bearer_token(&HeaderMap::new(), &custom()),
            Err(CredentialProblem::Missing)
        );
        for value in [
            "Bearer",
            "Bearer ",
            "Token abc",
            "Bearer a b",
            "Basic xyz",
            "Bearerabc",
            "Bearer\tabc",
            "Bearer a\tb",
            "Bearer caf\u{e9}",
        ] {
            let mut map = HeaderMap::new();
            map.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
            assert_eq!(
                bearer_token(&map, &custom()),
                Err(CredentialProblem::MalformedHeader),
                "{value}"
            );
        }
    }

    #[test]
    fn non_utf8_header_is_malformed_not_a_panic() {
        let mut map = HeaderMap::new();
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        assert_eq!(
            bearer_token(&map, &custom()),
            Err(CredentialProblem::MalformedHeader)
        );
    }
}

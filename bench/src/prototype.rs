//! A prototype of the fix the HTTP benchmark points at: remember verified tokens, so a token
//! presented again skips the RS256 check. Only `http --prototype-cache` mounts it (as
//! `/bench/me-cached`); the measured production stack never sees it.
//!
//! The sketch of the real thing (for `flyteauth-core`): key by the exact token bytes (a hit needs
//! the identical signed bytes, so it proves no more than the first verification did); keep the
//! `Identity` and `exp`; re-check `exp`/`nbf` against the clock on every hit; bound the entries and
//! their lifetime; clear on key-ring change; check revocations outside the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flyteauth_core::identity::UserInfo;
use flyteauth_server::auth::{PLATFORM_SCOPE, bearer_token};
use flyteauth_server::http_api::USER_SUBJECT_HEADER;
use flyteauth_server::state::AppState;

/// Entries kept before the cache is emptied and refilled (a crude bound, enough for a benchmark).
pub const MAX_ENTRIES: usize = 4096;

/// token → (expiry, the `/me` answer).
type Entries = HashMap<Box<str>, (i64, Arc<UserInfo>)>;

/// Verified tokens, shared by every request.
#[derive(Debug, Default, Clone)]
pub struct VerifiedTokens(Arc<Mutex<Entries>>);

impl VerifiedTokens {
    fn lookup(&self, state: &AppState, token: &str) -> Option<Arc<UserInfo>> {
        let now = state.clock.unix_now();
        let leeway = i64::try_from(state.config.flyteauth.token_leeway.as_secs()).unwrap_or(0);
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(token)
            .filter(|(exp, _)| now < exp.saturating_add(leeway))
            .map(|(_, info)| info.clone())
    }

    fn insert(&self, token: &str, exp: i64, info: Arc<UserInfo>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(token.into(), (exp, info));
    }
}

/// `GET /bench/me-cached`: `/me` with the verified-token cache in front of the validator.
pub async fn me_cached(
    State((state, cache)): State<(AppState, VerifiedTokens)>,
    headers: HeaderMap,
) -> Response {
    let Ok(token) = bearer_token(&headers, &state.http_header) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let info = match cache.lookup(&state, token) {
        Some(info) => info,
        None => {
            let Ok(identity) = state.validator.validate(token) else {
                return StatusCode::UNAUTHORIZED.into_response();
            };
            if !identity.has_scope(PLATFORM_SCOPE) {
                return StatusCode::FORBIDDEN.into_response();
            }
            let info = Arc::new(identity.user_info);
            cache.insert(token, identity.expires_at, info.clone());
            info
        }
    };
    let subject = HeaderValue::from_str(&info.subject).ok();
    let mut response = Json(&*info).into_response();
    if let Some(subject) = subject {
        response.headers_mut().insert(USER_SUBJECT_HEADER, subject);
    }
    response
}

//! Login sessions: a random cookie whose digest keys a session row in the store, so every replica can serve
//! it and a cookie can be ended from the server side (logout, a disabled account).

use crate::error::ApiError;
use crate::opaque;
use crate::state::AppState;
use crate::web::cookies::{self, SESSION_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use flyteauth_store::{NewSession, SessionRecord, UserRecord};

/// Writes `last_seen_at` at most this often per session, so browsing does not write on every request.
const TOUCH_EVERY_SECS: i64 = 60;

/// A person with a live session.
#[derive(Debug)]
pub struct LoggedIn {
    /// The digest of the session cookie: a key for per-session limits that reveals nothing of the cookie.
    pub session_key: String,
    /// The session.
    pub session: SessionRecord,
    /// The account, as it is now.
    pub user: UserRecord,
}

/// The person behind the request's session cookie, if the session is live and the account usable.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<LoggedIn>, ApiError> {
    let Some(cookie) = cookies::read(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = opaque::digest(cookie);
    let Some(session) = state
        .store
        .get_session(&hash)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    let now = state.clock.unix_now();
    let idle = duration_secs(state.config.flyteauth.session.idle_timeout);
    if now >= session.expires_at || now >= session.last_seen_at.saturating_add(idle) {
        let _ = state.store.delete_session(&hash).await;
        return Ok(None);
    }
    let Some(user) = state
        .store
        .get_user(&session.username)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    if user.disabled || user.subject != session.subject {
        return Ok(None);
    }
    if now >= session.last_seen_at.saturating_add(TOUCH_EVERY_SECS) {
        state
            .store
            .touch_session(&hash, now)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(Some(LoggedIn {
        session_key: hash,
        session,
        user,
    }))
}

/// Starts a session for `user` and returns the `Set-Cookie` value carrying it.
pub async fn start(state: &AppState, user: &UserRecord) -> Result<HeaderValue, ApiError> {
    let now = state.clock.unix_now();
    let lifetime = duration_secs(state.config.flyteauth.session.lifetime);
    let token = opaque::new_token();
    state
        .store
        .create_session(&NewSession {
            session_hash: opaque::digest(&token),
            username: user.username.clone(),
            subject: user.subject.clone(),
            auth_time: now,
            created_at: now,
            expires_at: now.saturating_add(lifetime),
        })
        .await
        .map_err(ApiError::internal)?;
    state
        .cookies
        .set(SESSION_COOKIE, &token, u64::try_from(lifetime).unwrap_or(0))
        .ok_or_else(|| ApiError::internal("session cookie is not a valid header value"))
}

/// Ends the request's session, if any; returns the `Set-Cookie` value that removes the cookie.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
    if let Some(cookie) = cookies::read(headers, SESSION_COOKIE) {
        state
            .store
            .delete_session(&opaque::digest(cookie))
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(state.cookies.clear(SESSION_COOKIE))
}

/// Whole seconds of a configured duration, saturating.
pub fn duration_secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

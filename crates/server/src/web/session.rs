//! Browser sessions: a sealed cookie (see [`flyteauth_core::seal`] for its format) carrying who is signed in,
//! plus a row in the store keyed by the digest of the session id.
//!
//! The two halves serve different paths. `/me`, which an ingress calls on every request, reads only the cookie
//! and the in-memory revocation set ([`fast`]): no database round trip. The browser routes (`/login`,
//! `/oauth2/authorize`, `/activate`) also read the row and the account ([`current`]), so a logout, a disabled
//! account or an ended session is honoured there at once on every replica. A logout revokes the session id in
//! the revocation set too, which every replica mirrors within seconds.

use crate::error::ApiError;
use crate::opaque;
use crate::state::AppState;
use crate::web::cookies;
use axum::http::{HeaderMap, HeaderValue};
use flyteauth_core::browser_session::{
    SESSION_COOKIE, SessionClaims, TOUCH_AFTER_SECS, seal_session,
};
use flyteauth_store::{NewSession, RevocationKind, SessionRecord, UserRecord};

/// A person with a live session.
#[derive(Debug)]
pub struct LoggedIn {
    /// The digest of the session id: a key for per-session limits that reveals nothing of the cookie.
    pub session_key: String,
    /// The session's row.
    pub session: SessionRecord,
    /// What the cookie says.
    pub claims: SessionClaims,
    /// The account, as it is now.
    pub user: UserRecord,
}

/// The claims sealed in a session cookie value, if it opens. Expiry and revocation are not looked at here.
pub fn open(state: &AppState, sealed: &str) -> Option<SessionClaims> {
    state.sealer.open(SESSION_COOKIE, sealed).ok()
}

/// Whether a session whose cookie says `claims` is still live at `now`: not past its end, not idle, not
/// revoked (a logout on any replica, a disabled account).
pub fn is_live(state: &AppState, claims: &SessionClaims, now: i64) -> bool {
    let idle = duration_secs(state.config.flyteauth.session.idle_timeout);
    claims.check(now, idle).is_ok()
        && !state.validator.revocations().is_login_revoked(
            &claims.sid,
            &claims.sub,
            claims.auth_time,
        )
}

/// The claims of the request's session cookie, if it opens, has not expired or idled out, and is not revoked.
fn open_cookie(state: &AppState, headers: &HeaderMap, now: i64) -> Option<SessionClaims> {
    let raw = cookies::read_sealed(headers, SESSION_COOKIE)?;
    let claims = open(state, raw)?;
    is_live(state, &claims, now).then_some(claims)
}

/// A refreshed cookie for a live session whose last refresh is old enough that the idle clock should be reset
/// (`/me` cannot write the store, so the cookie carries the last use).
pub fn refreshed_cookie(state: &AppState, claims: &SessionClaims, now: i64) -> Option<HeaderValue> {
    if claims.needs_touch(now) {
        cookie_for(state, &claims.touched(now), now)
    } else {
        None
    }
}

/// The person behind the request's session cookie, if the session is live and the account usable.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<LoggedIn>, ApiError> {
    let now = state.clock.unix_now();
    let Some(claims) = open_cookie(state, headers, now) else {
        return Ok(None);
    };
    let hash = opaque::digest(&claims.sid);
    let Some(session) = state
        .store
        .get_session(&hash)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    let idle = duration_secs(state.config.flyteauth.session.idle_timeout);
    // `/me` refreshes the cookie without writing the row, so the later of the two says when it was last used.
    let last_seen = session.last_seen_at.max(claims.seen);
    if now >= session.expires_at || now >= last_seen.saturating_add(idle) {
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
    if user.disabled || user.subject != session.subject || user.subject != claims.sub {
        return Ok(None);
    }
    if now >= session.last_seen_at.saturating_add(TOUCH_AFTER_SECS) {
        state
            .store
            .touch_session(&hash, now)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(Some(LoggedIn {
        session_key: hash,
        session,
        claims,
        user,
    }))
}

/// What a new session says about the person beyond their account.
#[derive(Debug, Default)]
pub struct SessionProfile {
    /// `preferred_username` (the account name for local accounts).
    pub preferred_username: String,
    /// Group memberships from the identity provider.
    pub groups: Vec<String>,
    /// The identity provider's ID token, for the `id_token_hint` of a logout there.
    pub idp_id_token: Option<String>,
}

/// Starts a session for `user` and returns the `Set-Cookie` value carrying it.
pub async fn start(
    state: &AppState,
    user: &UserRecord,
    profile: SessionProfile,
) -> Result<HeaderValue, ApiError> {
    let now = state.clock.unix_now();
    let lifetime = duration_secs(state.config.flyteauth.session.lifetime);
    let sid = opaque::new_token();
    let federated = profile.idp_id_token.is_some();
    state
        .store
        .create_session(&NewSession {
            session_hash: opaque::digest(&sid),
            username: user.username.clone(),
            subject: user.subject.clone(),
            auth_time: now,
            created_at: now,
            expires_at: now.saturating_add(lifetime),
            idp_id_token: profile.idp_id_token,
        })
        .await
        .map_err(ApiError::internal)?;
    let claims = SessionClaims {
        sid,
        sub: user.subject.clone(),
        username: user.username.clone(),
        name: user.display_name.clone(),
        email: user.email.clone(),
        preferred_username: if profile.preferred_username.is_empty() {
            user.username.clone()
        } else {
            profile.preferred_username
        },
        groups: profile.groups,
        groups_omitted: false,
        federated,
        auth_time: now,
        exp: now.saturating_add(lifetime),
        seen: now,
    };
    cookie_for(state, &claims, now)
        .ok_or_else(|| ApiError::internal("the session cookie could not be sealed"))
}

/// The `Set-Cookie` value for `claims`, living until the session's end.
fn cookie_for(state: &AppState, claims: &SessionClaims, now: i64) -> Option<HeaderValue> {
    let sealed = seal_session(&state.sealer, claims)
        .map_err(|e| tracing::error!(error = %e, "could not seal a session cookie"))
        .ok()?;
    let max_age = u64::try_from(claims.exp.saturating_sub(now)).unwrap_or(0);
    state.cookies.set(SESSION_COOKIE, &sealed, max_age)
}

/// What ending a session leaves behind.
#[derive(Debug, Default)]
pub struct Ended {
    /// The `Set-Cookie` value that removes the cookie.
    pub clear_cookie: Option<HeaderValue>,
    /// Whether the session came from the identity provider (so the provider's session may be ended too).
    pub federated: bool,
    /// The provider's ID token of that sign-in, for `id_token_hint`.
    pub idp_id_token: Option<String>,
}

/// Ends the request's session, if any: deletes its row and revokes its id on every replica.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<Ended, ApiError> {
    let mut ended = Ended {
        clear_cookie: state.cookies.clear(SESSION_COOKIE),
        ..Ended::default()
    };
    let Some(raw) = cookies::read_sealed(headers, SESSION_COOKIE) else {
        return Ok(ended);
    };
    // An expired or revoked cookie still names a row that may linger; a cookie that does not open names nothing.
    let Ok(claims) = state.sealer.open::<SessionClaims>(SESSION_COOKIE, raw) else {
        return Ok(ended);
    };
    let hash = opaque::digest(&claims.sid);
    let row = state
        .store
        .get_session(&hash)
        .await
        .map_err(ApiError::internal)?;
    state
        .store
        .delete_session(&hash)
        .await
        .map_err(ApiError::internal)?;
    let now = state.clock.unix_now();
    if claims.exp > now {
        crate::grants::revoke_until(
            state,
            RevocationKind::Family,
            &claims.sid,
            "session.logout",
            claims.exp,
        )
        .await?;
    }
    ended.federated = claims.federated;
    ended.idp_id_token = row.and_then(|r| r.idp_id_token);
    Ok(ended)
}

/// Whole seconds of a configured duration, saturating.
pub fn duration_secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

//! Browser login sessions, shared by every replica.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::check;

/// Persistence of login sessions, keyed by the session id's hash.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session (`last_seen_at` = `created_at`) and returns it as stored.
    ///
    /// Fails with [`StoreError::AlreadyExists`] (entity `"session"`, key `<redacted>`) when the hash is already
    /// stored.
    async fn create_session(&self, session: &NewSession) -> Result<SessionRecord, StoreError>;

    /// Looks a session up by hash. Expiry is not checked: compare `expires_at` yourself.
    async fn get_session(&self, session_hash: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Sets `last_seen_at` = `now`; returns whether the session exists.
    async fn touch_session(&self, session_hash: &str, now: i64) -> Result<bool, StoreError>;

    /// Deletes a session (logout); returns whether it existed.
    async fn delete_session(&self, session_hash: &str) -> Result<bool, StoreError>;

    /// Deletes every session of a user; returns how many.
    async fn delete_user_sessions(&self, username: &str) -> Result<u64, StoreError>;

    /// Deletes sessions that expired before `now` (`expires_at < now`); returns how many.
    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError>;
}

/// A session to be stored.
///
/// `Debug` prints `session_hash`, and `idp_id_token` when there is one, as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Hash of the session id (e.g. SHA-256 hex); the id itself is never stored.
    pub session_hash: String,
    /// User name of the logged-in user.
    pub username: String,
    /// Subject of the logged-in user.
    pub subject: String,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
    /// When the session was created, unix seconds.
    pub created_at: i64,
    /// Absolute end of the session, unix seconds.
    pub expires_at: i64,
    /// The identity provider's ID token of a federated sign-in, kept as the `id_token_hint` of a logout at the
    /// provider; `None` for a local sign-in.
    pub idp_id_token: Option<String>,
}

/// A session as stored.
///
/// `Debug` prints `session_hash`, and `idp_id_token` when there is one, as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hash of the session id.
    pub session_hash: String,
    /// User name of the logged-in user.
    pub username: String,
    /// Subject of the logged-in user.
    pub subject: String,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
    /// When the session was created, unix seconds.
    pub created_at: i64,
    /// Absolute end of the session, unix seconds.
    pub expires_at: i64,
    /// When the session was last used, unix seconds.
    pub last_seen_at: i64,
    /// The identity provider's ID token of a federated sign-in; `None` for a local sign-in.
    pub idp_id_token: Option<String>,
}

impl NewSession {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("session_hash", &self.session_hash)?;
        check("username", &self.username)?;
        check("subject", &self.subject)?;
        self.idp_id_token
            .as_deref()
            .map_or(Ok(()), |token| check("idp_id_token", token))
    }

    pub(crate) fn to_record(&self) -> SessionRecord {
        SessionRecord {
            session_hash: self.session_hash.clone(),
            username: self.username.clone(),
            subject: self.subject.clone(),
            auth_time: self.auth_time,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_seen_at: self.created_at,
            idp_id_token: self.idp_id_token.clone(),
        }
    }
}

const REDACTED: &str = "<redacted>";

/// What `Debug` shows of an ID token: whether there is one, never the token.
fn redacted_token(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| REDACTED)
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("session_hash", &REDACTED)
            .field("username", &self.username)
            .field("subject", &self.subject)
            .field("auth_time", &self.auth_time)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("idp_id_token", &redacted_token(&self.idp_id_token))
            .finish()
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("session_hash", &REDACTED)
            .field("username", &self.username)
            .field("subject", &self.subject)
            .field("auth_time", &self.auth_time)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("idp_id_token", &redacted_token(&self.idp_id_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_session_hash_or_the_id_token() {
        let s = NewSession {
            session_hash: "deadbeef".into(),
            username: "u".into(),
            subject: "s".into(),
            auth_time: 1,
            created_at: 1,
            expires_at: 2,
            idp_id_token: Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".into()),
        };
        for text in [format!("{s:?}"), format!("{:?}", s.to_record())] {
            assert!(!text.contains("deadbeef"), "{text}");
            assert!(!text.contains("eyJ"), "{text}");
            assert!(
                text.contains(r#"idp_id_token: Some("<redacted>")"#),
                "{text}"
            );
        }
        let local = NewSession {
            idp_id_token: None,
            ..s
        };
        for text in [format!("{local:?}"), format!("{:?}", local.to_record())] {
            assert!(text.contains("idp_id_token: None"), "{text}");
        }
    }
}

//! Local user accounts for the login page.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::check;

/// Persistence of local accounts, keyed by `username` (and, separately unique, by `subject`).
///
/// User names are compared exactly (bytewise): callers normalize case or Unicode before calling.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new account and returns it as stored: enabled, no failed logins, not locked, never logged in,
    /// `updated_at` = `created_at`.
    ///
    /// Fails with [`StoreError::AlreadyExists`] when the user name (entity `"user"`, key the user name) or the
    /// subject (entity `"user subject"`, key the subject) is taken.
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError>;

    /// Looks an account up by user name.
    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Looks an account up by its subject.
    async fn get_user_by_subject(&self, subject: &str) -> Result<Option<UserRecord>, StoreError>;

    /// One page of accounts ordered by `username` (bytewise, identically on every backend), starting after `after`.
    ///
    /// Pass the last `username` of a page as `after` to get the next one; a page shorter than `limit` is the last.
    async fn list_users(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError>;

    /// How many accounts exist.
    async fn count_users(&self) -> Result<u64, StoreError>;

    /// Replaces the password hash, clears `failed_logins` and `locked_until`, sets `updated_at` = `now`.
    /// Returns whether the account exists.
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Disables or re-enables an account and sets `updated_at` = `now`. Returns whether the account exists.
    async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Counts one failed login, atomically: `failed_logins` is incremented, and when it reaches `max_failures`
    /// the account is locked until `now + lock_for_secs` and `failed_logins` starts again from 0. (A
    /// `max_failures` of 0 or 1 therefore locks on every failure.) Returns the new state, or `None` when there
    /// is no such account. `updated_at` is not changed.
    async fn record_login_failure(
        &self,
        username: &str,
        now: i64,
        max_failures: u32,
        lock_for_secs: i64,
    ) -> Result<Option<LoginThrottle>, StoreError>;

    /// Records a successful login: clears `failed_logins` and sets `last_login_at` = `now` (`locked_until` and
    /// `updated_at` are not changed). Returns whether the account exists.
    async fn record_login_success(&self, username: &str, now: i64) -> Result<bool, StoreError>;
}

/// An account to be created.
///
/// `Debug` prints `password_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The login name; unique, compared exactly.
    pub username: String,
    /// The stable subject (`sub` claim) of the account; unique.
    pub subject: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// Name to display (may be empty).
    pub display_name: String,
    /// The encoded password hash (e.g. a PHC string); opaque to the store.
    pub password_hash: String,
    /// Whether the account may administer flyteauth.
    pub is_admin: bool,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// An account as stored.
///
/// `Debug` prints `password_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The login name; unique.
    pub username: String,
    /// The stable subject of the account; unique.
    pub subject: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// Name to display (may be empty).
    pub display_name: String,
    /// The encoded password hash; opaque to the store.
    pub password_hash: String,
    /// Whether the account may administer flyteauth.
    pub is_admin: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Failed logins since the last success, password change or lock.
    pub failed_logins: u32,
    /// Unix seconds until which the account is locked; 0 = never locked.
    pub locked_until: i64,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Time of the last change of the account (password, disabled flag) or its creation, unix seconds.
    pub updated_at: i64,
    /// Time of the last successful login, unix seconds.
    pub last_login_at: Option<i64>,
}

/// The login-throttling state of an account after [`UserStore::record_login_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Failed logins counted towards the next lock.
    pub failed_logins: u32,
    /// Unix seconds until which the account is locked; 0 = never locked.
    pub locked_until: i64,
}

impl NewUser {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("username", &self.username)?;
        check("subject", &self.subject)?;
        check("email", &self.email)?;
        check("display_name", &self.display_name)?;
        check("password_hash", &self.password_hash)
    }

    pub(crate) fn to_record(&self) -> UserRecord {
        UserRecord {
            username: self.username.clone(),
            subject: self.subject.clone(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            password_hash: self.password_hash.clone(),
            is_admin: self.is_admin,
            disabled: false,
            failed_logins: 0,
            locked_until: 0,
            created_at: self.created_at,
            updated_at: self.created_at,
            last_login_at: None,
        }
    }
}

/// Decodes a stored failure count.
pub(crate) fn decode_failed_logins(raw: i64) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|e| crate::error::corrupt("users", "failed_logins", e))
}

/// The unix time an account locked at `now` for `lock_for_secs` stays locked until.
pub(crate) fn lock_end(now: i64, lock_for_secs: i64) -> i64 {
    now.saturating_add(lock_for_secs)
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("password_hash", &REDACTED)
            .field("is_admin", &self.is_admin)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("password_hash", &REDACTED)
            .field("is_admin", &self.is_admin)
            .field("disabled", &self.disabled)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("last_login_at", &self.last_login_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password_hash() {
        let user = NewUser {
            username: "alice".into(),
            subject: "s".into(),
            email: String::new(),
            display_name: String::new(),
            password_hash: "$argon2id$deadbeef".into(),
            is_admin: false,
            created_at: 1,
        };
        for text in [format!("{user:?}"), format!("{:?}", user.to_record())] {
            assert!(!text.contains("deadbeef"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }
}

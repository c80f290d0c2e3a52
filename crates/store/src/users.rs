//! User accounts: local ones for the login page, and federated ones created on a sign-in through the identity
//! provider.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::{check, check_list};

/// Persistence of accounts, keyed by `username` (and, separately unique, by `subject`).
///
/// User names are compared exactly (bytewise): callers normalize case or Unicode before calling.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new local account and returns it as stored: [`UserOrigin::Local`], no groups, enabled, no failed
    /// logins, not locked, never logged in, `updated_at` = `created_at`.
    ///
    /// Fails with [`StoreError::AlreadyExists`] when the user name (entity `"user"`, key the user name) or the
    /// subject (entity `"user subject"`, key the subject) is taken.
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError>;

    /// Creates or refreshes the federated account of a sign-in through the identity provider, atomically, and
    /// returns it as stored.
    ///
    /// * No account has the user name (nor the subject): a new account is stored with [`UserOrigin::Oidc`], an
    ///   empty password hash (the account has no password), not an administrator, enabled, and `created_at` =
    ///   `updated_at` = `last_login_at` = `now`.
    /// * A federated account with this user name and this subject exists: its `email`, `display_name` and
    ///   `groups` are replaced and `updated_at` = `last_login_at` = `now`. Everything else is kept: in particular
    ///   a disabled account stays disabled (the caller must refuse the sign-in) and `is_admin` is unchanged.
    ///
    /// Fails with [`StoreError::AlreadyExists`] when the user name belongs to a local account or to a federated
    /// account of another subject (entity `"user"`, key the user name), or when the subject belongs to an account
    /// with another user name (entity `"user subject"`, key the subject); nothing is changed then. Fails with
    /// [`StoreError::InvalidInput`] when a field (or a group) contains a NUL character.
    async fn upsert_federated_user(&self, user: &FederatedUser) -> Result<UserRecord, StoreError>;

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

/// Where an account comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserOrigin {
    /// Created with [`UserStore::create_user`]; signs in with a password.
    Local,
    /// Created by [`UserStore::upsert_federated_user`] on a sign-in through the OpenID Connect identity
    /// provider; has no password.
    Oidc,
}

impl UserOrigin {
    /// The stored name: `"local"` or `"oidc"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            UserOrigin::Local => "local",
            UserOrigin::Oidc => "oidc",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "local" => Some(UserOrigin::Local),
            "oidc" => Some(UserOrigin::Oidc),
            _ => None,
        }
    }
}

impl fmt::Display for UserOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sign-in through the identity provider, for [`UserStore::upsert_federated_user`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedUser {
    /// The login name of the account (e.g. `oidc:<subject>`); unique, compared exactly.
    pub username: String,
    /// The identity provider's stable subject (`sub` claim); unique.
    pub subject: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// Name to display (may be empty).
    pub display_name: String,
    /// The groups the identity provider reported, in its order (may be empty).
    pub groups: Vec<String>,
    /// Time of the sign-in, unix seconds.
    pub now: i64,
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
    /// Where the account comes from.
    pub origin: UserOrigin,
    /// The groups of the account, in the order they were stored; always empty for local accounts.
    pub groups: Vec<String>,
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
            origin: UserOrigin::Local,
            groups: Vec::new(),
        }
    }
}

impl FederatedUser {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("username", &self.username)?;
        check("subject", &self.subject)?;
        check("email", &self.email)?;
        check("display_name", &self.display_name)?;
        check_list("groups", &self.groups)
    }
}

/// Decodes a stored origin.
pub(crate) fn decode_origin(raw: &str) -> Result<UserOrigin, StoreError> {
    UserOrigin::parse(raw)
        .ok_or_else(|| crate::error::corrupt("users", "origin", format!("unknown origin `{raw}`")))
}

/// Encodes groups for the `groups` column (a JSON array of strings, as text, on every backend).
pub(crate) fn encode_groups(groups: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(groups)
        .map_err(|e| StoreError::Database(crate::DbError::new(format!("encoding groups: {e}"))))
}

/// Decodes the `groups` column; anything but a JSON array of strings is an error.
pub(crate) fn decode_groups(raw: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(raw).map_err(|e| crate::error::corrupt("users", "groups", e))
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
            .field("origin", &self.origin)
            .field("groups", &self.groups)
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

    #[test]
    fn origins_round_trip_and_unknown_ones_are_errors() {
        for origin in [UserOrigin::Local, UserOrigin::Oidc] {
            assert_eq!(decode_origin(origin.as_str()).unwrap(), origin);
            assert_eq!(origin.to_string(), origin.as_str());
        }
        assert!(decode_origin("LOCAL").is_err());
        assert!(decode_origin("").is_err());
    }

    #[test]
    fn malformed_groups_are_errors() {
        let groups = vec!["a".to_owned(), "ü \"q\"".to_owned(), String::new()];
        assert_eq!(
            decode_groups(&encode_groups(&groups).unwrap()).unwrap(),
            groups
        );
        for raw in [
            "",
            "not json",
            "{}",
            "[1]",
            "[\"a\", null]",
            "\"a\"",
            "null",
        ] {
            assert!(
                matches!(decode_groups(raw), Err(StoreError::Database(_))),
                "{raw}"
            );
        }
    }
}

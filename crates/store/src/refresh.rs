//! Refresh-token families and their rotating tokens.
//!
//! A family is one login of one user into one client; every refresh token issued from it (each rotation issues
//! a successor) belongs to it, and so do the access tokens (their `sid`). Revoking the family ends them all.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::{check, check_list};

/// Persistence of refresh tokens, keyed by the token's hash, and of their families, keyed by family id.
#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Stores a new token, creating its family (with the token's `client_id`, `subject` and `username`, at
    /// `issued_at`) if it does not exist yet; both in one transaction.
    ///
    /// Fails with [`StoreError::AlreadyExists`] (entity `"refresh token"`, key `<redacted>`) when the hash is
    /// already stored, and with [`StoreError::InvalidInput`] (field `"family_id"`) when the family exists for
    /// another client, subject or user name.
    async fn create_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError>;

    /// Rotates the token with hash `token_hash`, in one transaction (concurrent rotations of tokens of one family
    /// are serialized). The outcome carries the presented token as it was before this call:
    ///
    /// 1. unknown token: [`Rotation::NotFound`];
    /// 2. its family is revoked: [`Rotation::FamilyRevoked`];
    /// 3. `expires_at <= now`: [`Rotation::Expired`];
    /// 4. never used: it is marked used at `now` and `successor` is stored: [`Rotation::Rotated`];
    /// 5. used, but `grace_secs > 0` and `now <= used_at + grace_secs`: `successor` is stored (the first use keeps
    ///    its `used_at`): [`Rotation::WithinGrace`];
    /// 6. otherwise (reuse of a rotated token) the family is revoked at `now` and nothing is stored:
    ///    [`Rotation::Reused`].
    ///
    /// The successor always joins the presented token's family: its `family_id`, `client_id`, `subject` and
    /// `username` are ignored. A successor hash that is already stored fails with [`StoreError::AlreadyExists`]
    /// and changes nothing.
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        successor: &NewRefreshToken,
        now: i64,
        grace_secs: i64,
    ) -> Result<Rotation, StoreError>;

    /// Looks a token up by hash, with its family's state.
    async fn get_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// Revokes a family at `now`; returns whether it existed and was not revoked yet (an earlier revocation time
    /// is kept).
    async fn revoke_family(&self, family_id: &str, now: i64) -> Result<bool, StoreError>;

    /// Revokes at `now` every not yet revoked family of the subject; returns their ids, sorted.
    async fn revoke_user_families(
        &self,
        subject: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Deletes tokens that expired before `now` (`expires_at < now`), then families left without tokens; returns
    /// how many tokens were deleted.
    async fn purge_expired_refresh_tokens(&self, now: i64) -> Result<u64, StoreError>;
}

/// The outcome of [`RefreshStore::rotate_refresh_token`]; each record is the presented token as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// No token has this hash.
    NotFound,
    /// The token's family is revoked; nothing changed.
    FamilyRevoked(RefreshTokenRecord),
    /// The token has expired; nothing changed.
    Expired(RefreshTokenRecord),
    /// First use: the token is now used and the successor stored.
    Rotated(RefreshTokenRecord),
    /// Used before, but within the grace period: the successor was stored.
    WithinGrace(RefreshTokenRecord),
    /// Used before, outside the grace period: the family is now revoked and the successor was not stored.
    Reused(RefreshTokenRecord),
}

/// A refresh token to be stored.
///
/// `Debug` prints `token_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// Hash of the token (e.g. SHA-256 hex); the token itself is never stored.
    pub token_hash: String,
    /// The family the token belongs to.
    pub family_id: String,
    /// The client the family was issued to.
    pub client_id: String,
    /// Subject of the family's user.
    pub subject: String,
    /// User name of the family's user.
    pub username: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted audiences.
    pub audience: Vec<String>,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
    /// When the token was issued, unix seconds.
    pub issued_at: i64,
    /// When the token stops being valid, unix seconds.
    pub expires_at: i64,
}

/// A refresh token as stored, with its family's state.
///
/// `Debug` prints `token_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// Hash of the token.
    pub token_hash: String,
    /// The family the token belongs to.
    pub family_id: String,
    /// The client the family was issued to.
    pub client_id: String,
    /// Subject of the family's user.
    pub subject: String,
    /// User name of the family's user.
    pub username: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted audiences.
    pub audience: Vec<String>,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
    /// When the token was issued, unix seconds.
    pub issued_at: i64,
    /// When the token stops being valid, unix seconds.
    pub expires_at: i64,
    /// When the token was first rotated, unix seconds; `None` while unused.
    pub used_at: Option<i64>,
    /// When the token's family was revoked, unix seconds; `None` while it is not.
    pub family_revoked_at: Option<i64>,
}

impl NewRefreshToken {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("token_hash", &self.token_hash)?;
        check("family_id", &self.family_id)?;
        check("client_id", &self.client_id)?;
        check("subject", &self.subject)?;
        check("username", &self.username)?;
        check_list("scopes", &self.scopes)?;
        check_list("audience", &self.audience)
    }
}

/// Checks that an existing family belongs to the same client and user as a token being added to it.
pub(crate) fn check_owner(
    token: &NewRefreshToken,
    client_id: &str,
    subject: &str,
    username: &str,
) -> Result<(), StoreError> {
    if token.client_id == client_id && token.subject == subject && token.username == username {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            field: "family_id",
            reason: "the family belongs to another client or user",
        })
    }
}

/// What duplicate-key errors report instead of a secret hash.
pub(crate) const REDACTED_KEY: &str = "<redacted>";

const REDACTED: &str = "<redacted>";

impl fmt::Debug for NewRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRefreshToken")
            .field("token_hash", &REDACTED)
            .field("family_id", &self.family_id)
            .field("client_id", &self.client_id)
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("auth_time", &self.auth_time)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for RefreshTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRecord")
            .field("token_hash", &REDACTED)
            .field("family_id", &self.family_id)
            .field("client_id", &self.client_id)
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("auth_time", &self.auth_time)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .field("family_revoked_at", &self.family_revoked_at)
            .finish()
    }
}

/// The decision of a rotation, given the presented token; shared by the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    FamilyRevoked,
    Expired,
    Rotated,
    WithinGrace,
    Reused,
}

pub(crate) fn decide(old: &RefreshTokenRecord, now: i64, grace_secs: i64) -> Decision {
    if old.family_revoked_at.is_some() {
        return Decision::FamilyRevoked;
    }
    if old.expires_at <= now {
        return Decision::Expired;
    }
    match old.used_at {
        None => Decision::Rotated,
        Some(used_at) if grace_secs > 0 && now <= used_at.saturating_add(grace_secs) => {
            Decision::WithinGrace
        }
        Some(_) => Decision::Reused,
    }
}

impl Decision {
    pub(crate) fn outcome(self, old: RefreshTokenRecord) -> Rotation {
        match self {
            Decision::FamilyRevoked => Rotation::FamilyRevoked(old),
            Decision::Expired => Rotation::Expired(old),
            Decision::Rotated => Rotation::Rotated(old),
            Decision::WithinGrace => Rotation::WithinGrace(old),
            Decision::Reused => Rotation::Reused(old),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> NewRefreshToken {
        NewRefreshToken {
            token_hash: "deadbeef".into(),
            family_id: "f".into(),
            client_id: "flytectl".into(),
            subject: "s".into(),
            username: "u".into(),
            scopes: vec![],
            audience: vec![],
            auth_time: 1,
            issued_at: 1,
            expires_at: 100,
        }
    }

    fn record(used_at: Option<i64>, family_revoked_at: Option<i64>) -> RefreshTokenRecord {
        let t = token();
        RefreshTokenRecord {
            token_hash: t.token_hash,
            family_id: t.family_id,
            client_id: t.client_id,
            subject: t.subject,
            username: t.username,
            scopes: t.scopes,
            audience: t.audience,
            auth_time: t.auth_time,
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            used_at,
            family_revoked_at,
        }
    }

    #[test]
    fn debug_never_shows_the_token_hash() {
        for text in [
            format!("{:?}", token()),
            format!("{:?}", record(None, None)),
        ] {
            assert!(!text.contains("deadbeef"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn decisions_follow_the_documented_order() {
        assert_eq!(
            decide(&record(None, Some(5)), 200, 0),
            Decision::FamilyRevoked
        );
        assert_eq!(decide(&record(None, None), 100, 0), Decision::Expired);
        assert_eq!(decide(&record(None, None), 99, 0), Decision::Rotated);
        assert_eq!(
            decide(&record(Some(10), None), 15, 5),
            Decision::WithinGrace
        );
        assert_eq!(decide(&record(Some(10), None), 16, 5), Decision::Reused);
        // No grace at all, even within the same second.
        assert_eq!(decide(&record(Some(10), None), 10, 0), Decision::Reused);
        assert_eq!(
            decide(&record(Some(10), None), 99, i64::MAX),
            Decision::WithinGrace
        );
    }
}

//! Revocations (of access tokens, refresh families, apps and users), shared by every replica.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::check;

/// Persistence of revocations.
///
/// Every revocation gets a sequence number when first stored. Sequence numbers only grow and become visible in
/// increasing order on every backend, so a replica can load everything once with `revocations_since(0)` and then
/// poll `revocations_since(<highest seq seen>)` without ever missing an entry.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records a revocation. Revoking an already revoked `(kind, token_id)` again with a later `revoked_at` or
    /// `expires_at` (an app deleted, re-created and deleted again) keeps one row with the later values and the new
    /// reason under a new sequence number, so pollers see the change; with nothing later it is a no-op. The same
    /// id may be revoked under different kinds independently.
    async fn revoke(&self, r: &Revocation) -> Result<(), StoreError>;

    /// Revocations that still matter at `now` (`expires_at >= now`), in sequence order.
    async fn active_revocations(&self, now: i64) -> Result<Vec<Revocation>, StoreError>;

    /// Revocations with a sequence number greater than `seq`, in sequence order, with their sequence numbers.
    ///
    /// Expired entries that have not been purged yet are included; `0` returns everything.
    async fn revocations_since(&self, seq: i64) -> Result<Vec<(i64, Revocation)>, StoreError>;

    /// Deletes revocations that expired before `now` (`expires_at < now`); returns how many were deleted.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;
}

/// What a [`Revocation`]'s `token_id` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationKind {
    /// One access token; `token_id` is its `jti`.
    Token,
    /// A refresh-token (login) family; `token_id` is the family id, the `sid` of its access tokens.
    Family,
    /// An app; `token_id` is its client id. Covers every app token of that client issued at or before
    /// `revoked_at`.
    App,
    /// A user; `token_id` is the user's subject. Covers every token of that user issued at or before `revoked_at`.
    User,
}

impl RevocationKind {
    /// Every kind, in declaration order.
    pub const ALL: [RevocationKind; 4] = [
        RevocationKind::Token,
        RevocationKind::Family,
        RevocationKind::App,
        RevocationKind::User,
    ];

    /// The stored name: `"token"`, `"family"`, `"app"` or `"user"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Family => "family",
            RevocationKind::App => "app",
            RevocationKind::User => "user",
        }
    }

    /// The kind with the given stored name (exact, lower case), if any.
    pub fn parse(name: &str) -> Option<Self> {
        RevocationKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// What `token_id` names.
    pub kind: RevocationKind,
    /// The revoked id: a `jti`, a refresh family id, a client id or a subject, depending on `kind`.
    pub token_id: String,
    /// Unix seconds after which the token is unusable anyway, so the revocation can be purged. Include any
    /// validation leeway: a token accepted until `exp + leeway` must stay revoked until then.
    pub expires_at: i64,
    /// Why it was revoked (free text, e.g. `"app.deleted"`).
    pub reason: String,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
}

/// Decodes a stored kind name.
pub(crate) fn decode_kind(raw: &str) -> Result<RevocationKind, StoreError> {
    RevocationKind::parse(raw).ok_or_else(|| {
        crate::error::corrupt("revocations", "kind", format!("unknown kind `{raw}`"))
    })
}

impl Revocation {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("token_id", &self.token_id)?;
        check("reason", &self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_roundtrip() {
        for kind in RevocationKind::ALL {
            assert_eq!(RevocationKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(RevocationKind::parse("Token"), None);
        assert_eq!(RevocationKind::parse(""), None);
    }
}

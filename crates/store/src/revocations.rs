//! Revoked tokens (access-token `jti`s, later refresh-token family ids), shared by every replica.

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
    /// Records a revocation. Revoking an already revoked `token_id` is a no-op that keeps the first record (and its
    /// sequence number), so pollers see each token once.
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

/// A revoked token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The token's `jti`, or a refresh-token family id.
    pub token_id: String,
    /// Unix seconds after which the token is unusable anyway, so the revocation can be purged. Include any
    /// validation leeway: a token accepted until `exp + leeway` must stay revoked until then.
    pub expires_at: i64,
    /// Why it was revoked (free text, e.g. `"app.deleted"`).
    pub reason: String,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
}

impl Revocation {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("token_id", &self.token_id)?;
        check("reason", &self.reason)
    }
}

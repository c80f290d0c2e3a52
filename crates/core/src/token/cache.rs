//! A bounded memo of access tokens that passed full validation.
//!
//! One RSA-2048 signature check costs more than an entire empty HTTP request, and the same token
//! arrives on every call a client makes until it expires. The memo is keyed by the exact token
//! bytes, so a hit proves the bytes were already verified: the signature, `kid`, `iss`, `aud` and
//! `typ` are fixed by them. Only time can change the outcome, so a hit re-checks `exp` and
//! `nbf`/`iat`. Failures are never stored, so a token that was not yet valid is verified again.
//! Anything that can invalidate a token while its bytes stay the same (revocation) must be checked
//! outside this memo.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::identity::Identity;

/// Tokens kept at most; beyond it, expired entries are dropped, then everything.
pub const CAPACITY: usize = 4096;

/// Longer tokens are validated every time rather than kept (bounds the memo's memory).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A token that passed validation, and the times that bound its validity.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Who the token speaks for, shared with every caller presenting the same token.
    pub identity: Arc<Identity>,
    /// The later of `iat` and `nbf`.
    pub not_before: i64,
}

/// The memo itself: a read-mostly map from token bytes to its verified identity.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    entries: RwLock<HashMap<Box<str>, Arc<Verified>>>,
}

impl VerifiedTokens {
    /// The entry for exactly these token bytes.
    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(token).cloned()
    }

    /// Remembers a verified token; keeps the memo within [`CAPACITY`].
    pub fn insert(&self, token: &str, verified: Verified, now: i64, leeway: i64) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, v| now < v.identity.expires_at.saturating_add(leeway));
            if entries.len() >= CAPACITY {
                // Still full of live tokens: start over rather than track recency on the hot path.
                entries.clear();
            }
        }
        entries.insert(token.into(), Arc::new(verified));
    }

    /// Forgets a token (it expired).
    pub fn remove(&self, token: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(token);
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

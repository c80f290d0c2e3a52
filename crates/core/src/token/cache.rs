//! A bounded memo of access tokens that passed full validation.
//!
//! One RSA-2048 signature check costs more than an entire empty HTTP request, and the same token
//! arrives on every call a client makes until it expires. The memo is keyed by the exact token
//! bytes, so a hit proves the bytes were already verified: the signature, `kid`, `iss`, `aud` and
//! `typ` are fixed by them. Only time can change the outcome, so a hit re-checks `exp` and
//! `nbf`/`iat`. Failures are never stored, so a token that was not yet valid is verified again.
//! Anything that can invalidate a token while its bytes stay the same (revocation; for an external
//! server, a key dropped from its set or a new issuer, tracked by an epoch) must be checked outside
//! this memo.
//!
//! Two bounds keep it small and fair:
//! - per principal, [`PER_PRINCIPAL_CAPACITY`] tokens: an application by its client id, a person by client id
//!   and subject. A principal over its quota evicts its own oldest entry, never anyone else's, so one client
//!   minting tokens in a loop cannot push every other caller back onto the slow path;
//! - overall, [`CAPACITY`] tokens: beyond it, expired entries are dropped, then everything. With the quota,
//!   reaching it takes at least `CAPACITY / PER_PRINCIPAL_CAPACITY` principals at their limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use crate::identity::{Identity, PrincipalKind};

/// Tokens kept at most; beyond it, expired entries are dropped, then everything.
pub const CAPACITY: usize = 4096;

/// Tokens kept at most for one principal (one application, or one person at one client).
pub const PER_PRINCIPAL_CAPACITY: usize = 256;

/// Longer tokens are validated every time rather than kept (bounds the memo's memory).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A token that passed validation, and the times that bound its validity.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Who the token speaks for, shared with every caller presenting the same token.
    pub identity: Arc<Identity>,
    /// The later of `iat` and `nbf`.
    pub not_before: i64,
    /// The external authority's key-set epoch the token was verified under (0 for our own tokens): a hit from
    /// an older epoch is verified again, so a key the authority dropped stops being trusted through the memo.
    pub epoch: u64,
}

/// Whose quota an entry counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Principal {
    kind: PrincipalKind,
    client_id: Box<str>,
    /// Empty for applications (their subject is their client id).
    subject: Box<str>,
}

impl Principal {
    fn of(identity: &Identity) -> Self {
        Self {
            kind: identity.kind,
            client_id: identity.client_id.as_str().into(),
            subject: match identity.kind {
                PrincipalKind::App => "".into(),
                PrincipalKind::User => identity.subject.as_str().into(),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    tokens: HashMap<Arc<str>, Arc<Verified>>,
    /// Each principal's tokens, oldest first.
    by_principal: HashMap<Principal, VecDeque<Arc<str>>>,
}

impl Entries {
    fn forget(&mut self, token: &str) {
        let Some(v) = self.tokens.remove(token) else {
            return;
        };
        let principal = Principal::of(&v.identity);
        if let Some(queue) = self.by_principal.get_mut(&principal) {
            queue.retain(|t| &**t != token);
            if queue.is_empty() {
                self.by_principal.remove(&principal);
            }
        }
    }

    fn clear(&mut self) {
        self.tokens.clear();
        self.by_principal.clear();
    }

    fn drop_expired(&mut self, now: i64, leeway: i64) {
        let live = |v: &Verified| now < v.identity.expires_at.saturating_add(leeway);
        self.tokens.retain(|_, v| live(v));
        let tokens = &self.tokens;
        self.by_principal.retain(|_, queue| {
            queue.retain(|t| tokens.contains_key(t));
            !queue.is_empty()
        });
    }
}

/// The memo itself: a read-mostly map from token bytes to its verified identity.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    entries: RwLock<Entries>,
}

impl VerifiedTokens {
    /// The entry for exactly these token bytes.
    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.tokens.get(token).cloned()
    }

    /// Remembers a verified token; keeps its principal within [`PER_PRINCIPAL_CAPACITY`] and the memo within
    /// [`CAPACITY`].
    pub fn insert(&self, token: &str, verified: Verified, now: i64, leeway: i64) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.tokens.contains_key(token) {
            return;
        }
        let principal = Principal::of(&verified.identity);
        let own = entries
            .by_principal
            .get(&principal)
            .map_or(0, VecDeque::len);
        if own >= PER_PRINCIPAL_CAPACITY {
            let oldest = entries
                .by_principal
                .get_mut(&principal)
                .and_then(VecDeque::pop_front);
            if let Some(oldest) = oldest {
                entries.tokens.remove(&oldest);
            }
        } else if entries.tokens.len() >= CAPACITY {
            entries.drop_expired(now, leeway);
            if entries.tokens.len() >= CAPACITY {
                // Still full of live tokens: start over rather than track recency on the hot path.
                entries.clear();
            }
        }
        let key: Arc<str> = token.into();
        entries
            .by_principal
            .entry(principal)
            .or_default()
            .push_back(key.clone());
        entries.tokens.insert(key, Arc::new(verified));
    }

    /// Forgets a token (it expired).
    pub fn remove(&self, token: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.forget(token);
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tokens
            .len()
    }

    /// Whether `token` is remembered (tests).
    #[cfg(test)]
    pub fn contains(&self, token: &str) -> bool {
        self.get(token).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserInfo;

    fn verified(client_id: &str, kind: PrincipalKind, subject: &str) -> Verified {
        Verified {
            identity: Arc::new(Identity {
                subject: subject.into(),
                client_id: client_id.into(),
                kind,
                scopes: vec![],
                audience: vec![],
                token_id: String::new(),
                expires_at: 1000,
                issued_at: 0,
                session_id: None,
                user_info: UserInfo::default(),
            }),
            not_before: 0,
            epoch: 0,
        }
    }

    fn app(client_id: &str) -> Verified {
        verified(client_id, PrincipalKind::App, client_id)
    }

    #[test]
    fn one_client_filling_the_memo_does_not_evict_another() {
        let memo = VerifiedTokens::default();
        memo.insert("b-token", app("b"), 0, 0);
        for i in 0..CAPACITY * 2 {
            memo.insert(&format!("a-{i}"), app("a"), 0, 0);
            assert!(memo.len() <= PER_PRINCIPAL_CAPACITY + 1);
        }
        assert!(memo.contains("b-token"), "b's entry survived");
        assert_eq!(memo.len(), PER_PRINCIPAL_CAPACITY + 1);
        // a keeps its newest entries.
        assert!(memo.contains(&format!("a-{}", CAPACITY * 2 - 1)));
        assert!(!memo.contains("a-0"));
    }

    #[test]
    fn people_have_their_own_quota_at_a_shared_client() {
        let memo = VerifiedTokens::default();
        memo.insert(
            "ada",
            verified("flytectl", PrincipalKind::User, "ada"),
            0,
            0,
        );
        memo.insert("app", app("flytectl"), 0, 0);
        for i in 0..PER_PRINCIPAL_CAPACITY + 5 {
            memo.insert(
                &format!("bob-{i}"),
                verified("flytectl", PrincipalKind::User, "bob"),
                0,
                0,
            );
        }
        assert!(memo.contains("ada"));
        assert!(memo.contains("app"));
        assert_eq!(memo.len(), PER_PRINCIPAL_CAPACITY + 2);
    }

    #[test]
    fn the_global_bound_holds_and_prefers_dropping_expired_entries() {
        let memo = VerifiedTokens::default();
        let clients = CAPACITY / PER_PRINCIPAL_CAPACITY;
        for c in 0..clients {
            for i in 0..PER_PRINCIPAL_CAPACITY {
                let mut v = app(&format!("c{c}"));
                if c == 0 {
                    // c0's tokens expire at 10.
                    let mut id = (*v.identity).clone();
                    id.expires_at = 10;
                    v.identity = Arc::new(id);
                }
                memo.insert(&format!("c{c}-{i}"), v, 0, 0);
            }
        }
        assert_eq!(memo.len(), CAPACITY);
        memo.insert("late", app("late"), 20, 0);
        assert_eq!(memo.len(), CAPACITY - PER_PRINCIPAL_CAPACITY + 1);
        assert!(!memo.contains("c0-0"));
        assert!(memo.contains("c1-0"));
        memo.insert("late2", app("late2"), 20, 0);
        assert!(memo.len() <= CAPACITY);
    }

    #[test]
    fn remove_keeps_the_index_in_step() {
        let memo = VerifiedTokens::default();
        for i in 0..PER_PRINCIPAL_CAPACITY {
            memo.insert(&format!("a-{i}"), app("a"), 0, 0);
        }
        memo.remove("a-5");
        memo.remove("never-seen");
        assert_eq!(memo.len(), PER_PRINCIPAL_CAPACITY - 1);
        // Room for one more without evicting.
        memo.insert("a-new", app("a"), 0, 0);
        assert!(memo.contains("a-0"));
        memo.insert("a-newer", app("a"), 0, 0);
        assert!(!memo.contains("a-0"), "the oldest goes first");
        // The same token twice is one entry.
        memo.insert("a-newer", app("a"), 0, 0);
        assert_eq!(memo.len(), PER_PRINCIPAL_CAPACITY);
    }
}

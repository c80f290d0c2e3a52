//! A bounded memo of access tokens that passed full validation.
//!
//! One RSA-2048 signature check costs more than an entire empty HTTP request, and the same token
//! arrives on every call a client makes until it expires. The memo is keyed by the token's bytes, so
//! a hit proves the bytes were already verified: the signature, `kid`, `iss`, `aud` and `typ` are
//! fixed by them. Only time can change the outcome, so a hit re-checks `exp` and `nbf`/`iat`.
//! Failures are never stored, so a token that was not yet valid is verified again. Anything that can
//! invalidate a token while its bytes stay the same (revocation; for an external server, a key
//! dropped from its set or a new issuer, tracked by an epoch) must be checked outside this memo.
//!
//! # Keys
//!
//! An entry is found by a 128-bit SipHash-1-3 of the token bytes under a 128-bit key drawn from the
//! operating system's generator when the memo is made, not by the bytes themselves: 16 bytes instead
//! of the ~600 to 800 of a token, and no copy of a bearer credential kept in memory. Equal hashes are
//! taken for equal tokens, so the hash must not be forgeable. SipHash is a keyed pseudorandom
//! function, and its key never leaves this process, so someone crafting a token cannot aim at the
//! hash of a remembered one: each attempt matches one of `n` remembered tokens with probability
//! `n / 2^128`, and each miss costs the sender a full validation that fails. That blind guess is the
//! only attack there is: a collision with a token the attacker already holds gains nothing, since
//! the hit answers with that token's own identity, re-checked for expiry and revocation as the token
//! itself would be. No hash value ever leaves the memo, so the attacker cannot learn from them either.
//!
//! SipHash-1-3 (the variant Rust's `HashMap` uses against hash flooding) rather than SipHash-2-4: it
//! hashes an 800-byte token in about half the time, which keeps a hit as cheap as comparing the
//! token's bytes was, and its margin is ample for a secret-key, output-hidden use like this one.
//! SHA-256 (aws-lc, with the CPU's SHA instructions) measured three times slower again. The key's low
//! 64 bits are a fair bucket index, so the table hashes nothing a second time.
//!
//! # Bounds
//!
//! Two bounds keep it small and fair:
//! - per principal, [`PER_PRINCIPAL_CAPACITY`] tokens: an application by its client id, a person by client id
//!   and subject. A principal over its quota evicts its own oldest entry, never anyone else's, so one client
//!   minting tokens in a loop cannot push every other caller back onto the slow path;
//! - overall, [`CAPACITY`] tokens: beyond it, expired entries are dropped, then everything. With the quota,
//!   reaching it takes at least `CAPACITY / PER_PRINCIPAL_CAPACITY` principals at their limit.
//!
//! An entry is the key, the shared `Arc<Identity>` every caller of that token receives, and two integers;
//! the identity itself (its claims, for `/me`) is most of its memory.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use siphasher::sip128::SipHasher13;

use crate::identity::{Identity, PrincipalKind};

/// Tokens kept at most; beyond it, expired entries are dropped, then everything.
pub const CAPACITY: usize = 131_072;

/// Tokens kept at most for one principal (one application, or one person at one client).
pub const PER_PRINCIPAL_CAPACITY: usize = 256;

/// Longer tokens are validated every time rather than kept (bounds the memo's memory, and the cost of hashing a
/// token that is looked up for nothing).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A token that passed validation, and the times that bound its validity.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// Who the token speaks for, shared with every caller presenting the same token.
    pub identity: Arc<Identity>,
    /// The later of `iat` and `nbf`.
    pub not_before: i64,
    /// The external authority's key-set epoch the token was verified under (0 for our own tokens): a hit from
    /// an older epoch is verified again, so a key the authority dropped stops being trusted through the memo.
    pub epoch: u64,
}

/// Where a token is remembered: the memo's keyed 128-bit hash of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey(u128);

/// Hashes a [`TokenKey`] for the table by taking its bits: they are already a pseudorandom function's output,
/// so hashing them again would only cost time.
#[derive(Default)]
struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is reached from `TokenKey`; fold anything else in so the hasher stays total.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, v: u128) {
        // Truncation on purpose: the low half is as random as the whole.
        self.0 = v as u64;
    }
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
    tokens: HashMap<TokenKey, Verified, BuildHasherDefault<KeyBits>>,
    /// Each principal's tokens, oldest first.
    by_principal: HashMap<Principal, VecDeque<TokenKey>>,
}

impl Entries {
    fn forget(&mut self, key: TokenKey) {
        let Some(v) = self.tokens.remove(&key) else {
            return;
        };
        let principal = Principal::of(&v.identity);
        if let Some(queue) = self.by_principal.get_mut(&principal) {
            queue.retain(|k| *k != key);
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
            queue.retain(|k| tokens.contains_key(k));
            !queue.is_empty()
        });
    }
}

/// The memo itself: a read-mostly map from a token's keyed hash to its verified identity.
pub(crate) struct VerifiedTokens {
    /// Holds the secret hash key; never printed.
    hasher: SipHasher13,
    entries: RwLock<Entries>,
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            hasher: SipHasher13::new_with_keys(rand::random(), rand::random()),
            entries: RwLock::default(),
        }
    }
}

impl VerifiedTokens {
    /// The key `token` is remembered under; `None` for a token too long to be remembered.
    #[inline]
    pub fn key(&self, token: &str) -> Option<TokenKey> {
        (token.len() <= MAX_TOKEN_BYTES)
            .then(|| TokenKey(self.hasher.hash(token.as_bytes()).as_u128()))
    }

    /// The entry for the token with this key.
    #[inline]
    pub fn get(&self, key: TokenKey) -> Option<Verified> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.tokens.get(&key).cloned()
    }

    /// Remembers a verified token; keeps its principal within [`PER_PRINCIPAL_CAPACITY`] and the memo within
    /// [`CAPACITY`].
    pub fn insert(&self, key: TokenKey, verified: Verified, now: i64, leeway: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.tokens.contains_key(&key) {
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
        entries
            .by_principal
            .entry(principal)
            .or_default()
            .push_back(key);
        entries.tokens.insert(key, verified);
    }

    /// Forgets a token (it expired).
    pub fn remove(&self, key: TokenKey) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.forget(key);
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tokens
            .len()
    }
}

#[cfg(test)]
impl VerifiedTokens {
    fn insert_token(&self, token: &str, verified: Verified, now: i64, leeway: i64) {
        if let Some(key) = self.key(token) {
            self.insert(key, verified, now, leeway);
        }
    }

    fn remove_token(&self, token: &str) {
        if let Some(key) = self.key(token) {
            self.remove(key);
        }
    }

    fn contains(&self, token: &str) -> bool {
        self.key(token).and_then(|key| self.get(key)).is_some()
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
                memo: Default::default(),
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
        memo.insert_token("b-token", app("b"), 0, 0);
        for i in 0..CAPACITY * 2 {
            memo.insert_token(&format!("a-{i}"), app("a"), 0, 0);
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
        memo.insert_token(
            "ada",
            verified("flytectl", PrincipalKind::User, "ada"),
            0,
            0,
        );
        memo.insert_token("app", app("flytectl"), 0, 0);
        for i in 0..PER_PRINCIPAL_CAPACITY + 5 {
            memo.insert_token(
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
                memo.insert_token(&format!("c{c}-{i}"), v, 0, 0);
            }
        }
        assert_eq!(memo.len(), CAPACITY);
        memo.insert_token("late", app("late"), 20, 0);
        assert_eq!(memo.len(), CAPACITY - PER_PRINCIPAL_CAPACITY + 1);
        assert!(!memo.contains("c0-0"));
        assert!(memo.contains("c1-0"));
        memo.insert_token("late2", app("late2"), 20, 0);
        assert!(memo.len() <= CAPACITY);
    }

    #[test]
    fn a_hundred_thousand_tokens_of_a_thousand_principals_all_stay() {
        let memo = VerifiedTokens::default();
        let principals: Vec<Verified> = (0..1000).map(|p| app(&format!("app-{p}"))).collect();
        for i in 0..100_000 {
            memo.insert_token(&format!("token-{i}"), principals[i % 1000].clone(), 0, 0);
        }
        assert_eq!(memo.len(), 100_000);
        assert!((0..100_000).all(|i| memo.contains(&format!("token-{i}"))));
    }

    #[test]
    fn one_principal_with_a_hundred_thousand_tokens_evicts_only_its_own() {
        let memo = VerifiedTokens::default();
        for p in 0..100 {
            for i in 0..10 {
                memo.insert_token(&format!("other-{p}-{i}"), app(&format!("other-{p}")), 0, 0);
            }
        }
        let flood = app("flood");
        for i in 0..100_000 {
            memo.insert_token(&format!("flood-{i}"), flood.clone(), 0, 0);
        }
        assert_eq!(memo.len(), 1000 + PER_PRINCIPAL_CAPACITY);
        assert!((0..100).all(|p| (0..10).all(|i| memo.contains(&format!("other-{p}-{i}")))));
        assert!(memo.contains("flood-99999"));
        assert!(!memo.contains("flood-0"));
    }

    #[test]
    fn keys_are_keyed_by_the_memo() {
        let (a, b) = (VerifiedTokens::default(), VerifiedTokens::default());
        assert_eq!(a.key("t"), a.key("t"));
        assert_ne!(a.key("t"), a.key("u"));
        assert_ne!(a.key("t"), b.key("t"), "each memo draws its own hash key");
        assert!(a.key(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_none());
        assert!(!format!("{a:?}").contains("hasher"));
    }

    #[test]
    #[ignore = "timing: cargo nextest run -p flyteauth-core --release --run-ignored only --no-capture key_costs"]
    fn key_costs() {
        use std::hash::BuildHasher as _;
        let token = "x".repeat(825); // an RS256 app token's length
        use crate::token::tests::time_per_op as time;
        let sip24 = siphasher::sip128::SipHasher24::new_with_keys(1, 2);
        let sip13 = SipHasher13::new_with_keys(1, 2);
        let std = std::collections::hash_map::RandomState::new();
        let ns = |d: std::time::Duration| d.as_nanos();
        let n = 1_000_000;
        println!(
            "825-byte token: SipHash-2-4/128 {} ns, SipHash-1-3/128 {} ns, std SipHash-1-3/64 {} ns, \
             SHA-256 (aws-lc) {} ns",
            ns(time(n, || {
                std::hint::black_box(sip24.hash(std::hint::black_box(token.as_bytes())));
            })),
            ns(time(n, || {
                std::hint::black_box(sip13.hash(std::hint::black_box(token.as_bytes())));
            })),
            ns(time(n, || {
                std::hint::black_box(std.hash_one(std::hint::black_box(token.as_str())));
            })),
            ns(time(n, || {
                std::hint::black_box(aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    std::hint::black_box(token.as_bytes()),
                ));
            })),
        );
        let memo = VerifiedTokens::default();
        memo.insert_token(&token, app("a"), 0, 0);
        let key = memo.key(&token).unwrap_or(TokenKey(0));
        println!(
            "memo: key() {} ns, get() {} ns",
            ns(time(n, || {
                std::hint::black_box(memo.key(std::hint::black_box(&token)));
            })),
            ns(time(n, || {
                std::hint::black_box(memo.get(key));
            })),
        );
    }

    #[test]
    fn remove_keeps_the_index_in_step() {
        let memo = VerifiedTokens::default();
        for i in 0..PER_PRINCIPAL_CAPACITY {
            memo.insert_token(&format!("a-{i}"), app("a"), 0, 0);
        }
        memo.remove_token("a-5");
        memo.remove_token("never-seen");
        assert_eq!(memo.len(), PER_PRINCIPAL_CAPACITY - 1);
        // Room for one more without evicting.
        memo.insert_token("a-new", app("a"), 0, 0);
        assert!(memo.contains("a-0"));
        memo.insert_token("a-newer", app("a"), 0, 0);
        assert!(!memo.contains("a-0"), "the oldest goes first");
        // The same token twice is one entry.
        memo.insert_token("a-newer", app("a"), 0, 0);
        assert_eq!(memo.len(), PER_PRINCIPAL_CAPACITY);
    }
}

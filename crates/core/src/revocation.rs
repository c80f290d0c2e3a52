//! The in-memory set of revocations every token validation consults.
//!
//! Access tokens are self-contained, so revoking one means remembering it until it would have expired anyway.
//! The set is read on every protected call and written rarely (a logout, a replayed code, an administrator), so
//! it sits behind a read-mostly lock, and an empty set — the usual state — costs one atomic load.
//!
//! Each entry carries an expiry (unix seconds) after which no token it matches can still be valid (for a
//! token: its `exp`; for a family, app or user: the revocation time plus the access-token lifetime and the
//! validation leeway); [`RevocationSet::prune`] drops entries past it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::identity::{Identity, PrincipalKind};

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// One access token, by `jti`.
    Token(String),
    /// Everything of a login — a refresh-token family or a browser session — by `sid`.
    Family(String),
    /// Every application token of a client issued at or before `revoked_at`.
    App {
        /// The client id.
        client_id: String,
        /// Unix seconds.
        revoked_at: i64,
    },
    /// Every token of a person issued at or before `revoked_at`.
    User {
        /// The person's subject.
        subject: String,
        /// Unix seconds.
        revoked_at: i64,
    },
}

/// When an entry may be forgotten, and for app and user entries the cut-off time.
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    revoked_at: i64,
    expires_at: i64,
}

#[derive(Debug, Default)]
struct Entries {
    tokens: HashMap<String, i64>,
    families: HashMap<String, i64>,
    apps: HashMap<String, Cutoff>,
    users: HashMap<String, Cutoff>,
}

impl Entries {
    fn len(&self) -> usize {
        self.tokens.len() + self.families.len() + self.apps.len() + self.users.len()
    }
}

/// A thread-safe set of revocations. Share it behind an `Arc` between the validator and whatever keeps it in
/// step with the store.
#[derive(Debug, Default)]
pub struct RevocationSet {
    entries: RwLock<Entries>,
    /// Set whenever `entries` may be non-empty; lets [`RevocationSet::is_revoked`] skip the lock when empty.
    nonempty: AtomicBool,
}

fn keep_later(slot: &mut i64, value: i64) {
    *slot = (*slot).max(value);
}

fn merge_cutoff(map: &mut HashMap<String, Cutoff>, key: String, revoked_at: i64, expires_at: i64) {
    map.entry(key)
        .and_modify(|c| {
            keep_later(&mut c.revoked_at, revoked_at);
            keep_later(&mut c.expires_at, expires_at);
        })
        .or_insert(Cutoff {
            revoked_at,
            expires_at,
        });
}

impl RevocationSet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        // Entries are only ever whole maps; a panic elsewhere cannot leave one half-updated.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a revocation, kept until `expires_at` (unix seconds). Inserting the same token or family again
    /// keeps the later expiry; the same app or user again keeps the later cut-off and expiry.
    pub fn insert(&self, revoked: Revoked, expires_at: i64) {
        let mut e = self.write();
        match revoked {
            Revoked::Token(jti) => {
                keep_later(e.tokens.entry(jti).or_insert(expires_at), expires_at)
            }
            Revoked::Family(sid) => {
                keep_later(e.families.entry(sid).or_insert(expires_at), expires_at);
            }
            Revoked::App {
                client_id,
                revoked_at,
            } => merge_cutoff(&mut e.apps, client_id, revoked_at, expires_at),
            Revoked::User {
                subject,
                revoked_at,
            } => merge_cutoff(&mut e.users, subject, revoked_at, expires_at),
        }
        self.nonempty.store(true, Ordering::Release);
    }

    /// Whether `identity`'s token is revoked: its `jti`, or its `sid`, or — for an app token — its client up to
    /// its `iat`, or — for a user token — its subject up to its `iat`. Expiry of entries is not looked at
    /// here (an expired entry can only match expired tokens).
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        if !self.nonempty.load(Ordering::Acquire) {
            return false;
        }
        let e = self.read();
        if e.tokens.contains_key(&identity.token_id) {
            return true;
        }
        if identity
            .session_id
            .as_ref()
            .is_some_and(|sid| e.families.contains_key(sid))
        {
            return true;
        }
        let (map, key) = match identity.kind {
            PrincipalKind::App => (&e.apps, &identity.client_id),
            PrincipalKind::User => (&e.users, &identity.subject),
        };
        map.get(key)
            .is_some_and(|c| identity.issued_at <= c.revoked_at)
    }

    /// Whether a login is revoked: its `sid` is (a browser session is revoked as a login,
    /// [`Revoked::Family`] of its id), or its person's `subject` is up to `issued_at` (the login's start).
    /// Like [`RevocationSet::is_revoked`], an empty set answers without taking the lock.
    pub fn is_login_revoked(&self, sid: &str, subject: &str, issued_at: i64) -> bool {
        if !self.nonempty.load(Ordering::Acquire) {
            return false;
        }
        let e = self.read();
        e.families.contains_key(sid)
            || e.users
                .get(subject)
                .is_some_and(|c| issued_at <= c.revoked_at)
    }

    /// Drops the entries whose expiry is at or before `now`.
    pub fn prune(&self, now: i64) {
        let mut e = self.write();
        e.tokens.retain(|_, exp| *exp > now);
        e.families.retain(|_, exp| *exp > now);
        e.apps.retain(|_, c| c.expires_at > now);
        e.users.retain(|_, c| c.expires_at > now);
        if e.len() == 0 {
            self.nonempty.store(false, Ordering::Release);
        }
    }

    /// How many entries the set holds.
    pub fn len(&self) -> usize {
        if !self.nonempty.load(Ordering::Acquire) {
            return 0;
        }
        self.read().len()
    }

    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::UserInfo;

    fn user(jti: &str, sid: &str, iat: i64) -> Identity {
        Identity {
            subject: "u-1".into(),
            client_id: "flytectl".into(),
            kind: PrincipalKind::User,
            scopes: vec![],
            audience: vec![],
            token_id: jti.into(),
            expires_at: iat + 1800,
            issued_at: iat,
            session_id: Some(sid.into()),
            user_info: UserInfo::default(),
            memo: Default::default(),
        }
    }

    fn app(jti: &str, iat: i64) -> Identity {
        Identity {
            subject: "ci".into(),
            client_id: "ci".into(),
            kind: PrincipalKind::App,
            session_id: None,
            ..user(jti, "", iat)
        }
    }

    #[test]
    fn an_empty_set_revokes_nothing() {
        let set = RevocationSet::default();
        assert!(set.is_empty());
        assert!(!set.is_revoked(&user("j", "s", 0)));
        assert!(!set.is_revoked(&app("j", 0)));
    }

    #[test]
    fn tokens_and_families() {
        let set = RevocationSet::default();
        set.insert(Revoked::Token("j-1".into()), 100);
        set.insert(Revoked::Family("fam-1".into()), 200);
        assert_eq!(set.len(), 2);
        assert!(set.is_revoked(&user("j-1", "fam-9", 0)));
        assert!(set.is_revoked(&app("j-1", 0)));
        assert!(set.is_revoked(&user("j-2", "fam-1", 0)));
        assert!(!set.is_revoked(&user("j-2", "fam-2", 0)));
        // An app token has no sid, so family entries never match it.
        assert!(!set.is_revoked(&app("j-2", 0)));
    }

    #[test]
    fn apps_and_users_up_to_their_cut_off() {
        let set = RevocationSet::default();
        set.insert(
            Revoked::App {
                client_id: "ci".into(),
                revoked_at: 50,
            },
            5000,
        );
        set.insert(
            Revoked::User {
                subject: "u-1".into(),
                revoked_at: 60,
            },
            5000,
        );
        assert!(set.is_revoked(&app("a", 49)));
        assert!(set.is_revoked(&app("a", 50)));
        assert!(
            !set.is_revoked(&app("a", 51)),
            "a new token after the cut-off"
        );
        assert!(set.is_revoked(&user("u", "s", 60)));
        assert!(!set.is_revoked(&user("u", "s", 61)));
        // An app revocation does not touch user tokens issued to that client, and vice versa.
        let mut u = user("u", "s", 10);
        u.subject = "u-2".into();
        u.client_id = "ci".into();
        assert!(!set.is_revoked(&u));
        let mut a = app("a", 10);
        a.subject = "u-1".into();
        a.client_id = "other".into();
        assert!(!set.is_revoked(&a));
        // A later revocation moves the cut-off forward, never back.
        set.insert(
            Revoked::App {
                client_id: "ci".into(),
                revoked_at: 40,
            },
            10,
        );
        assert!(set.is_revoked(&app("a", 50)));
        set.insert(
            Revoked::App {
                client_id: "ci".into(),
                revoked_at: 70,
            },
            10,
        );
        assert!(set.is_revoked(&app("a", 70)));
    }

    #[test]
    fn prune_forgets_what_can_no_longer_match() {
        let set = RevocationSet::default();
        set.insert(Revoked::Token("j-1".into()), 100);
        set.insert(Revoked::Family("f".into()), 200);
        set.insert(
            Revoked::User {
                subject: "u-1".into(),
                revoked_at: 0,
            },
            300,
        );
        set.prune(99);
        assert_eq!(set.len(), 3);
        set.prune(100);
        assert_eq!(set.len(), 2);
        assert!(!set.is_revoked(&user("j-1", "x", 1)));
        set.insert(Revoked::Family("f".into()), 250);
        set.prune(200);
        assert_eq!(set.len(), 2, "the later expiry was kept");
        set.prune(300);
        assert!(set.is_empty());
        assert!(!set.is_revoked(&user("j-1", "f", 0)));
    }

    #[test]
    fn shared_between_threads() {
        let set = Arc::new(RevocationSet::default());
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let set = set.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        set.insert(Revoked::Token(format!("{t}-{i}")), 1000);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(set.len(), 400);
        assert!(set.is_revoked(&app("3-99", 0)));
    }

    #[test]
    fn browser_logins() {
        let set = RevocationSet::default();
        assert!(!set.is_login_revoked("sid-1", "u-1", 10));
        set.insert(Revoked::Family("sid-1".into()), 5000);
        assert!(set.is_login_revoked("sid-1", "u-1", 10));
        assert!(set.is_login_revoked("sid-1", "u-2", 10_000));
        assert!(!set.is_login_revoked("sid-2", "u-1", 10));
        set.insert(
            Revoked::User {
                subject: "u-1".into(),
                revoked_at: 100,
            },
            5000,
        );
        assert!(set.is_login_revoked("sid-2", "u-1", 100));
        assert!(
            !set.is_login_revoked("sid-2", "u-1", 101),
            "a login after the cut-off"
        );
        assert!(!set.is_login_revoked("sid-2", "u-2", 50));
        // Token and app entries are not logins.
        let set = RevocationSet::default();
        set.insert(Revoked::Token("sid-3".into()), 5000);
        set.insert(
            Revoked::App {
                client_id: "u-1".into(),
                revoked_at: 100,
            },
            5000,
        );
        assert!(!set.is_login_revoked("sid-3", "u-1", 50));
    }
}

//! Apps from the store, held in memory so that the token endpoint does not read the database for every request.
//!
//! An entry is trusted for [`MAX_AGE`] (the revocation mirror's poll interval) after it was read, then read
//! again; it is dropped at once when this replica creates, changes or deletes the app and when an App revocation
//! arrives from the mirror. Only apps that exist get in (an unknown client id is never cached, so guessing ids
//! grows nothing), and at most [`CAPACITY`] of them.
//!
//! A change made elsewhere (another replica, the `flyteauth apps` command) is seen here within [`MAX_AGE`]. So
//! that the tokens a replica may still issue from an entry that old are caught too, an app's revocation covers
//! tokens issued up to [`REVOCATION_COVER_SECS`] after it was written (see [`crate::grants::revoke_app`]).

use flyteauth_core::clients::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// How long an entry is used before it is read from the store again.
pub const MAX_AGE: Duration = crate::revocation_mirror::POLL_INTERVAL;

/// Apps held at most; past it further apps are read from the store on every request (and not inserted), so
/// memory stays bounded whatever the number of apps.
pub const CAPACITY: usize = 100_000;

/// How far past its writing an app's revocation reaches (seconds): [`MAX_AGE`] rounded up, plus one second for
/// the rounding of `iat` to whole seconds. A replica stops using an entry read before the change at most
/// [`MAX_AGE`] after the change, so every token it issued from it has an `iat` at or below this cut-off.
pub const REVOCATION_COVER_SECS: i64 = {
    let whole = MAX_AGE.as_secs() as i64;
    let rounded_up = if MAX_AGE.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    };
    rounded_up + 1
};

/// The apps this replica has read, by client id.
#[derive(Debug)]
pub struct AppCache {
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped by every [`AppCache::forget`]: a read that started before a forget must not insert what it read,
    /// which may be the version the forget was about.
    generation: AtomicU64,
    max_age: time::Duration,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    client: Client,
    /// When the read that produced it started.
    fetched_at: OffsetDateTime,
}

/// A read from the store in progress: [`AppCache::begin`] before it, [`AppCache::insert`] after it.
#[derive(Debug, Clone, Copy)]
pub struct Fetch {
    generation: u64,
    started: OffsetDateTime,
}

impl Default for AppCache {
    fn default() -> Self {
        Self::new(MAX_AGE, CAPACITY)
    }
}

impl AppCache {
    /// A cache trusting entries for `max_age`, holding at most `capacity` apps.
    pub fn new(max_age: Duration, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            max_age: time::Duration::try_from(max_age).unwrap_or(time::Duration::ZERO),
            capacity,
        }
    }

    /// The app `client_id` if an entry younger than the maximum age holds it at `now`.
    pub fn get(&self, client_id: &str, now: OffsetDateTime) -> Option<Client> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(client_id)?;
        // A clock that went back makes the age negative: read again rather than trust the entry longer.
        let age = now - entry.fetched_at;
        (age >= time::Duration::ZERO && age < self.max_age).then(|| entry.client.clone())
    }

    /// Notes the start of a read from the store at `now`.
    pub fn begin(&self, now: OffsetDateTime) -> Fetch {
        Fetch {
            generation: self.generation.load(Ordering::Acquire),
            started: now,
        }
    }

    /// Keeps what the read `fetch` found: the app, or `None` when there is no such app (then any entry is
    /// dropped and nothing is kept). Nothing is kept if the app was forgotten while the read ran, or when the
    /// cache is full.
    pub fn insert(&self, fetch: Fetch, client_id: &str, found: Option<&Client>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that forget also takes, so a forget is either seen here or comes after.
        if self.generation.load(Ordering::Acquire) != fetch.generation {
            return;
        }
        let Some(client) = found else {
            entries.remove(client_id);
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(client_id) {
            return;
        }
        entries.insert(
            client_id.to_owned(),
            Entry {
                client: client.clone(),
                fetched_at: fetch.started,
            },
        );
    }

    /// Drops the entry of `client_id` (created, changed or deleted here, or revoked anywhere).
    pub fn forget(&self, client_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(client_id);
    }

    /// How many apps are held.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no app is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn client(id: &str, name: &str) -> Client {
        Client {
            id: id.into(),
            name: name.into(),
            secret: None,
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["all".into()],
            audience: vec![],
            redirect_uris: vec![],
        }
    }

    const T: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

    fn ms(n: i64) -> time::Duration {
        time::Duration::milliseconds(n)
    }

    #[test]
    fn entries_expire_after_the_maximum_age() {
        let cache = AppCache::default();
        assert!(cache.get("bot", T).is_none());
        let fetch = cache.begin(T);
        cache.insert(fetch, "bot", Some(&client("bot", "v1")));
        assert_eq!(
            cache.get("bot", T + ms(1_999)).map(|c| c.name),
            Some("v1".into())
        );
        assert!(cache.get("bot", T + ms(2_000)).is_none(), "2 s old");
        assert!(cache.get("bot", T - ms(1)).is_none(), "the clock went back");
        // A fresh read replaces it.
        cache.insert(
            cache.begin(T + ms(2_500)),
            "bot",
            Some(&client("bot", "v2")),
        );
        assert_eq!(
            cache.get("bot", T + ms(3_000)).map(|c| c.name),
            Some("v2".into())
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn unknown_ids_are_never_kept_and_a_missing_app_drops_its_entry() {
        let cache = AppCache::default();
        for i in 0..1000 {
            let id = format!("guess-{i}");
            cache.insert(cache.begin(T), &id, None);
        }
        assert!(cache.is_empty());
        cache.insert(cache.begin(T), "bot", Some(&client("bot", "v1")));
        cache.insert(cache.begin(T), "bot", None);
        assert!(cache.get("bot", T).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_read_that_raced_a_forget_keeps_nothing() {
        let cache = AppCache::default();
        cache.insert(cache.begin(T), "bot", Some(&client("bot", "v1")));
        // A request starts reading; meanwhile the app is deleted here.
        let fetch = cache.begin(T);
        cache.forget("bot");
        cache.insert(fetch, "bot", Some(&client("bot", "v1")));
        assert!(cache.get("bot", T).is_none());
        // The next read starts after the forget and is kept.
        cache.insert(cache.begin(T), "bot", Some(&client("bot", "v2")));
        assert_eq!(cache.get("bot", T).map(|c| c.name), Some("v2".into()));
    }

    #[test]
    fn a_full_cache_keeps_what_it_has_and_refreshes_it() {
        let cache = AppCache::new(MAX_AGE, 2);
        for id in ["a", "b", "c"] {
            cache.insert(cache.begin(T), id, Some(&client(id, "v1")));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("c", T).is_none());
        cache.insert(cache.begin(T), "a", Some(&client("a", "v2")));
        assert_eq!(cache.get("a", T).map(|c| c.name), Some("v2".into()));
    }

    #[test]
    fn the_cover_reaches_past_the_maximum_age() {
        assert!(REVOCATION_COVER_SECS as u64 > MAX_AGE.as_secs());
        assert_eq!(REVOCATION_COVER_SECS, 3);
    }
}

//! Slows down guessing (client secrets, passwords, device user codes) per key: a source address, a (client id or
//! account, source address) pair, a login session.
//!
//! The counting is `governor`'s keyed GCRA limiter: each failure takes one cell, `burst` cells are there at
//! once and one more comes back every `period / count`. A key whose failure was refused is remembered as
//! blocked until the limiter would take a cell again, so the check made *before* the expensive work (bcrypt,
//! argon2, a store lookup) answers without consuming a cell: a success never counts against anyone.
//!
//! Per-account lockout lives in the store (every replica sees it). This state is kept in memory: a replica
//! seeing a share of the attempts still stops a source. Memory is bounded by `max_keys` per throttle: idle keys
//! are dropped every few thousand failures, and if the live keys still exceed the cap the limiter starts
//! afresh, which at worst gives every source a new burst.

use flyteauth_core::clock::Clock;
use governor::clock::Clock as GovernorClock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// Failures between two clean-ups of idle keys.
const HOUSEKEEPING_EVERY: u64 = 4096;

/// Keys tracked at most when the configuration says nothing else.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Failed attempts per source address.
pub type AddressThrottle = Throttle<IpAddr>;

/// The injected clock as `governor` reads it: the time since the Unix epoch, so tests move it like every other
/// expiry decision.
#[derive(Debug, Clone)]
struct InjectedClock(Arc<dyn Clock>);

impl GovernorClock for InjectedClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        let nanos = self.0.now().unix_timestamp_nanos();
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, InjectedClock, StateInformationMiddleware>;

/// Failed attempts per key, with a burst and a rate of recovery.
pub struct Throttle<K: Hash + Eq + Clone> {
    quota: Option<Quota>,
    clock: InjectedClock,
    max_keys: usize,
    limiter: RwLock<Arc<Keyed<K>>>,
    /// Keys whose last failure was refused, with the time (since the epoch) the limiter takes a cell again.
    blocked: Mutex<HashMap<K, Duration>>,
    failures: AtomicU64,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Throttle<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("quota", &self.quota)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// The quota of `count` failures per `period`, `burst` at once; `None` (no limit) when `count` is 0.
pub fn quota(count: u32, period: Duration, burst: u32) -> Option<Quota> {
    let count = NonZeroU32::new(count)?;
    let interval = (period / count.get()).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(interval).map(|q| q.allow_burst(burst))
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// A throttle allowing `quota` failures per key (`None`: no limit), tracking at most `max_keys` keys.
    pub fn new(quota: Option<Quota>, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        let clock = InjectedClock(clock);
        let limiter = fresh(quota, &clock);
        Self {
            quota,
            clock,
            max_keys: max_keys.max(1),
            limiter: RwLock::new(Arc::new(limiter)),
            blocked: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
        }
    }

    /// At most `max_failures` failures at once, the allowance coming back over `window` (0: no limit).
    pub fn per_window(max_failures: u32, window: Duration, clock: Arc<dyn Clock>) -> Self {
        Self::new(
            quota(max_failures, window, max_failures),
            DEFAULT_MAX_KEYS,
            clock,
        )
    }

    /// How long `key` must wait before trying again, or `None` if it may try now. Takes no cell.
    pub fn blocked_for(&self, key: &K) -> Option<Duration> {
        self.quota?;
        let now = self.clock.now();
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *blocked.get(key)?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed attempt of `key`; returns how long it must now wait, if it is now blocked.
    pub fn failed(&self, key: K) -> Option<Duration> {
        self.quota?;
        if self.failures.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY
            == HOUSEKEEPING_EVERY - 1
        {
            self.housekeeping();
        }
        let limiter = self
            .limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = self.clock.now();
        let until = match limiter.check_key(&key) {
            Ok(snapshot) if snapshot.remaining_burst_capacity() > 0 => return None,
            // That failure took the last cell: the next attempt waits for one to come back (at most one
            // interval away), so the limit holds at exactly `burst` failures rather than one more.
            Ok(snapshot) => now + snapshot.quota().replenish_interval(),
            Err(refused) => refused.earliest_possible(),
        }
        .max(now + Duration::from_millis(1));
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= self.max_keys && !blocked.contains_key(&key) {
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= self.max_keys {
                // Every entry is a live block; dropping them all only gives their sources one more attempt each.
                blocked.clear();
            }
        }
        blocked.insert(key, until);
        Some(until - now)
    }

    /// Drops idle keys; starts afresh if the live ones exceed the cap.
    pub fn housekeeping(&self) {
        let now = self.clock.now();
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
        let limiter = self
            .limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        limiter.retain_recent();
        if limiter.len() > self.max_keys {
            *self.limiter.write().unwrap_or_else(PoisonError::into_inner) =
                Arc::new(fresh(self.quota, &self.clock));
        } else {
            limiter.shrink_to_fit();
        }
    }

    /// Keys the limiter holds (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn fresh<K: Hash + Eq + Clone>(quota: Option<Quota>, clock: &InjectedClock) -> Keyed<K> {
    // A limit that is off never reaches the limiter; any quota will do for the unused instance.
    let quota = quota.unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
    RateLimiter::dashmap_with_clock(quota, clock.clone())
        .with_middleware::<StateInformationMiddleware>()
}

/// Whole seconds to wait, rounded up, at least 1 (the value of a `Retry-After` header).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteauth_core::clock::ManualClock;
    use time::OffsetDateTime;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        ))
    }

    #[test]
    fn blocks_after_the_burst_until_a_cell_comes_back() {
        let c = clock();
        let t = AddressThrottle::per_window(3, Duration::from_secs(60), c.clone());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(t.blocked_for(&a), None);
            assert_eq!(t.failed(a), None);
        }
        let wait = t.failed(a).expect("the third failure uses up the burst");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert!(t.blocked_for(&a).is_some(), "the fourth attempt waits");
        assert_eq!(t.blocked_for(&b), None, "other addresses are unaffected");
        c.advance(time::Duration::seconds(21));
        assert_eq!(t.blocked_for(&a), None, "one cell came back");
        assert!(t.failed(a).is_some(), "and only one");
    }

    #[test]
    fn checking_takes_no_cell() {
        let t = AddressThrottle::per_window(1, Duration::from_secs(60), clock());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(t.blocked_for(&a), None);
        }
        assert!(
            t.failed(a).is_some(),
            "the one allowed failure blocks the next attempt"
        );
    }

    #[test]
    fn zero_disables() {
        let off = AddressThrottle::per_window(0, Duration::from_secs(60), clock());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(off.failed(a), None);
        }
        assert_eq!(off.blocked_for(&a), None);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let c = clock();
        let t = Throttle::new(quota(1, Duration::from_secs(3600), 1), 1000, c.clone());
        for i in 0..20_000u32 {
            let key = IpAddr::from(i.to_be_bytes());
            t.failed(key);
            t.failed(key);
        }
        t.housekeeping();
        assert!(t.tracked_keys() <= 1000, "{}", t.tracked_keys());
        assert!(t.blocked.lock().unwrap().len() <= 1000);
    }

    #[test]
    fn idle_keys_are_dropped() {
        let c = clock();
        let t = AddressThrottle::per_window(5, Duration::from_secs(60), c.clone());
        for i in 0..100u32 {
            t.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(t.tracked_keys(), 100);
        c.advance(time::Duration::minutes(5));
        t.housekeeping();
        assert_eq!(t.tracked_keys(), 0);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}

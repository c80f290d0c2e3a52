//! Slows down guessing (passwords, device user codes) from one network address or one session, whatever it
//! targets.
//!
//! Per-account lockout lives in the store (every replica sees it). These fixed windows are kept in memory: they
//! only have to stop one source from trying many targets, and a replica seeing a share of the attempts still
//! stops it. The map is bounded, so a flood of addresses cannot grow it without end.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

/// Keys tracked at most; beyond it, windows that ended are dropped, then the oldest half.
const MAX_ADDRESSES: usize = 16_384;

/// Failed attempts per source address.
pub type AddressThrottle = Throttle<IpAddr>;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: i64,
    failures: u32,
}

/// Failed attempts per key (an address, a session) in a fixed window.
#[derive(Debug)]
pub struct Throttle<K> {
    max_failures: u32,
    window_secs: i64,
    windows: Mutex<HashMap<K, Window>>,
}

impl<K: Hash + Eq> Throttle<K> {
    /// At most `max_failures` failed attempts per key per `window_secs`; `max_failures` 0 disables the limit.
    pub fn new(max_failures: u32, window_secs: i64) -> Self {
        Self {
            max_failures,
            window_secs: window_secs.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `addr` may try again, or `None` if it may try now.
    pub fn blocked_for(&self, addr: K, now: i64) -> Option<i64> {
        if self.max_failures == 0 {
            return None;
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get(&addr)?;
        let ends = w.started.saturating_add(self.window_secs);
        (w.failures >= self.max_failures && now < ends).then_some(ends - now)
    }

    /// Counts a failed attempt from `addr`.
    pub fn failed(&self, addr: K, now: i64) {
        if self.max_failures == 0 {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&addr) {
            let window = self.window_secs;
            windows.retain(|_, w| now < w.started.saturating_add(window));
            if windows.len() >= MAX_ADDRESSES {
                let mut starts: Vec<i64> = windows.values().map(|w| w.started).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 2];
                windows.retain(|_, w| w.started > cut);
            }
        }
        let w = windows.entry(addr).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started.saturating_add(self.window_secs) {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = AddressThrottle::new(3, 60);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.blocked_for(a, 100), None);
            t.failed(a, 100);
        }
        assert_eq!(t.blocked_for(a, 110), Some(50));
        assert_eq!(
            t.blocked_for(b, 110),
            None,
            "other addresses are unaffected"
        );
        assert_eq!(t.blocked_for(a, 160), None);
        t.failed(a, 160);
        assert_eq!(t.blocked_for(a, 161), None, "a new window starts empty");
    }

    #[test]
    fn zero_disables_and_the_map_stays_bounded() {
        let off = AddressThrottle::new(0, 60);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..10 {
            off.failed(a, 1);
        }
        assert_eq!(off.blocked_for(a, 1), None);

        let t = AddressThrottle::new(1, 60);
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            t.failed(IpAddr::from(i.to_be_bytes()), i64::from(i));
        }
        assert!(t.windows.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}

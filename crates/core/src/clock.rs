//! The source of time. Everything that compares against "now" takes an injected [`Clock`], so tests can move
//! time with a [`ManualClock`] instead of sleeping.

use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;

    /// The current time as whole seconds since the Unix epoch.
    fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self(Mutex::new(now))
    }

    /// Moves the clock to `now` (backwards too).
    pub fn set(&self, now: OffsetDateTime) {
        *self.lock() = now;
    }

    /// Moves the clock by `by` (negative durations move it back).
    pub fn advance(&self, by: time::Duration) {
        let mut now = self.lock();
        *now += by;
    }

    fn lock(&self) -> MutexGuard<'_, OffsetDateTime> {
        // A panic while holding this lock cannot leave the timestamp half-written, so the value is still good.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(datetime!(2024-01-01 00:00 UTC));
        assert_eq!(clock.unix_now(), 1_704_067_200);
        clock.advance(time::Duration::seconds(90));
        assert_eq!(clock.unix_now(), 1_704_067_290);
        clock.advance(time::Duration::seconds(-30));
        assert_eq!(clock.unix_now(), 1_704_067_260);
        clock.set(datetime!(2030-01-01 00:00 UTC));
        assert_eq!(clock.now(), datetime!(2030-01-01 00:00 UTC));
    }

    #[test]
    fn system_clock_is_close_to_now() {
        let a = SystemClock.unix_now();
        let b = OffsetDateTime::now_utc().unix_timestamp();
        assert!((a - b).abs() <= 1);
    }

    #[test]
    fn clocks_are_usable_as_trait_objects() {
        let clock: std::sync::Arc<dyn Clock> =
            std::sync::Arc::new(ManualClock::new(datetime!(2024-01-01 00:00 UTC)));
        assert_eq!(clock.unix_now(), 1_704_067_200);
    }
}

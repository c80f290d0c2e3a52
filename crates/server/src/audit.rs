//! The audit trail of credential events (tokens issued, logins, revocations, failures).

use crate::state::AppState;
use flyteauth_store::AuditEvent;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// One event to record.
#[derive(Debug)]
pub struct Event<'a> {
    /// What happened, e.g. `token.issued`, `login.failed`.
    pub kind: &'static str,
    /// The OAuth client involved (may be empty).
    pub client_id: &'a str,
    /// The person or app the event is about (may be empty).
    pub subject: &'a str,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// Where the request came from.
    pub peer: Option<SocketAddr>,
    /// Anything else worth keeping; never a secret.
    pub detail: serde_json::Value,
}

/// Records `event`; a failing audit write is logged, not turned into a failed request.
pub async fn record(state: &AppState, event: Event<'_>) {
    let stored = AuditEvent {
        at: state.clock.unix_now(),
        kind: event.kind.to_owned(),
        client_id: printable(event.client_id),
        subject: printable(event.subject),
        outcome: event.outcome.to_owned(),
        remote_addr: event.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        detail: event.detail,
    };
    if let Err(e) = state.store.record(&stored).await {
        tracing::error!(error = %e, kind = event.kind, "could not record an audit event");
    }
    tracing::info!(kind = event.kind, client_id = %stored.client_id, subject = %stored.subject, outcome = event.outcome, remote = %stored.remote_addr, "credential event");
}

/// A failed client authentication, for [`client_failure`].
#[derive(Debug, Clone, Copy)]
pub struct ClientFailure<'a> {
    /// The client id presented.
    pub client_id: &'a str,
    /// `basic` or `body`.
    pub via: &'static str,
    /// Where the request came from.
    pub peer: Option<SocketAddr>,
}

/// Repeated failed client authentications of one client id from one address, within a window, become one
/// audit row with a count instead of one row each: a flood of wrong secrets must not flood the trail.
///
/// The first failure of a window is written at once (an operator sees it without delay); the ones after it
/// are counted and written as one row (`detail.count`, `detail.since`) when the window has passed, by a sweep
/// that runs while failures keep coming and for one window after.
#[derive(Debug)]
pub struct FailureAggregator {
    window: i64,
    max_keys: usize,
    open: Mutex<HashMap<(String, String), Window>>,
    sweeping: AtomicBool,
}

#[derive(Debug, Clone)]
struct Window {
    started: i64,
    repeated: u64,
    via: &'static str,
}

/// A row the aggregator wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    client_id: String,
    remote_addr: String,
    via: &'static str,
    count: u64,
    since: i64,
}

impl FailureAggregator {
    /// Aggregates over `window` (zero: one row per failure), for at most `max_keys` callers at once.
    pub fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            max_keys: max_keys.max(1),
            open: Mutex::new(HashMap::new()),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Notes a failure at `now`: whether it is to be written now (the first of its window), and the count of
    /// this caller's previous window if that ended without being written yet.
    fn note(
        &self,
        client_id: &str,
        remote_addr: &str,
        via: &'static str,
        now: i64,
    ) -> (bool, Option<Pending>) {
        if self.window == 0 {
            return (true, None);
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (client_id.to_owned(), remote_addr.to_owned());
        if let Some(w) = open.get_mut(&key)
            && now < w.started.saturating_add(self.window)
        {
            w.repeated = w.repeated.saturating_add(1);
            return (false, None);
        }
        if open.len() >= self.max_keys && !open.contains_key(&key) {
            // Too many callers at once to aggregate: write this one as it is rather than grow without end.
            return (true, None);
        }
        let fresh = Window {
            started: now,
            repeated: 0,
            via,
        };
        let previous = open
            .insert(key, fresh)
            .filter(|w| w.repeated > 0)
            .map(|w| Pending {
                client_id: client_id.to_owned(),
                remote_addr: remote_addr.to_owned(),
                via: w.via,
                count: w.repeated,
                since: w.started,
            });
        (true, previous)
    }

    /// Removes the windows that ended by `now`; returns the counts to write.
    fn take_expired(&self, now: i64) -> Vec<Pending> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pending = Vec::new();
        open.retain(|(client_id, remote_addr), w| {
            if now < w.started.saturating_add(self.window) {
                return true;
            }
            if w.repeated > 0 {
                pending.push(Pending {
                    client_id: client_id.clone(),
                    remote_addr: remote_addr.clone(),
                    via: w.via,
                    count: w.repeated,
                    since: w.started,
                });
            }
            false
        });
        pending
    }

    fn is_empty(&self) -> bool {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// Records a failed client authentication through the state's [`FailureAggregator`].
pub async fn client_failure(state: &AppState, failure: ClientFailure<'_>) {
    let now = state.clock.unix_now();
    let client_id = printable(failure.client_id);
    let remote_addr = failure.peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let aggregator = &state.audit_aggregator;
    let (write_now, previous) = aggregator.note(&client_id, &remote_addr, failure.via, now);
    if let Some(previous) = previous {
        write_count(state, previous, now).await;
    }
    if aggregator.window > 0 && !aggregator.sweeping.swap(true, Ordering::AcqRel) {
        spawn_sweep(state);
    }
    if write_now {
        record(
            state,
            Event {
                kind: "client.authentication_failed",
                client_id: &client_id,
                subject: &client_id,
                outcome: "failure",
                peer: failure.peer,
                detail: serde_json::json!({"via": failure.via}),
            },
        )
        .await;
    }
}

/// Writes ended windows every half window while any is open, then stops (the next failure starts it again).
/// It holds the state weakly, so it never keeps a stopped server alive.
fn spawn_sweep(state: &AppState) {
    let weak = state.downgrade();
    let period = Duration::from_secs(u64::try_from(state.audit_aggregator.window).unwrap_or(1))
        .div_f64(2.0)
        .max(Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(state) = weak.upgrade() else { return };
            flush(&state, state.clock.unix_now()).await;
            let aggregator = &state.audit_aggregator;
            if aggregator.is_empty() {
                aggregator.sweeping.store(false, Ordering::Release);
                // A failure noted between the check and the flag's reset would find the flag still set.
                if aggregator.is_empty() || aggregator.sweeping.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        }
    });
}

/// Writes the counts of the windows that ended by `now`.
pub async fn flush(state: &AppState, now: i64) {
    for p in state.audit_aggregator.take_expired(now) {
        write_count(state, p, now).await;
    }
}

async fn write_count(state: &AppState, p: Pending, now: i64) {
    let stored = AuditEvent {
        at: now,
        kind: "client.authentication_failed".to_owned(),
        client_id: p.client_id.clone(),
        subject: p.client_id,
        outcome: "failure".to_owned(),
        remote_addr: p.remote_addr,
        detail: serde_json::json!({"via": p.via, "count": p.count, "since": p.since, "aggregated": true}),
    };
    if let Err(e) = state.store.record(&stored).await {
        tracing::error!(error = %e, "could not record an aggregated audit event");
    }
    tracing::info!(client_id = %stored.client_id, remote = %stored.remote_addr, count = p.count, "repeated failed client authentications");
}

/// Caps and sanitises client-supplied text before it reaches a log line, the audit trail or an error body.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_in_a_window_become_one_count() {
        let agg = FailureAggregator::new(Duration::from_secs(60), 10);
        assert!(
            agg.note("app", "127.0.0.2", "basic", 100).0,
            "the first is written at once"
        );
        for t in 101..150 {
            assert_eq!(agg.note("app", "127.0.0.2", "basic", t), (false, None));
        }
        assert!(
            agg.note("app", "127.0.0.3", "basic", 120).0,
            "another address is its own caller"
        );
        assert!(agg.take_expired(159).is_empty(), "the window is still open");
        let pending = agg.take_expired(160);
        assert_eq!(
            pending,
            vec![Pending {
                client_id: "app".into(),
                remote_addr: "127.0.0.2".into(),
                via: "basic",
                count: 49,
                since: 100,
            }]
        );
        assert!(
            agg.note("app", "127.0.0.2", "basic", 161).0,
            "a new window starts"
        );
        for t in 162..170 {
            agg.note("app", "127.0.0.2", "basic", t);
        }
        let (now, previous) = agg.note("app", "127.0.0.2", "basic", 300);
        assert!(now, "a window ended without a sweep");
        assert_eq!(previous.map(|p| (p.count, p.since)), Some((8, 161)));
    }

    #[test]
    fn zero_window_and_a_full_map_write_every_failure() {
        let off = FailureAggregator::new(Duration::ZERO, 10);
        assert!(off.note("a", "x", "body", 1).0 && off.note("a", "x", "body", 1).0);
        let small = FailureAggregator::new(Duration::from_secs(60), 1);
        assert!(small.note("a", "x", "body", 1).0);
        assert!(small.note("b", "x", "body", 1).0);
        assert!(small.note("c", "x", "body", 1).0);
        assert_eq!(small.open.lock().unwrap().len(), 1);
    }

    #[test]
    fn printable_strips_control_characters_and_caps_length() {
        assert_eq!(printable("a\nb\u{7}"), "a?b?");
        assert_eq!(printable(&"x".repeat(1000)).len(), 128);
    }
}

//! The audit trail of credential events (tokens issued, logins, revocations, failures).
//!
//! Events are written by one background task per server, a group commit: [`record`] puts its event on a bounded
//! queue and waits until the writer has committed it, the writer takes up to [`MAX_BATCH`] queued events at a
//! time and stores them with one [`AuditStore::record_batch`] transaction. So the cost of a commit is shared by
//! every request that arrived meanwhile, and a caller that got its acknowledgement knows its row is in the
//! database: a token handed out after [`record`] succeeded has its `token.issued` row even if the process is
//! killed the next instant.
//!
//! A full queue makes callers wait for room rather than dropping events; a failed write is retried with
//! back-off; a caller whose event is not committed within [`ACK_TIMEOUT`] (queueing included) gets
//! [`AuditError`], and each call site decides whether that fails the request (anything that hands out a
//! credential) or is logged (failures, denials, changes already made).

use crate::state::AppState;
use flyteauth_store::{AuditEvent, AuditStore};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Events waiting for the writer at most. Beyond it callers wait for room (back-pressure): at a few thousand
/// events per commit-second this is seconds of backlog, which only a stalled database builds up.
pub const QUEUE_CAPACITY: usize = 8_192;

/// Events stored per transaction at most: large enough that one commit serves every request of a busy moment,
/// small enough that one transaction holds SQLite's write lock for milliseconds.
pub const MAX_BATCH: usize = 512;

/// How long [`record`] waits for its event to be committed, time in the queue included, before it gives up.
/// Well inside the client timeouts of the Flyte SDKs, and longer than a database fail-over's first retries.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause after a failed batch write; doubled after each further failure of the same batch, up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// The longest pause between two attempts at one batch.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Attempts at the batch in hand once the state is gone (no caller can be waiting any more) before the
/// writer gives it up and ends.
const ATTEMPTS_AFTER_CLOSE: u32 = 3;

/// Why an event was not confirmed as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The event was not committed within the wait (the database is failing or far behind). The writer keeps
    /// trying, so it may still be recorded later.
    #[error("the audit event was not committed within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The writer has stopped (the runtime is shutting down).
    #[error("the audit writer has stopped")]
    Stopped,
}

/// One queued event and who waits for it; `event` is `None` for [`AuditWriter::flush`].
struct Queued {
    event: Option<AuditEvent>,
    ack: oneshot::Sender<()>,
}

/// The writer's half until its task starts.
struct Idle {
    queue: mpsc::Receiver<Queued>,
    store: Arc<dyn AuditStore>,
}

/// The group-commit writer of the audit trail: the queue's sending half, and the background task that drains it.
///
/// The task starts with the first event (so a state built outside a runtime, as `flyteauth config check`
/// does, spawns nothing) and holds only the store and the queue, never the state: when the last handle on the
/// state is dropped the queue closes, the task writes what is left and ends. The task lives on the runtime of the
/// first event, which is the runtime the state serves on.
pub struct AuditWriter {
    queue: mpsc::Sender<Queued>,
    idle: Mutex<Option<Idle>>,
    started: AtomicBool,
    timeout: Duration,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .field("started", &self.started.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// A writer into `store` with the server's limits ([`QUEUE_CAPACITY`], [`ACK_TIMEOUT`]).
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Self::with_limits(store, QUEUE_CAPACITY, ACK_TIMEOUT)
    }

    /// A writer with its own queue capacity and wait (for tests of back-pressure and failures).
    pub(crate) fn with_limits(
        store: Arc<dyn AuditStore>,
        capacity: usize,
        timeout: Duration,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        Self {
            queue,
            idle: Mutex::new(Some(Idle {
                queue: receiver,
                store,
            })),
            started: AtomicBool::new(false),
            timeout,
        }
    }

    /// Queues `event` and waits until it is committed: Ok means its row is in the database.
    pub async fn write(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.submit(Some(event)).await
    }

    /// Waits until every event queued before this call is committed (or the wait ran out).
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.submit(None).await
    }

    async fn submit(&self, event: Option<AuditEvent>) -> Result<(), AuditError> {
        self.start();
        let (ack, acked) = oneshot::channel();
        let committed = async {
            // Waits for room when the queue is full: callers slow down with the database, nothing is dropped.
            self.queue
                .send(Queued { event, ack })
                .await
                .map_err(|_| AuditError::Stopped)?;
            acked.await.map_err(|_| AuditError::Stopped)
        };
        tokio::time::timeout(self.timeout, committed)
            .await
            .unwrap_or(Err(AuditError::TimedOut(self.timeout)))
    }

    /// Spawns the task on the first event; an atomic flag keeps the lock off the path of every later one.
    fn start(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Idle { queue, store }) = idle.take() {
            tokio::spawn(run(queue, store));
        }
        self.started.store(true, Ordering::Release);
    }
}

/// Drains the queue until every sender is gone: up to [`MAX_BATCH`] events, one transaction, then every waiter
/// of the batch is told.
async fn run(mut queue: mpsc::Receiver<Queued>, store: Arc<dyn AuditStore>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    let mut events: Vec<AuditEvent> = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            // Closed and empty: the state is gone and everything it queued was handled.
            return;
        }
        // One yield lets the requests that are ready to run reach their events first, so a busy moment shares
        // one write instead of paying one each (on a single core the writer would otherwise take every event
        // the moment it is queued).
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        metrics::gauge!(crate::metrics::AUDIT_QUEUE_DEPTH).set(queue.len() as f64);
        events.extend(batch.iter_mut().filter_map(|q| q.event.take()));
        if !events.is_empty() {
            metrics::histogram!(crate::metrics::AUDIT_BATCH_SIZE).record(events.len() as f64);
        }
        let written = write_with_retry(store.as_ref(), &events, &queue).await;
        events.clear();
        for queued in batch.drain(..) {
            if written {
                // A waiter that gave up meanwhile is gone; its event is written all the same.
                let _ = queued.ack.send(());
            }
        }
        if !written {
            return;
        }
    }
}

/// Writes `events` in one transaction, retrying with back-off until it works; gives up (false) only once the
/// queue is closed, when nobody can be waiting for them any more.
async fn write_with_retry(
    store: &dyn AuditStore,
    events: &[AuditEvent],
    queue: &mpsc::Receiver<Queued>,
) -> bool {
    if events.is_empty() {
        return true;
    }
    let mut pause = RETRY_FIRST;
    let mut attempts_after_close = 0u32;
    loop {
        let Err(e) = store.record_batch(events).await else {
            return true;
        };
        metrics::counter!(crate::metrics::AUDIT_WRITE_FAILURES).increment(1);
        if queue.is_closed() {
            attempts_after_close += 1;
            if attempts_after_close >= ATTEMPTS_AFTER_CLOSE {
                let lost = events.len() + queue.len();
                tracing::error!(error = %e, lost, "could not write audit events after the server stopped; giving up");
                return false;
            }
        }
        tracing::warn!(error = %e, events = events.len(), retry_in_ms = pause.as_millis() as u64, "could not write audit events; retrying");
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2).min(RETRY_MAX);
    }
}

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

/// Records `event` and waits until it is committed. Callers that hand out a credential fail their request on an
/// error (the credential must not outlive a missing row); the others use [`record_or_log`].
pub async fn record(state: &AppState, event: Event<'_>) -> Result<(), AuditError> {
    let stored = AuditEvent {
        at: state.clock.unix_now(),
        kind: event.kind.to_owned(),
        client_id: printable(event.client_id),
        subject: printable(event.subject),
        outcome: event.outcome.to_owned(),
        remote_addr: event.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        detail: event.detail,
    };
    crate::metrics::credential_event(event.kind, event.outcome);
    tracing::debug!(kind = event.kind, client_id = %stored.client_id, subject = %stored.subject, outcome = event.outcome, remote = %stored.remote_addr, "credential event");
    let written = state.audit.write(stored).await;
    if let Err(e) = &written {
        tracing::error!(error = %e, kind = event.kind, "could not record an audit event");
    }
    written
}

/// [`record`] for events whose request goes on whether or not the row was written (failures and denials, and
/// changes that are already committed): an error is logged by [`record`] and otherwise ignored.
pub async fn record_or_log(state: &AppState, event: Event<'_>) {
    // Logged inside record; the caller's answer does not depend on it.
    let _ = record(state, event).await;
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
        record_or_log(
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
    // Once per caller and window, not per request: worth a line at the default level.
    tracing::info!(client_id = %stored.client_id, remote = %stored.remote_addr, count = p.count, "repeated failed client authentications");
    if let Err(e) = state.audit.write(stored).await {
        tracing::error!(error = %e, "could not record an aggregated audit event");
    }
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
    use flyteauth_store::{AuditFilter, StoreError};
    use std::sync::atomic::AtomicU32;
    use tokio::sync::Semaphore;

    /// An audit store in memory that can be told to fail or to hold writes back.
    #[derive(Default)]
    struct FakeStore {
        rows: Mutex<Vec<AuditEvent>>,
        batches: Mutex<Vec<usize>>,
        /// Attempts still to fail.
        failures_left: AtomicU32,
        /// When set, each write first takes a permit (none: writes wait).
        gate: Option<Semaphore>,
    }

    impl FakeStore {
        fn failing(times: u32) -> Self {
            Self {
                failures_left: AtomicU32::new(times),
                ..Self::default()
            }
        }

        fn gated() -> Self {
            Self {
                gate: Some(Semaphore::new(0)),
                ..Self::default()
            }
        }

        fn kinds(&self) -> Vec<String> {
            self.rows
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.kind.clone())
                .collect()
        }
    }

    #[async_trait::async_trait]
    impl AuditStore for FakeStore {
        async fn record(&self, e: &AuditEvent) -> Result<(), StoreError> {
            self.record_batch(std::slice::from_ref(e)).await
        }

        async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            let failing = self
                .failures_left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(StoreError::InvalidInput {
                    field: "test",
                    reason: "the database is down",
                });
            }
            self.batches.lock().unwrap().push(events.len());
            self.rows.lock().unwrap().extend_from_slice(events);
            Ok(())
        }

        async fn recent(&self, _limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
            Ok(Vec::new())
        }

        async fn list_audit(
            &self,
            _filter: &AuditFilter,
            _limit: u32,
        ) -> Result<Vec<AuditEvent>, StoreError> {
            Ok(Vec::new())
        }

        async fn prune_audit(&self, _before: i64, _batch: u32) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn event(kind: &str) -> AuditEvent {
        AuditEvent {
            at: 1,
            kind: kind.to_owned(),
            client_id: "app".into(),
            subject: "app".into(),
            outcome: "success".into(),
            remote_addr: String::new(),
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn a_writer_built_outside_a_runtime_spawns_nothing() {
        let store = Arc::new(FakeStore::default());
        let writer = AuditWriter::new(store.clone());
        assert!(!writer.started.load(Ordering::Acquire));
        drop(writer);
        assert_eq!(Arc::strong_count(&store), 1, "nothing kept the store");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_events_share_transactions_and_all_are_acknowledged_after_commit() {
        let store = Arc::new(FakeStore::default());
        let writer = Arc::new(AuditWriter::new(store.clone()));
        let tasks: Vec<_> = (0..2000)
            .map(|i| {
                let writer = writer.clone();
                let store = store.clone();
                tokio::spawn(async move {
                    let kind = format!("e{i}");
                    writer.write(event(&kind)).await.unwrap();
                    // Acknowledged only once it is stored.
                    assert!(store.kinds().contains(&kind));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.rows.lock().unwrap().len(), 2000);
        let batches = store.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 2000);
        assert!(
            batches.iter().all(|&n| (1..=MAX_BATCH).contains(&n)),
            "{batches:?}"
        );
        assert!(
            batches.len() < 2000,
            "no event shared a transaction: {batches:?}"
        );
    }

    /// On a runtime's worker, a task woken by another runs next: the writer, woken by the first event of a busy
    /// moment, took that one event alone and the requests ready behind it each paid a write of their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn events_of_requests_ready_behind_the_writer_share_its_write() {
        let store = Arc::new(FakeStore::default());
        let writer = Arc::new(AuditWriter::new(store.clone()));
        let send = move |kind: &'static str| {
            let writer = writer.clone();
            async move { writer.write(event(kind)).await.unwrap() }
        };
        // The writer is running and waits for events.
        tokio::spawn(send("first")).await.unwrap();
        // One task queues five events from the worker, one per task it has made ready to run.
        tokio::spawn(async move {
            let tasks: Vec<_> = ["a", "b", "c", "d", "e"]
                .into_iter()
                .map(|kind| tokio::spawn(send(kind)))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(*store.batches.lock().unwrap(), vec![1, 5]);
    }

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_and_drops_nothing() {
        let store = Arc::new(FakeStore::gated());
        let writer = Arc::new(AuditWriter::with_limits(
            store.clone(),
            4,
            Duration::from_secs(30),
        ));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(event(&format!("e{i}"))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // One batch is held at the gate, four events fill the queue, the rest wait to get in.
        assert!(tasks.iter().all(|t| !t.is_finished()));
        assert!(store.rows.lock().unwrap().is_empty());
        store.gate.as_ref().unwrap().add_permits(1000);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut kinds = store.kinds();
        kinds.sort();
        let mut expected: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
        expected.sort();
        assert_eq!(kinds, expected);
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_with_back_off() {
        let store = Arc::new(FakeStore::failing(4));
        let writer = AuditWriter::new(store.clone());
        let started = std::time::Instant::now();
        writer.write(event("token.issued")).await.unwrap();
        assert_eq!(store.kinds(), ["token.issued"]);
        // 50 + 100 + 200 + 400 ms of pauses.
        assert!(
            started.elapsed() >= Duration::from_millis(750),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_event_not_committed_in_time_is_an_error_and_is_still_written_later() {
        let store = Arc::new(FakeStore::failing(5));
        let timeout = Duration::from_millis(200);
        let writer = AuditWriter::with_limits(store.clone(), 16, timeout);
        let started = std::time::Instant::now();
        let err = writer.write(event("token.issued")).await.unwrap_err();
        assert_eq!(err, AuditError::TimedOut(timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(store.kinds().is_empty());
        // The writer kept trying (50 + 100 + 200 + 400 + 800 ms of pauses).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.kinds().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.kinds(), ["token.issued"]);
        writer.flush().await.unwrap();
    }

    #[tokio::test]
    async fn the_writer_ends_when_the_state_goes() {
        let store = Arc::new(FakeStore::default());
        let writer = AuditWriter::new(store.clone());
        writer.write(event("a")).await.unwrap();
        assert_eq!(Arc::strong_count(&store), 2, "the task holds the store");
        drop(writer);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&store) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer did not end"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn flush_waits_for_what_was_queued_before_it() {
        let store = Arc::new(FakeStore::gated());
        let writer = Arc::new(AuditWriter::new(store.clone()));
        let queued = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.write(event("before")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let flushed = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.flush().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!flushed.is_finished());
        store.gate.as_ref().unwrap().add_permits(10);
        flushed.await.unwrap().unwrap();
        assert_eq!(store.kinds(), ["before"]);
        queued.await.unwrap().unwrap();
    }

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

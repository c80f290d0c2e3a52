//! Secret checks (bcrypt for client secrets, argon2 for passwords) on a bounded number of blocking threads with a
//! bounded queue.
//!
//! Each check costs milliseconds of CPU. Without a bound, a flood of wrong secrets queues checks without end and
//! every real client waits behind it; with one, at most `maxConcurrent` run at once, at most `maxQueued` wait,
//! and anything beyond is refused at once with [`Busy`] (503 with `Retry-After` on HTTP, UNAVAILABLE on RPCs,
//! an HTML page on the login form). The check itself stays in `flyteauth_core`, synchronous and pure.

use flyteauth_core::config::HashingConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Seconds a refused caller is told to wait: checks take milliseconds, so the queue drains quickly.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// The queue of secret checks is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many secret checks are waiting")]
pub struct Busy;

/// Why a secret check did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashingError {
    /// The queue is full; try again shortly.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The blocking task failed (a panic in the hashing code).
    #[error("a secret check failed: {0}")]
    Task(String),
}

/// The bound on concurrent secret checks.
#[derive(Debug)]
pub struct Hashing {
    permits: Arc<Semaphore>,
    max_queued: usize,
    queued: AtomicUsize,
    max_concurrent: usize,
}

/// Takes a place in the queue back when the waiting ends (served or cancelled).
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hashing {
    /// The bound of `config`: `maxConcurrent` 0 means one check per CPU core.
    pub fn new(config: &HashingConfig) -> Self {
        let max_concurrent = match config.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_queued: config.max_queued,
            queued: AtomicUsize::new(0),
            max_concurrent,
        }
    }

    /// Checks that may run at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Runs `check` on a blocking thread once a slot is free, or refuses at once when `maxQueued` checks wait
    /// already. The slot is held by the blocking task, so a caller that goes away does not free it before the
    /// CPU does.
    pub async fn run<T, F>(&self, check: F) -> Result<T, HashingError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    crate::metrics::hashing_refused();
                    return Err(Busy.into());
                }
                let _place = QueuePlace(&self.queued);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| HashingError::Task(e.to_string()))?
            }
        };
        tokio::task::spawn_blocking(move || {
            let answer = check();
            drop(permit);
            answer
        })
        .await
        .map_err(|e| HashingError::Task(e.to_string()))
    }
}

impl From<HashingError> for crate::error::ApiError {
    fn from(e: HashingError) -> Self {
        match e {
            HashingError::Busy(Busy) => Self::Busy {
                retry_after: BUSY_RETRY_AFTER_SECS,
            },
            HashingError::Task(detail) => Self::internal(detail),
        }
    }
}

impl From<HashingError> for crate::error::PageError {
    fn from(e: HashingError) -> Self {
        crate::error::ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_callers_are_refused_at_once() {
        let hashing = Arc::new(Hashing::new(&HashingConfig {
            max_concurrent: 1,
            max_queued: 2,
        }));
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut waiting = Vec::new();
        // One running (held by the gate) and two queued.
        for _ in 0..3 {
            let h = hashing.clone();
            let g = gate.clone();
            waiting.push(tokio::spawn(async move {
                h.run(move || {
                    let _ = g.lock().unwrap().recv_timeout(Duration::from_secs(10));
                    1
                })
                .await
            }));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while hashing.queued.load(Ordering::Acquire) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the queue never filled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = std::time::Instant::now();
        let refused = hashing.run(|| 2).await;
        assert!(
            matches!(refused, Err(HashingError::Busy(Busy))),
            "{refused:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for task in waiting {
            assert_eq!(task.await.unwrap().unwrap(), 1);
        }
        assert_eq!(hashing.queued.load(Ordering::Acquire), 0);
        assert_eq!(hashing.run(|| 3).await.unwrap(), 3, "the bound recovers");
    }

    #[tokio::test]
    async fn zero_means_one_slot_per_core() {
        let hashing = Hashing::new(&HashingConfig::default());
        assert!(hashing.max_concurrent() >= 1);
        assert_eq!(hashing.run(|| 7).await.unwrap(), 7);
    }
}

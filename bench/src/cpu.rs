//! CPU time of this process, summed over its threads, from `/proc/self/task/*/schedstat`.
//!
//! Requests per second on a shared machine depend on who else runs; the CPU time the server's
//! threads spend per request does much less, so the HTTP benchmark reports both.

use std::collections::HashMap;
use std::path::Path;

/// Nanoseconds on CPU per thread id, at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(HashMap<u32, u64>);

/// Reads the on-CPU time of every live thread of this process.
pub fn snapshot() -> anyhow::Result<Snapshot> {
    read_tasks(Path::new("/proc/self/task"), None)
}

/// Reads the on-CPU time of every live thread of process `pid` (a server running as a child, e.g. node).
pub fn snapshot_of(pid: u32) -> anyhow::Result<Snapshot> {
    read_tasks(Path::new(&format!("/proc/{pid}/task")), None)
}

/// Reads the on-CPU time of the threads of this process whose name starts with `prefix` (the server's runtime
/// threads, when the benchmark's own client threads run in the same process).
pub fn snapshot_named(prefix: &str) -> anyhow::Result<Snapshot> {
    read_tasks(Path::new("/proc/self/task"), Some(prefix))
}

/// On-CPU nanoseconds of the calling thread so far.
pub fn thread_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn read_tasks(dir: &Path, prefix: Option<&str>) -> anyhow::Result<Snapshot> {
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(prefix) = prefix {
            // A thread may exit between listing and reading; it then simply does not count.
            let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse().ok()) {
            threads.insert(tid, ns);
        }
    }
    Ok(Snapshot(threads))
}

impl Snapshot {
    /// CPU nanoseconds spent since `earlier`: per-thread deltas, plus all of any thread started
    /// since (a thread that exited in between is lost, which only matters for short-lived
    /// blocking-pool threads).
    pub fn since(&self, earlier: &Snapshot) -> u64 {
        self.0
            .iter()
            .map(|(tid, now)| now.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_up() {
        let before = snapshot().unwrap_or_default();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = snapshot().unwrap_or_default();
        assert!(after.since(&before) > 0, "{x}");
        assert!(thread_ns() > 0);
        let named = snapshot_named("no-thread-is-called-this").unwrap_or_default();
        assert_eq!(named.since(&Snapshot::default()), 0);
        assert!(snapshot_of(std::process::id()).is_ok());
    }
}

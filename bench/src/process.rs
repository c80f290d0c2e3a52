//! The real `flyteauth serve` as a child process: started on a configuration of the benchmark's choosing,
//! measured through `/proc`, killed when its guard drops (or by the watchdog).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::client;

/// Kills the child when the last clone drops, so an early error cannot leave a server behind.
#[derive(Clone)]
pub struct ChildGuard(Arc<Mutex<Option<Child>>>);

impl ChildGuard {
    /// Takes charge of `child`: it is killed when the last clone of the guard drops.
    pub fn new(child: Child) -> Self {
        Self(Arc::new(Mutex::new(Some(child))))
    }

    /// Whether the child has exited (and its status then), without waiting.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Kills the child now (idempotent).
    pub fn kill(&self) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = slot.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Only the last holder (not the watchdog's clone) ends the child.
        if Arc::strong_count(&self.0) == 1 {
            self.kill();
        }
    }
}

/// VmRSS, VmHWM (bytes) and thread count of a process.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set size now.
    pub rss: u64,
    /// Peak resident set size.
    pub hwm: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads [`Memory`] of `pid` from `/proc/<pid>/status`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        line[name.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("bad line {line:?}"))
    };
    Ok(Memory {
        rss: field("VmRSS:")? * 1024,
        hwm: field("VmHWM:")? * 1024,
        threads: field("Threads:")?,
    })
}

/// `bytes` as "12.3 MB (11.7 MiB)".
pub fn mb(bytes: u64) -> String {
    format!(
        "{:.1} MB ({:.1} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / 1_048_576.0
    )
}

/// `flyteauth` beside the running benchmark executable (both live in target/release).
pub fn default_binary() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("executable has no directory")?
        .join("flyteauth"))
}

/// A running server.
pub struct Server {
    /// Kills it.
    pub guard: ChildGuard,
    /// Its process id.
    pub pid: u32,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

/// Runs `flyteauth secrets init` into `dir/secrets`, then `flyteauth serve --config config` on `port`, and waits
/// until `/healthz` answers. The server is killed after `limit` at the latest.
pub fn start(
    binary: &Path,
    dir: &Path,
    config: &Path,
    port: u16,
    limit: Duration,
) -> anyhow::Result<Server> {
    if !binary.is_file() {
        bail!(
            "{} not found; build it with `cargo build --release -p flyteauth-server` or pass --binary",
            binary.display()
        );
    }
    let secrets_dir = dir.join("secrets");
    if !secrets_dir.exists() {
        let secrets = Command::new(binary)
            .args(["secrets", "init", "--dir"])
            .arg(&secrets_dir)
            .stdout(Stdio::null())
            .status()
            .context("run flyteauth secrets init")?;
        if !secrets.success() {
            bail!("flyteauth secrets init failed: {secrets}");
        }
    }
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id();
    let guard = ChildGuard::new(child);
    let watchdog_guard = guard.clone();
    crate::watchdog(limit, move || watchdog_guard.kill());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = client::wait_until_up(addr, "/healthz", Duration::from_secs(30)) {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(e.context(format!("server log:\n{log}")));
    }
    Ok(Server {
        guard,
        pid,
        addr,
        log: log_path,
    })
}

//! Resident memory of the real `flyteauth serve` process after 100,000 validated `/me` calls.
//!
//! Starts the release binary as a child (`flyteauth secrets init`, then `flyteauth serve --config
//! FILE` on 127.0.0.1 with SQLite and one confidential static client), reads VmRSS/VmHWM from
//! `/proc/<pid>/status` right after start-up (the baseline), obtains a token, sends `--requests`
//! `GET /me` calls over `--connections` keep-alive connections (every answer must be 200), reads
//! the figures again, then sends the same number once more to show whether memory keeps growing.
//! The child is killed at the end (and by the watchdog if the run hangs).
//!
//! Target: VmRSS after 100,000 validations < 50 MB (50 × 10⁶ bytes; also shown in MiB).
//!
//! Options: `--binary PATH` (default: `flyteauth` beside this executable), `--requests N`
//! (100000), `--connections N` (4), `--repeat N` extra batches for the growth check (2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flyteauth_bench::client::{self, Connection};
use flyteauth_bench::stats::verdict;
use flyteauth_bench::{arg, fixture};

const TARGET_BYTES: u64 = 50_000_000;

/// Kills the child when dropped, so an early error cannot leave a server behind.
#[derive(Clone)]
struct ChildGuard(Arc<Mutex<Option<Child>>>);

impl ChildGuard {
    fn kill(&self) {
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
struct Memory {
    rss: u64,
    hwm: u64,
    threads: u64,
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
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

fn mb(bytes: u64) -> String {
    format!(
        "{:.1} MB ({:.1} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / 1_048_576.0
    )
}

/// Sends `total` validated `GET /me` calls over `connections` keep-alive connections.
fn load(addr: SocketAddr, token: &str, total: u64, connections: u64) -> anyhow::Result<Duration> {
    let bearer = format!("Bearer {token}");
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|i| {
                let share = total / connections + u64::from(i < total % connections);
                let bearer = &bearer;
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut conn = Connection::open(addr)?;
                    let request = conn.build("GET", "/me", &[("authorization", bearer)], &[]);
                    for _ in 0..share {
                        let response = conn.send_raw(&request)?;
                        if response.status != 200 {
                            bail!("GET /me answered {}: {}", response.status, response.text());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(start.elapsed())
}

fn main() -> anyhow::Result<()> {
    let default_binary = std::env::current_exe()?
        .parent()
        .context("executable has no directory")?
        .join("flyteauth");
    let binary: PathBuf = arg("--binary", default_binary)?;
    let requests: u64 = arg("--requests", 100_000)?;
    let connections: u64 = arg("--connections", 4)?.max(1);
    let repeat: u64 = arg("--repeat", 2)?;
    if !binary.is_file() {
        bail!(
            "{} not found; build it with `cargo build --release -p flyteauth-server` or pass --binary",
            binary.display()
        );
    }

    let dir = tempfile::tempdir()?;
    let secrets = Command::new(&binary)
        .args(["secrets", "init", "--dir"])
        .arg(dir.path().join("secrets"))
        .stdout(Stdio::null())
        .status()
        .context("run flyteauth secrets init")?;
    if !secrets.success() {
        bail!("flyteauth secrets init failed: {secrets}");
    }
    let port = fixture::free_port()?;
    let config = fixture::write_config(port, dir.path())?;
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id();
    let guard = ChildGuard(Arc::new(Mutex::new(Some(child))));
    let watchdog_guard = guard.clone();
    flyteauth_bench::watchdog(Duration::from_secs(300), move || watchdog_guard.kill());

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = client::wait_until_up(addr, "/healthz", Duration::from_secs(30)) {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(e.context(format!("server log:\n{log}")));
    }
    // Let start-up work (migrations, background threads) settle before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let startup = memory(pid)?;
    println!(
        "server: {} (pid {pid}), {} threads; load: {connections} keep-alive connections",
        binary.display(),
        startup.threads
    );
    println!(
        "after start-up:            VmRSS {}  VmHWM {}",
        mb(startup.rss),
        mb(startup.hwm)
    );

    let token = fixture::fetch_token(addr)?;
    fixture::check_me(addr, &token)?;

    let mut batches = Vec::new();
    for batch in 0..=repeat {
        let elapsed = load(addr, &token, requests, connections)?;
        let after = memory(pid)?;
        let done = requests * (batch + 1);
        println!(
            "after {done:>7} validations: VmRSS {}  VmHWM {}  ({:.0} req/s, {} threads)",
            mb(after.rss),
            mb(after.hwm),
            requests as f64 / elapsed.as_secs_f64(),
            after.threads,
        );
        batches.push((done, after, elapsed));
    }
    guard.kill();

    let (done, first, elapsed) = batches[0];
    let (last_done, last, _) = batches[batches.len() - 1];
    let met = first.rss < TARGET_BYTES;
    println!();
    println!(
        "VmRSS after {done} validations: {} vs start-up {} (+{:.1} MB); target < {} {}",
        mb(first.rss),
        mb(startup.rss),
        (first.rss as f64 - startup.rss as f64) / 1e6,
        mb(TARGET_BYTES),
        verdict(met)
    );
    if batches.len() > 1 {
        println!(
            "VmRSS after {last_done} validations: {} ({:+.1} MB vs after {done})",
            mb(last.rss),
            (last.rss as f64 - first.rss as f64) / 1e6
        );
    }
    println!(
        "RESULT memory.startup_rss_mb {:.1}",
        startup.rss as f64 / 1e6
    );
    println!(
        "RESULT memory.startup_hwm_mb {:.1}",
        startup.hwm as f64 / 1e6
    );
    println!("RESULT memory.requests {done}");
    println!("RESULT memory.connections {connections}");
    println!("RESULT memory.rss_mb {:.1}", first.rss as f64 / 1e6);
    println!("RESULT memory.hwm_mb {:.1}", first.hwm as f64 / 1e6);
    println!(
        "RESULT memory.load_rps {:.0}",
        requests as f64 / elapsed.as_secs_f64()
    );
    println!("RESULT memory.threads {}", first.threads);
    println!("RESULT memory.last_requests {last_done}");
    println!("RESULT memory.last_rss_mb {:.1}", last.rss as f64 / 1e6);
    println!(
        "RESULT memory.rss_over_startup {:.2}",
        first.rss as f64 / startup.rss as f64
    );
    println!("RESULT memory.verdict {}", verdict(met));
    Ok(())
}

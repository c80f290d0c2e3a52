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
use std::time::{Duration, Instant};

use anyhow::bail;
use flyteauth_bench::client::Connection;
use flyteauth_bench::process::{self, mb, memory};
use flyteauth_bench::stats::verdict;
use flyteauth_bench::{arg, fixture};

const TARGET_BYTES: u64 = 50_000_000;

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
    let binary: PathBuf = arg("--binary", process::default_binary()?)?;
    let requests: u64 = arg("--requests", 100_000)?;
    let connections: u64 = arg("--connections", 4)?.max(1);
    let repeat: u64 = arg("--repeat", 2)?;
    let dir = tempfile::tempdir()?;
    let port = fixture::free_port()?;
    let config = fixture::write_config(port, dir.path())?;
    let server = process::start(&binary, dir.path(), &config, port, Duration::from_secs(300))?;
    let (pid, addr, guard) = (server.pid, server.addr, server.guard);
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

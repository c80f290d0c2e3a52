//! A flood of wrong client secrets from one machine while a legitimate client of the same app asks for tokens
//! from another: does the legitimate client still get its tokens, fast, and does the flood get 429s?
//!
//! Starts the release `flyteauth serve` as a child with one confidential static client whose secret is a
//! bcrypt hash of cost `--cost` (6, what flyteadmin's documentation generates). 127.0.0.1 is the legitimate
//! client: one keep-alive connection asking for `client_credentials` tokens with the right secret, one after
//! another. 127.0.0.2 is the flood: `--flood-connections` (16) keep-alive connections sending the same
//! request with a wrong secret as fast as the server answers. Each configuration runs the legitimate client
//! alone for `--baseline-seconds` (3), then with the flood for `--seconds` (8):
//!
//! - `limits`: the defaults (`flyteauth.rateLimits`, `flyteauth.hashing`);
//! - `no-limits`: `rateLimits.enabled: false`, the baseline of the same run (what the server did before).
//!
//! Reported: the legitimate client's success rate and p50/p99 latency alone and under the flood, the flood's
//! answers by status, the audit rows the flood left, and the server's VmRSS at start and at its highest
//! during the flood (sampled every 100 ms). Targets (issue "hardening"): with limits, ≥ 99% legitimate
//! successes, p99 < 100 ms, the flood answered with 429, memory bounded (VmRSS under 2× start-up).
//! Everything listens on 127.0.0.1 and the run stops itself (watchdog).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flyteauth_bench::client::Connection;
use flyteauth_bench::process::{self, memory};
use flyteauth_bench::stats::verdict;
use flyteauth_bench::{arg, fixture};

const LEGITIMATE: [u8; 4] = [127, 0, 0, 1];
const FLOOD: [u8; 4] = [127, 0, 0, 2];

fn token_request(conn: &Connection, secret: &str) -> Vec<u8> {
    fixture::token_request(conn, fixture::CLIENT_ID, secret)
}

/// What the legitimate client saw.
#[derive(Debug, Default)]
struct Legit {
    latencies_ms: Vec<f64>,
    failures: u64,
}

impl Legit {
    fn total(&self) -> u64 {
        self.latencies_ms.len() as u64 + self.failures
    }

    fn success_pct(&self) -> f64 {
        if self.total() == 0 {
            return 0.0;
        }
        100.0 * self.latencies_ms.len() as f64 / self.total() as f64
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// Right-secret token requests from 127.0.0.1, one after another, until `until`.
fn legitimate_client(addr: SocketAddr, until: Instant) -> anyhow::Result<Legit> {
    let mut seen = Legit::default();
    let mut conn = Connection::open_from(addr, IpAddr::from(LEGITIMATE))?;
    let request = token_request(&conn, fixture::CLIENT_SECRET);
    while Instant::now() < until {
        let start = Instant::now();
        match conn.send_raw(&request) {
            Ok(response) if response.status == 200 => seen
                .latencies_ms
                .push(start.elapsed().as_secs_f64() * 1000.0),
            Ok(_) => seen.failures += 1,
            Err(_) => {
                seen.failures += 1;
                conn = Connection::open_from(addr, IpAddr::from(LEGITIMATE))?;
            }
        }
    }
    Ok(seen)
}

/// Wrong-secret token requests from 127.0.0.2 over `connections` connections until `stop`; answers by status
/// (0: the connection failed).
fn flood(
    addr: SocketAddr,
    connections: usize,
    stop: &AtomicBool,
) -> anyhow::Result<BTreeMap<u16, u64>> {
    let counts = Mutex::new(BTreeMap::<u16, u64>::new());
    std::thread::scope(|scope| {
        for _ in 0..connections {
            scope.spawn(|| {
                let mut local = BTreeMap::<u16, u64>::new();
                let mut conn = Connection::open_from(addr, IpAddr::from(FLOOD)).ok();
                while !stop.load(Ordering::Relaxed) {
                    let Some(c) = conn.as_mut() else {
                        *local.entry(0).or_default() += 1;
                        conn = Connection::open_from(addr, IpAddr::from(FLOOD)).ok();
                        continue;
                    };
                    let request = token_request(c, "wrong-secret");
                    match c.send_raw(&request) {
                        Ok(response) => *local.entry(response.status).or_default() += 1,
                        Err(_) => {
                            *local.entry(0).or_default() += 1;
                            conn = Connection::open_from(addr, IpAddr::from(FLOOD)).ok();
                        }
                    }
                }
                let mut all = counts.lock().unwrap_or_else(PoisonError::into_inner);
                for (status, n) in local {
                    *all.entry(status).or_default() += n;
                }
            });
        }
    });
    Ok(counts.into_inner().unwrap_or_else(PoisonError::into_inner))
}

/// Failed-authentication audit rows in the server's database, and how many failures they stand for.
fn audit_rows(database: &Path) -> anyhow::Result<(u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = flyteauth_store::connect(&format!("sqlite://{}", database.display()))
            .await
            .context("open the server's database")?;
        let filter = flyteauth_store::AuditFilter {
            kind: Some("client.authentication_failed".into()),
            since: None,
        };
        let rows = store.list_audit(&filter, 1_000_000).await?;
        let represented = rows
            .iter()
            .map(|e| e.detail["count"].as_u64().unwrap_or(0) + 1)
            .sum();
        Ok((rows.len() as u64, represented))
    })
}

/// One configuration's figures.
struct Run {
    name: &'static str,
    alone: Legit,
    flooded: Legit,
    flood: BTreeMap<u16, u64>,
    audit_rows: u64,
    audit_failures: u64,
    rss_start: u64,
    rss_max: u64,
}

fn run(
    name: &'static str,
    binary: &Path,
    cost: u32,
    extra: &str,
    baseline: Duration,
    seconds: Duration,
    connections: usize,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let port = fixture::free_port()?;
    let config = dir.path().join("flyteauth.yaml");
    std::fs::write(
        &config,
        fixture::config_yaml_with(port, dir.path(), cost, extra)?,
    )?;
    let server = process::start(binary, dir.path(), &config, port, Duration::from_secs(300))?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = memory(server.pid)?.rss;
    fixture::fetch_token(server.addr)?;

    let alone = legitimate_client(server.addr, Instant::now() + baseline)?;

    let stop = AtomicBool::new(false);
    let rss_max = AtomicU64::new(rss_start);
    let (flooded, counts) = std::thread::scope(|scope| -> anyhow::Result<_> {
        let flooding = scope.spawn(|| flood(server.addr, connections, &stop));
        let sampler = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = memory(server.pid) {
                    rss_max.fetch_max(m.rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Let the flood reach full speed before the legitimate client starts measuring.
        std::thread::sleep(Duration::from_millis(300));
        let flooded = legitimate_client(server.addr, Instant::now() + seconds);
        stop.store(true, Ordering::Relaxed);
        let counts = flooding
            .join()
            .map_err(|_| anyhow::anyhow!("the flood panicked"))??;
        sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
        Ok((flooded?, counts))
    })?;
    // The aggregated count of the flood's last window is written when that window ends (1 minute by
    // default): read what the trail holds right after the flood, as an operator would see it.
    let (audit_rows, audit_failures) = audit_rows(&dir.path().join("flyteauth.db"))?;
    server.guard.kill();
    Ok(Run {
        name,
        alone,
        flooded,
        flood: counts,
        audit_rows,
        audit_failures,
        rss_start,
        rss_max: rss_max.into_inner(),
    })
}

fn report(r: &Run) {
    let flood_total: u64 = r.flood.values().sum();
    let by_status: Vec<String> = r.flood.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    println!("-- {}", r.name);
    println!(
        "   legitimate alone:      {} requests, {:.2}% ok, p50 {:.1} ms, p99 {:.1} ms",
        r.alone.total(),
        r.alone.success_pct(),
        r.alone.percentile(50.0),
        r.alone.percentile(99.0)
    );
    println!(
        "   legitimate under flood: {} requests, {:.2}% ok, p50 {:.1} ms, p99 {:.1} ms",
        r.flooded.total(),
        r.flooded.success_pct(),
        r.flooded.percentile(50.0),
        r.flooded.percentile(99.0)
    );
    println!(
        "   flood: {flood_total} answers ({}); audit rows {} standing for {} failures",
        by_status.join(", "),
        r.audit_rows,
        r.audit_failures
    );
    println!(
        "   server VmRSS: start {:.1} MB, highest under flood {:.1} MB",
        r.rss_start as f64 / 1e6,
        r.rss_max as f64 / 1e6
    );
    let key = r.name.replace('-', "_");
    for (name, value) in [
        ("alone_p99_ms", r.alone.percentile(99.0)),
        ("alone_p50_ms", r.alone.percentile(50.0)),
        ("p50_ms", r.flooded.percentile(50.0)),
        ("p99_ms", r.flooded.percentile(99.0)),
    ] {
        println!("RESULT flood.{key}_{name} {value:.1}");
    }
    println!(
        "RESULT flood.{key}_success_pct {:.2}",
        r.flooded.success_pct()
    );
    println!("RESULT flood.{key}_legit_requests {}", r.flooded.total());
    println!("RESULT flood.{key}_flood_answers {flood_total}");
    for status in [401u16, 429, 503] {
        println!(
            "RESULT flood.{key}_flood_{status} {}",
            r.flood.get(&status).copied().unwrap_or(0)
        );
    }
    println!("RESULT flood.{key}_audit_rows {}", r.audit_rows);
    println!(
        "RESULT flood.{key}_rss_start_mb {:.1}",
        r.rss_start as f64 / 1e6
    );
    println!(
        "RESULT flood.{key}_rss_max_mb {:.1}",
        r.rss_max as f64 / 1e6
    );
}

fn main() -> anyhow::Result<()> {
    let binary: PathBuf = arg("--binary", process::default_binary()?)?;
    let cost: u32 = arg("--cost", 6)?;
    let baseline = Duration::from_secs(arg("--baseline-seconds", 3)?);
    let seconds = Duration::from_secs(arg("--seconds", 8)?);
    let connections: usize = arg("--flood-connections", 16)?.max(1);
    if !(4..=31).contains(&cost) {
        bail!("--cost must be a bcrypt cost from 4 to 31");
    }
    println!(
        "flood: {connections} connections from 127.0.0.2 with a wrong secret; legitimate client on 127.0.0.1; \
         bcrypt cost {cost}; {}s alone then {}s under flood per configuration",
        baseline.as_secs(),
        seconds.as_secs()
    );
    let limits = run("limits", &binary, cost, "", baseline, seconds, connections)?;
    report(&limits);
    let open = run(
        "no-limits",
        &binary,
        cost,
        "  rateLimits:\n    enabled: false\n",
        baseline,
        seconds,
        connections,
    )?;
    report(&open);

    let limited = limits.flood.get(&429).copied().unwrap_or(0);
    let met = limits.flooded.success_pct() >= 99.0
        && limits.flooded.percentile(99.0) < 100.0
        && limited > 0
        && limits.rss_max < 2 * limits.rss_start;
    println!(
        "with limits: legitimate {:.2}% ok, p99 {:.1} ms (alone {:.1} ms; without limits {:.1} ms); flood 429s {limited}; \
         VmRSS {:.1} -> {:.1} MB; target >= 99%, p99 < 100 ms, 429s, VmRSS < 2x start {}",
        limits.flooded.success_pct(),
        limits.flooded.percentile(99.0),
        limits.alone.percentile(99.0),
        open.flooded.percentile(99.0),
        limits.rss_start as f64 / 1e6,
        limits.rss_max as f64 / 1e6,
        verdict(met)
    );
    println!("RESULT flood.cost {cost}");
    println!("RESULT flood.connections {connections}");
    println!("RESULT flood.seconds {}", seconds.as_secs());
    println!("RESULT flood.verdict {}", verdict(met));
    Ok(())
}
